//! The forwarding database of one bridge: MAC -> port, learned from traffic.
//!
//! Every frame reads it twice (learn the source, look up the destination) and
//! any poll thread may write it, so it is split into shards, each a
//! read-mostly `RwLock<HashMap>`. The common case, a known source seen again
//! on the same port, takes only the shard's read lock: the timestamp is an
//! atomic, refreshed at most every [`REFRESH_MS`]. The write lock is taken
//! only when a MAC is new, moves, or ages out. Shards are pre-sized so that a
//! bridge filling up to its cap rarely rehashes.
//!
//! Entries name their port by slot *and* uid: a slot is reused after a port is
//! deleted, and an entry learned by a thread still running on an old snapshot
//! must not send frames to the port that took the slot next.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use hashbrown::hash_map::Entry;
use hashbrown::HashMap;

/// Number of independently locked parts of the table.
pub const FDB_SHARDS: usize = 16;
/// A seen-again entry's timestamp is rewritten at most this often.
const REFRESH_MS: u64 = 100;

/// A port as the datapath names it: the slot in the current snapshot plus
/// the port's unique id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortHandle {
    pub slot: u32,
    pub uid: u64,
}

/// What [`Fdb::learn`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learned {
    /// The MAC was new (or had aged out) and is now in the table.
    New,
    /// Already known on this port.
    Refreshed,
    /// Known on another port; now on this one.
    Moved,
    /// New, but the bridge is at its cap: not learned.
    LimitReached,
}

struct FdbEntry {
    port: PortHandle,
    last_seen_ms: AtomicU64,
}

pub struct Fdb {
    shards: Box<[RwLock<HashMap<u64, FdbEntry>>]>,
    len: AtomicUsize,
    max_entries: usize,
    aging_ms: u64,
    limit_hits: AtomicU64,
    moves: AtomicU64,
}

/// One learned address, for display.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdbRecord {
    pub mac: [u8; 6],
    pub port: PortHandle,
    pub age_ms: u64,
}

fn mac_key(mac: [u8; 6]) -> u64 {
    let mut b = [0u8; 8];
    b[..6].copy_from_slice(&mac);
    u64::from_le_bytes(b)
}

fn key_mac(key: u64) -> [u8; 6] {
    let b = key.to_le_bytes();
    [b[0], b[1], b[2], b[3], b[4], b[5]]
}

fn shard_of(key: u64) -> usize {
    // The low bytes are the OUI, shared by many MACs; the last bytes vary.
    ((key >> 40) as usize ^ (key >> 32) as usize) % FDB_SHARDS
}

impl Fdb {
    pub fn new(max_entries: usize, aging_secs: u64) -> Fdb {
        let per_shard = (max_entries / FDB_SHARDS * 2).clamp(16, 1 << 16);
        Fdb {
            shards: (0..FDB_SHARDS)
                .map(|_| RwLock::new(HashMap::with_capacity(per_shard)))
                .collect(),
            len: AtomicUsize::new(0),
            max_entries,
            aging_ms: aging_secs.saturating_mul(1000),
            limit_hits: AtomicU64::new(0),
            moves: AtomicU64::new(0),
        }
    }

