//! A sharded map whose entries expire when not seen for a while: the shape
//! of both the FDB (MAC -> port) and the neighbour table (IP -> MAC).
//!
//! Every frame reads it and any poll thread may write it, so it is split
//! into shards, each a read-mostly `RwLock<HashMap>`. The common case, a key
//! seen again with the same value, takes only the shard's read lock: the
//! timestamp is an atomic, refreshed at most every [`REFRESH_MS`]. The write
//! lock is taken only when a key is new, changes value, or ages out. Shards
//! are pre-sized so that a table filling up to its cap rarely rehashes.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use hashbrown::hash_map::Entry;
use hashbrown::HashMap;

/// Number of independently locked parts of a table.
pub const SHARDS: usize = 16;
/// A seen-again entry's timestamp is rewritten at most this often.
const REFRESH_MS: u64 = 100;

/// What [`AgingMap::learn`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learned {
    /// The key was new (or had aged out) and is now in the table.
    New,
    /// Already there with this value.
    Refreshed,
    /// There with another value, now replaced.
    Changed,
    /// New, but the table is at its cap: not learned.
    LimitReached,
}

struct Slot<V> {
    value: V,
    last_seen_ms: AtomicU64,
}

type Shard<V> = RwLock<HashMap<u64, Slot<V>>>;

pub struct AgingMap<V> {
    shards: Box<[Shard<V>]>,
    len: AtomicUsize,
    /// Both limits change while the table is in use (`vsctl set bridge`):
    /// relaxed atomics, plain loads on the datapath.
    max_entries: AtomicUsize,
    max_age_ms: AtomicU64,
    limit_hits: AtomicU64,
}

/// One entry, for display.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<V> {
    pub key: u64,
    pub value: V,
    pub age_ms: u64,
}

fn shard_of(key: u64) -> usize {
    // Mix the bytes: MACs share their first three, IPs of a subnet their first ones.
    let mixed = key ^ (key >> 17) ^ (key >> 33);
    mixed as usize % SHARDS
}

impl<V: Copy + Eq> AgingMap<V> {
    pub fn new(max_entries: usize, max_age_ms: u64) -> AgingMap<V> {
        let per_shard = (max_entries / SHARDS * 2).clamp(16, 1 << 16);
        AgingMap {
            shards: (0..SHARDS)
                .map(|_| RwLock::new(HashMap::with_capacity(per_shard)))
                .collect(),
            len: AtomicUsize::new(0),
            max_entries: AtomicUsize::new(max_entries),
            max_age_ms: AtomicU64::new(max_age_ms),
            limit_hits: AtomicU64::new(0),
        }
    }

