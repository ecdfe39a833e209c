//! The neighbour (ARP) table of one routed bridge: IPv4 address -> MAC.
//!
//! Filled from the sender fields of every ARP packet the gateway sees, and
//! from the replies to its own requests. Entries age like the FDB's; an aged
//! entry is resolved again by the next frame that needs it.

use std::net::Ipv4Addr;

use super::aging::AgingMap;

/// How long an entry is trusted without a fresh ARP packet from its owner.
pub const NEIGH_AGE_MS: u64 = 60_000;
/// Entries one table holds.
pub const NEIGH_MAX: usize = 4096;

pub struct NeighTable {
    table: AgingMap<[u8; 6]>,
}

impl Default for NeighTable {
    fn default() -> Self {
        NeighTable {
            table: AgingMap::new(NEIGH_MAX, NEIGH_AGE_MS),
        }
    }
}

impl NeighTable {
    pub fn learn(&self, ip: Ipv4Addr, mac: [u8; 6], now_ms: u64) {
        self.table.learn(u64::from(u32::from(ip)), mac, now_ms);
    }

    pub fn lookup(&self, ip: Ipv4Addr, now_ms: u64) -> Option<[u8; 6]> {
        self.table.lookup(u64::from(u32::from(ip)), now_ms)
    }

    pub fn sweep(&self, now_ms: u64) -> usize {
        self.table.sweep(now_ms)
    }

    /// Forgets every entry (the link they were learned on is gone).
    pub fn clear(&self) -> usize {
        self.table.retain(|_| false)
    }

    /// (address, MAC, age in ms) of the live entries, by address.
    pub fn records(&self, now_ms: u64) -> Vec<(Ipv4Addr, [u8; 6], u64)> {
        self.table
            .records(now_ms)
            .into_iter()
            .map(|r| (Ipv4Addr::from(r.key as u32), r.value, r.age_ms))
            .collect()
    }
}