    fn read(&self, key: u64) -> RwLockReadGuard<'_, HashMap<u64, FdbEntry>> {
        self.shards[shard_of(key)]
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write_shard(&self, index: usize) -> RwLockWriteGuard<'_, HashMap<u64, FdbEntry>> {
        self.shards[index].write().unwrap_or_else(PoisonError::into_inner)
    }

    fn expired(&self, entry: &FdbEntry, now_ms: u64) -> bool {
        now_ms.saturating_sub(entry.last_seen_ms.load(Ordering::Relaxed)) > self.aging_ms
    }

    /// Records that `mac` was seen as a source on `port` at `now_ms`.
    pub fn learn(&self, mac: [u8; 6], port: PortHandle, now_ms: u64) -> Learned {
        let key = mac_key(mac);
        {
            let map = self.read(key);
            match map.get(&key) {
                Some(e) if e.port == port && !self.expired(e, now_ms) => {
                    if now_ms.saturating_sub(e.last_seen_ms.load(Ordering::Relaxed)) >= REFRESH_MS {
                        e.last_seen_ms.store(now_ms, Ordering::Relaxed);
                    }
                    return Learned::Refreshed;
                }
                Some(_) => {}
                None if self.len.load(Ordering::Relaxed) >= self.max_entries => {
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
                if e.port == port {
                    return if was_live { Learned::Refreshed } else { Learned::New };
                }
                e.port = port;
                if was_live {
                    self.moves.fetch_add(1, Ordering::Relaxed);
                    Learned::Moved
                } else {
                    Learned::New
                }
            }
            Entry::Vacant(slot) => {
                if self.len.load(Ordering::Relaxed) >= self.max_entries {
                    self.limit_hits.fetch_add(1, Ordering::Relaxed);
                    return Learned::LimitReached;
                }
                slot.insert(FdbEntry {
                    port,
                    last_seen_ms: AtomicU64::new(now_ms),
                });
                self.len.fetch_add(1, Ordering::Relaxed);
                Learned::New
            }
        }
    }

    /// The port `mac` was last seen on, unless it has aged out.
    pub fn lookup(&self, mac: [u8; 6], now_ms: u64) -> Option<PortHandle> {
        let key = mac_key(mac);
        let map = self.read(key);
        map.get(&key).filter(|e| !self.expired(e, now_ms)).map(|e| e.port)
    }

    fn retain(&self, keep: impl Fn(&FdbEntry) -> bool) -> usize {
        let mut removed = 0;
        for i in 0..FDB_SHARDS {
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
        self.retain(|e| !self.expired(e, now_ms))
    }

    /// Forgets everything learned on a port (it is being deleted).
    pub fn flush_port(&self, uid: u64) -> usize {
        self.retain(|e| e.port.uid != uid)
    }

    /// Entries that have not aged out, sorted by MAC.
    pub fn records(&self, now_ms: u64) -> Vec<FdbRecord> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let map = shard.read().unwrap_or_else(PoisonError::into_inner);
            out.extend(
                map.iter()
                    .filter(|(_, e)| !self.expired(e, now_ms))
                    .map(|(k, e)| FdbRecord {
                        mac: key_mac(*k),
                        port: e.port,
                        age_ms: now_ms.saturating_sub(e.last_seen_ms.load(Ordering::Relaxed)),
                    }),
            );
        }
        out.sort_by_key(|r| r.mac);
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
        self.max_entries
    }

    pub fn aging_secs(&self) -> u64 {
        self.aging_ms / 1000
    }

    pub fn limit_hits(&self) -> u64 {
        self.limit_hits.load(Ordering::Relaxed)
    }

    pub fn moves(&self) -> u64 {
        self.moves.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];
    const P1: PortHandle = PortHandle { slot: 0, uid: 1 };
    const P2: PortHandle = PortHandle { slot: 1, uid: 2 };

    #[test]
    fn learns_and_finds() {
        let fdb = Fdb::new(100, 300);
        assert_eq!(fdb.lookup(A, 0), None);
        assert_eq!(fdb.learn(A, P1, 0), Learned::New);
        assert_eq!(fdb.learn(A, P1, 10), Learned::Refreshed);
        assert_eq!(fdb.lookup(A, 20), Some(P1));
        assert_eq!(fdb.lookup(B, 20), None);
        assert_eq!(fdb.len(), 1);
    }

    #[test]
    fn entries_age_out_and_are_swept() {
        let fdb = Fdb::new(100, 2);
        fdb.learn(A, P1, 0);
        fdb.learn(B, P2, 1_500);
        assert_eq!(fdb.lookup(A, 2_000), Some(P1), "exactly the aging time is still alive");
        assert_eq!(fdb.lookup(A, 2_001), None, "aged out before any sweep");
        assert_eq!(fdb.sweep(2_001), 1);
        assert_eq!(fdb.len(), 1);
        assert_eq!(fdb.lookup(B, 2_001), Some(P2));
    }

    #[test]
    fn refresh_keeps_an_entry_alive() {
        let fdb = Fdb::new(100, 1);
        fdb.learn(A, P1, 0);
        fdb.learn(A, P1, 900);
        assert_eq!(fdb.lookup(A, 1_800), Some(P1));
    }

    #[test]
    fn a_mac_moves_between_ports() {
        let fdb = Fdb::new(100, 300);
        fdb.learn(A, P1, 0);
        assert_eq!(fdb.learn(A, P2, 5), Learned::Moved);
        assert_eq!(fdb.lookup(A, 6), Some(P2));
        assert_eq!(fdb.moves(), 1);
        assert_eq!(fdb.len(), 1);
    }

    #[test]
    fn relearning_an_aged_entry_elsewhere_is_not_a_move() {
        let fdb = Fdb::new(100, 1);
        fdb.learn(A, P1, 0);
        assert_eq!(fdb.learn(A, P2, 5_000), Learned::New);
        assert_eq!(fdb.moves(), 0);
    }

    #[test]
    fn cap_stops_learning_but_counts() {
        let fdb = Fdb::new(2, 300);
        for i in 0..5u8 {
            fdb.learn([2, 0, 0, 0, 1, i], P1, 0);
        }
        assert_eq!(fdb.len(), 2);
        assert_eq!(fdb.limit_hits(), 3);
        assert_eq!(
            fdb.learn([2, 0, 0, 0, 1, 0], P1, 1),
            Learned::Refreshed,
            "known MACs still refresh at the cap"
        );
        fdb.sweep(10_000_000);
        assert_eq!(fdb.learn(A, P1, 10_000_000), Learned::New, "room again after aging");
    }

    #[test]
    fn flush_port_forgets_only_that_port() {
        let fdb = Fdb::new(100, 300);
        fdb.learn(A, P1, 0);
        fdb.learn(B, P2, 0);
        assert_eq!(fdb.flush_port(P1.uid), 1);
        assert_eq!(fdb.lookup(A, 1), None);
        assert_eq!(fdb.lookup(B, 1), Some(P2));
        let recs = fdb.records(1);
        assert_eq!(
            recs,
            vec![FdbRecord {
                mac: B,
                port: P2,
                age_ms: 1
            }]
        );
    }

    #[test]
    fn two_threads_learning_the_same_macs_agree() {
        let fdb = std::sync::Arc::new(Fdb::new(10_000, 300));
        let workers: Vec<_> = [P1, P2]
            .into_iter()
            .map(|p| {
                let fdb = fdb.clone();
                std::thread::spawn(move || {
                    for i in 0..2_000u16 {
                        let [hi, lo] = i.to_be_bytes();
                        fdb.learn([2, 0, 0, p.slot as u8, hi, lo], p, 0);
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(fdb.len(), 4_000);
        assert_eq!(fdb.lookup([2, 0, 0, 1, 0, 7], 0), Some(P2));
    }
}