    fn read(&self, key: u64) -> RwLockReadGuard<'_, HashMap<u64, Slot<V>>> {
        self.shards[shard_of(key)]
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write_shard(&self, index: usize) -> RwLockWriteGuard<'_, HashMap<u64, Slot<V>>> {
        self.shards[index].write().unwrap_or_else(PoisonError::into_inner)
    }

    fn expired(&self, slot: &Slot<V>, now_ms: u64) -> bool {
        now_ms.saturating_sub(slot.last_seen_ms.load(Ordering::Relaxed)) > self.max_age_ms.load(Ordering::Relaxed)
    }

    /// Records `key` -> `value` as seen at `now_ms`.
    pub fn learn(&self, key: u64, value: V, now_ms: u64) -> Learned {
        {
            let map = self.read(key);
            match map.get(&key) {
                Some(e) if e.value == value && !self.expired(e, now_ms) => {
                    if now_ms.saturating_sub(e.last_seen_ms.load(Ordering::Relaxed)) >= REFRESH_MS {
                        e.last_seen_ms.store(now_ms, Ordering::Relaxed);
                    }
                    return Learned::Refreshed;
                }
                Some(_) => {}
                None if self.len.load(Ordering::Relaxed) >= self.max_entries.load(Ordering::Relaxed) => {
                    self.limit_hits.fetch_add(1, Ordering::Relaxed);
                    return Learned::LimitReached;
                }
                None => {}
            }
        }
        let mut map = self.write_shard(shard_of(key));
        match map.entry(key) {
            Entry::Occupied(mut slot) => {
                let was_live = !self.expired(slot.get(), now_ms);
                let e = slot.get_mut();
                e.last_seen_ms.store(now_ms, Ordering::Relaxed);
                if e.value == value {
                    return if was_live { Learned::Refreshed } else { Learned::New };
                }
                e.value = value;
                if was_live {
                    Learned::Changed
                } else {
                    Learned::New
                }
            }
            Entry::Vacant(slot) => {
                if self.len.load(Ordering::Relaxed) >= self.max_entries.load(Ordering::Relaxed) {
                    self.limit_hits.fetch_add(1, Ordering::Relaxed);
                    return Learned::LimitReached;
                }
                slot.insert(Slot {
                    value,
                    last_seen_ms: AtomicU64::new(now_ms),
                });
                self.len.fetch_add(1, Ordering::Relaxed);
                Learned::New
            }
        }
    }

    /// The value of `key`, unless it has aged out.
    pub fn lookup(&self, key: u64, now_ms: u64) -> Option<V> {
        let map = self.read(key);
        map.get(&key).filter(|e| !self.expired(e, now_ms)).map(|e| e.value)
    }

    /// Keeps the entries `keep` accepts; returns how many went.
    pub fn retain(&self, keep: impl Fn(&V) -> bool) -> usize {
        self.retain_slots(|slot| keep(&slot.value))
    }

    fn retain_slots(&self, keep: impl Fn(&Slot<V>) -> bool) -> usize {
        let mut removed = 0;
        for i in 0..SHARDS {
            let mut map = self.write_shard(i);
            let before = map.len();
            map.retain(|_, e| keep(e));
            removed += before - map.len();
        }
        self.len.fetch_sub(removed, Ordering::Relaxed);
        removed
    }

    /// Removes entries not seen for the aging time. Run by housekeeping, one
    /// shard lock at a time, never from the poll threads.
    pub fn sweep(&self, now_ms: u64) -> usize {
        self.retain_slots(|e| !self.expired(e, now_ms))
    }

    /// Entries that have not aged out, sorted by key.
    pub fn records(&self, now_ms: u64) -> Vec<Record<V>> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let map = shard.read().unwrap_or_else(PoisonError::into_inner);
            out.extend(
                map.iter()
                    .filter(|(_, e)| !self.expired(e, now_ms))
                    .map(|(k, e)| Record {
                        key: *k,
                        value: e.value,
                        age_ms: now_ms.saturating_sub(e.last_seen_ms.load(Ordering::Relaxed)),
                    }),
            );
        }
        out.sort_by_key(|r| r.key);
        out
    }

    /// Entries in the table, counting aged ones not yet swept.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn max_entries(&self) -> usize {
        self.max_entries.load(Ordering::Relaxed)
    }

    pub fn max_age_ms(&self) -> u64 {
        self.max_age_ms.load(Ordering::Relaxed)
    }

    /// New limits, from the next lookup on: entries older than the new
    /// age are gone; beyond a lower cap nothing is evicted, new entries
    /// wait until aging makes room.
    pub fn set_limits(&self, max_entries: usize, max_age_ms: u64) {
        self.max_entries.store(max_entries, Ordering::Relaxed);
        self.max_age_ms.store(max_age_ms, Ordering::Relaxed);
    }

    pub fn limit_hits(&self) -> u64 {
        self.limit_hits.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learn_lookup_change_and_age() {
        let t: AgingMap<u8> = AgingMap::new(10, 1_000);
        assert_eq!(t.learn(1, 7, 0), Learned::New);
        assert_eq!(t.learn(1, 7, 50), Learned::Refreshed);
        assert_eq!(t.learn(1, 8, 60), Learned::Changed);
        assert_eq!(t.lookup(1, 1_060), Some(8), "exactly the aging time is still alive");
        assert_eq!(t.lookup(1, 1_061), None);
        assert_eq!(
            t.learn(1, 9, 5_000),
            Learned::New,
            "a value after aging is new, not a change"
        );
        assert_eq!(t.sweep(10_000), 1);
        assert!(t.is_empty());
    }
}
