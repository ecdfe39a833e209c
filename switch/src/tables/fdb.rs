//! The forwarding database of one bridge: MAC -> port, learned from traffic.
//!
//! An [`AgingMap`] keyed by MAC, whose entries say where the MAC is
//! ([`Dest`]): behind a local port, named by slot *and* uid (a slot is
//! reused after a port is deleted, and an entry learned by a thread still
//! running on an old snapshot must not send frames to the port that took
//! the slot next), or behind a remote VTEP of the bridge's tunnel.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};

use super::aging::AgingMap;
pub use super::aging::Learned;

/// A port as the datapath names it: the slot in the current snapshot plus
/// the port's unique id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortHandle {
    pub slot: u32,
    pub uid: u64,
}

/// Where a MAC was learned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dest {
    /// Behind a local port.
    Port(PortHandle),
    /// Behind a remote VTEP of the bridge's VXLAN tunnel.
    Vtep(Ipv4Addr),
}

impl From<PortHandle> for Dest {
    fn from(port: PortHandle) -> Dest {
        Dest::Port(port)
    }
}

impl Dest {
    /// The remote VTEP, for an entry behind the tunnel.
    pub fn vtep(self) -> Option<Ipv4Addr> {
        match self {
            Dest::Vtep(ip) => Some(ip),
            Dest::Port(_) => None,
        }
    }
}

pub struct Fdb {
    table: AgingMap<Dest>,
    moves: AtomicU64,
}

/// One learned address, for display.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdbRecord {
    pub mac: [u8; 6],
    pub dest: Dest,
    pub age_ms: u64,
}

pub fn mac_key(mac: [u8; 6]) -> u64 {
    let mut b = [0u8; 8];
    b[..6].copy_from_slice(&mac);
    u64::from_be_bytes(b) >> 16
}

fn key_mac(key: u64) -> [u8; 6] {
    let b = (key << 16).to_be_bytes();
    [b[0], b[1], b[2], b[3], b[4], b[5]]
}

impl Fdb {
    pub fn new(max_entries: usize, aging_secs: u64) -> Fdb {
        Fdb {
            table: AgingMap::new(max_entries, aging_secs.saturating_mul(1000)),
            moves: AtomicU64::new(0),
        }
    }

    /// Records that `mac` was seen as a source at `dest` at `now_ms`.
    pub fn learn(&self, mac: [u8; 6], dest: impl Into<Dest>, now_ms: u64) -> Learned {
        let learned = self.table.learn(mac_key(mac), dest.into(), now_ms);
        if learned == Learned::Changed {
            self.moves.fetch_add(1, Ordering::Relaxed);
        }
        learned
    }

    /// Where `mac` was last seen, unless it has aged out.
    pub fn lookup(&self, mac: [u8; 6], now_ms: u64) -> Option<Dest> {
        self.table.lookup(mac_key(mac), now_ms)
    }

    /// Removes entries not seen for the aging time (housekeeping).
    pub fn sweep(&self, now_ms: u64) -> usize {
        self.table.sweep(now_ms)
    }

    /// Forgets everything learned on a port (it is being deleted).
    pub fn flush_port(&self, uid: u64) -> usize {
        self.table.retain(|dest| !matches!(dest, Dest::Port(p) if p.uid == uid))
    }

    /// Forgets every MAC learned behind remote VTEP `ip` (it is being
    /// removed).
    pub fn flush_vtep(&self, ip: Ipv4Addr) -> usize {
        self.table.retain(|dest| *dest != Dest::Vtep(ip))
    }

    /// Forgets every MAC learned behind the tunnel (it is being removed).
    pub fn flush_tunnel(&self) -> usize {
        self.table.retain(|dest| matches!(dest, Dest::Port(_)))
    }

    /// Entries that have not aged out, sorted by MAC.
    pub fn records(&self, now_ms: u64) -> Vec<FdbRecord> {
        self.table
            .records(now_ms)
            .into_iter()
            .map(|r| FdbRecord {
                mac: key_mac(r.key),
                dest: r.value,
                age_ms: r.age_ms,
            })
            .collect()
    }

    /// Entries in the table, counting aged ones not yet swept.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub fn max_entries(&self) -> usize {
        self.table.max_entries()
    }

    /// New limits for a live table (`vsctl set bridge`).
    pub fn set_limits(&self, max_entries: usize, aging_secs: u64) {
        self.table.set_limits(max_entries, aging_secs.saturating_mul(1000));
    }

    pub fn aging_secs(&self) -> u64 {
        self.table.max_age_ms() / 1000
    }

    pub fn limit_hits(&self) -> u64 {
        self.table.limit_hits()
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
        assert_eq!(fdb.lookup(A, 20), Some(Dest::Port(P1)));
        assert_eq!(fdb.lookup(B, 20), None);
        assert_eq!(fdb.len(), 1);
    }

    #[test]
    fn entries_age_out_and_are_swept() {
        let fdb = Fdb::new(100, 2);
        fdb.learn(A, P1, 0);
        fdb.learn(B, P2, 1_500);
        assert_eq!(
            fdb.lookup(A, 2_000),
            Some(Dest::Port(P1)),
            "exactly the aging time is still alive"
        );
        assert_eq!(fdb.lookup(A, 2_001), None, "aged out before any sweep");
        assert_eq!(fdb.sweep(2_001), 1);
        assert_eq!(fdb.len(), 1);
        assert_eq!(fdb.lookup(B, 2_001), Some(Dest::Port(P2)));
    }

    #[test]
    fn refresh_keeps_an_entry_alive() {
        let fdb = Fdb::new(100, 1);
        fdb.learn(A, P1, 0);
        fdb.learn(A, P1, 900);
        assert_eq!(fdb.lookup(A, 1_800), Some(Dest::Port(P1)));
    }

    #[test]
    fn a_mac_moves_between_ports() {
        let fdb = Fdb::new(100, 300);
        fdb.learn(A, P1, 0);
        assert_eq!(fdb.learn(A, P2, 5), Learned::Changed);
        assert_eq!(fdb.lookup(A, 6), Some(Dest::Port(P2)));
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
        assert_eq!(fdb.lookup(B, 1), Some(Dest::Port(P2)));
        let recs = fdb.records(1);
        assert_eq!(
            recs,
            vec![FdbRecord {
                mac: B,
                dest: Dest::Port(P2),
                age_ms: 1
            }]
        );
    }

    #[test]
    fn entries_behind_vteps_are_flushed_by_vtep_or_all_at_once() {
        let fdb = Fdb::new(100, 300);
        let (v1, v2) = (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2));
        fdb.learn(A, Dest::Vtep(v1), 0);
        fdb.learn(B, Dest::Vtep(v2), 0);
        fdb.learn([2, 0, 0, 0, 0, 0xc], P1, 0);
        assert_eq!(fdb.lookup(A, 1), Some(Dest::Vtep(v1)));
        assert_eq!(fdb.flush_port(P1.uid), 1, "a port's flush leaves the VTEPs' entries");
        assert_eq!(fdb.flush_vtep(v1), 1);
        assert_eq!((fdb.lookup(A, 1), fdb.lookup(B, 1)), (None, Some(Dest::Vtep(v2))));
        fdb.learn([2, 0, 0, 0, 0, 0xc], P1, 0);
        assert_eq!(fdb.flush_tunnel(), 1, "every VTEP's, no port's");
        assert_eq!(fdb.len(), 1);
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
        assert_eq!(fdb.lookup([2, 0, 0, 1, 0, 7], 0), Some(Dest::Port(P2)));
    }
}
