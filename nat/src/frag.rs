//! IPv4 fragments through NAT.
//!
//! Only a datagram's first fragment carries its ports, so only it can be
//! looked up in the connection table. What it was translated to (its new
//! source and destination addresses) is remembered here under the
//! datagram's identity before translation, (zone, source, destination,
//! protocol, IP id), and every later fragment of the datagram is given the
//! same addresses: the kernel does the same for Docker (nf_defrag would
//! reassemble; translating fragments one by one keeps the path free of
//! reassembly buffers). A datagram routed without translation is
//! remembered too (same addresses), so its later fragments are told apart
//! from fragments whose first has not arrived yet, which the datapath holds
//! for a while.
//!
//! Bounded: a fixed number of datagrams, spread over mutex shards (taken
//! only for fragments, never for whole packets); when a shard is full its
//! expired entries make room, and a datagram that still finds none is
//! refused (and its fragments dropped, counted).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Mutex, PoisonError};

const SHARDS: usize = 16;
/// Datagrams remembered at most, over all shards.
pub const FRAG_MAX: usize = 4096;
/// How long a datagram's translation is kept after its first fragment:
/// the later ones follow within microseconds; a second covers reordering.
pub const FRAG_TIMEOUT_MS: u64 = 2_000;

/// A datagram, as its fragments name it before translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FragKey {
    pub zone: u16,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub id: u16,
}

/// The addresses every fragment of a datagram gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragNat {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
}

struct Entry {
    nat: FragNat,
    expires_ms: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the fragment table is full")]
pub struct FragTableFull;

pub struct FragTable {
    shards: Box<[Mutex<HashMap<FragKey, Entry>>]>,
}

impl Default for FragTable {
    fn default() -> Self {
        FragTable::new()
    }
}

fn shard_of(k: &FragKey) -> usize {
    let h = u32::from(k.src) ^ u32::from(k.dst).rotate_left(11) ^ (u32::from(k.id) << 8) ^ u32::from(k.zone);
    (h.wrapping_mul(2_654_435_761) >> 16) as usize % SHARDS
}

impl FragTable {
    pub fn new() -> FragTable {
        let per_shard = FRAG_MAX / SHARDS;
        FragTable {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::with_capacity(per_shard)))
                .collect(),
        }
    }

    fn shard(&self, k: &FragKey) -> std::sync::MutexGuard<'_, HashMap<FragKey, Entry>> {
        self.shards[shard_of(k)].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Remembers what the datagram `key`'s first fragment became.
    pub fn remember(&self, key: FragKey, nat: FragNat, now_ms: u64) -> Result<(), FragTableFull> {
        let mut shard = self.shard(&key);
        if shard.len() >= FRAG_MAX / SHARDS && !shard.contains_key(&key) {
            shard.retain(|_, e| e.expires_ms > now_ms);
            if shard.len() >= FRAG_MAX / SHARDS {
                return Err(FragTableFull);
            }
        }
        shard.insert(
            key,
            Entry {
                nat,
                expires_ms: now_ms + FRAG_TIMEOUT_MS,
            },
        );
        Ok(())
    }

    /// What the later fragments of datagram `key` become, once its first
    /// fragment has been seen (and not too long ago).
    pub fn lookup(&self, key: &FragKey, now_ms: u64) -> Option<FragNat> {
        let shard = self.shard(key);
        shard.get(key).filter(|e| e.expires_ms > now_ms).map(|e| e.nat)
    }

    /// Forgets expired datagrams; returns how many.
    pub fn sweep(&self, now_ms: u64) -> usize {
        let mut gone = 0;
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            let before = shard.len();
            shard.retain(|_, e| e.expires_ms > now_ms);
            gone += before - shard.len();
        }
        gone
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u16) -> FragKey {
        FragKey {
            zone: 1,
            src: Ipv4Addr::new(10, 0, 0, 2),
            dst: Ipv4Addr::new(192, 0, 2, 1),
            proto: 17,
            id,
        }
    }

    const NAT: FragNat = FragNat {
        src: Ipv4Addr::new(198, 51, 100, 2),
        dst: Ipv4Addr::new(192, 0, 2, 1),
    };

    #[test]
    fn later_fragments_find_the_first_ones_translation_until_it_expires() {
        let t = FragTable::new();
        assert_eq!(t.lookup(&key(7), 0), None);
        t.remember(key(7), NAT, 1_000).unwrap();
        assert_eq!(t.lookup(&key(7), 1_500), Some(NAT));
        assert_eq!(t.lookup(&key(8), 1_500), None, "another datagram");
        assert_eq!(t.lookup(&key(7), 1_000 + FRAG_TIMEOUT_MS), None);
        assert_eq!(t.sweep(1_000 + FRAG_TIMEOUT_MS), 1);
        assert!(t.is_empty());
    }

    #[test]
    fn a_flood_of_datagrams_stays_within_the_bound() {
        let t = FragTable::new();
        let mut refused = 0;
        for id in 0..=u16::MAX {
            if t.remember(key(id), NAT, 0).is_err() {
                refused += 1;
            }
        }
        assert!(t.len() <= FRAG_MAX, "{}", t.len());
        assert!(refused >= 65_536 - FRAG_MAX);
        // Once they expire, new datagrams find room again.
        let fresh = FragKey { zone: 2, ..key(1) };
        assert_eq!(t.remember(fresh, NAT, FRAG_TIMEOUT_MS + 1), Ok(()));
    }
}
