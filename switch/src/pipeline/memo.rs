//! What the frames of one batch share: the FDB, neighbour and conntrack
//! answers the frames ahead of them already got.
//!
//! A batch comes from one port and usually carries one conversation (a TCP
//! stream, a flood of one flow), yet every frame took the FDB's shard lock
//! twice (learn the source, look up the destination), and every routed
//! frame took the neighbour table's and the next bridge's: a third of the
//! L2 stage and a quarter of the routed one (criterion, `pipeline`); a
//! NAT'd frame looked its connection up in a sharded table. The memo keeps
//! the last answer of each kind for the batch; a frame that asks the same
//! question gets it without a lock (a connection's state is still advanced
//! for every packet, under its own lock: TCP tracking needs each segment).
//!
//! Never stale within the batch: a source that is new or moved (the FDB
//! changed) and an ARP message (the neighbour table may have) forget what
//! was looked up, so no frame sees a table as it was before a frame ahead
//! of it changed it. Across batches nothing is kept. Cells: the memo lives
//! in the batch's `Ingress`, which the stages share by reference; one poll
//! thread uses it.

use std::cell::{Cell, RefCell};
use std::net::Ipv4Addr;

use vswitch_nat::table::Tracked;
use vswitch_nat::tuple::Tuple;

use crate::tables::fdb::{Dest, Fdb, Learned};
use crate::verdict::{NextHop, Verdict};

/// A routed frame's way on: the next hop's MAC, the MAC it leaves from and
/// where it goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    pub mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub verdict: Verdict,
}

#[derive(Default)]
pub struct Memo {
    /// A source MAC learned on a port (or behind a VTEP) by this batch.
    learned: Cell<Option<([u8; 6], Dest)>>,
    /// The last destination looked up in the ingress bridge's FDB.
    looked_up: Cell<Option<([u8; 6], Option<Dest>)>>,
    /// The last next hop resolved, and its way on.
    route: Cell<Option<(NextHop, Ipv4Addr, Route)>>,
    /// The connection of the last tuple NAT tracked.
    connection: RefCell<Option<(Tuple, Tracked)>>,
    /// A learn through this memo changed the FDB.
    changed: Cell<bool>,
}

impl Memo {
    /// Learns `src` on `port` unless this batch already did.
    #[inline]
    pub fn learn(&self, fdb: &Fdb, src: [u8; 6], port: Dest, now_ms: u64) {
        if self.learned.get() == Some((src, port)) {
            return;
        }
        match fdb.learn(src, port, now_ms) {
            // Not learned: the next frame tries again (and counts the hit).
            Learned::LimitReached => {}
            Learned::Refreshed => self.learned.set(Some((src, port))),
            Learned::New | Learned::Changed => {
                self.learned.set(Some((src, port)));
                self.changed.set(true);
                self.forget_tables();
            }
        }
    }

    /// Where `dst` was learned in `fdb`, the ingress bridge's.
    #[inline]
    pub fn lookup(&self, fdb: &Fdb, dst: [u8; 6], now_ms: u64) -> Option<Dest> {
        match self.looked_up.get() {
            Some((mac, out)) if mac == dst => out,
            _ => {
                let out = fdb.lookup(dst, now_ms);
                self.looked_up.set(Some((dst, out)));
                out
            }
        }
    }

    /// The way on to `ip` via `hop`, if a frame ahead found it.
    pub fn route(&self, hop: NextHop, ip: Ipv4Addr) -> Option<Route> {
        match self.route.get() {
            Some((h, i, route)) if h == hop && i == ip => Some(route),
            _ => None,
        }
    }

    pub fn remember_route(&self, hop: NextHop, ip: Ipv4Addr, route: Route) {
        self.route.set(Some((hop, ip, route)));
    }

    /// The connection of `tuple`, if the batch's last NAT'd packet had
    /// that tuple (its state is still to be advanced for this packet).
    pub fn connection(&self, tuple: &Tuple) -> Option<Tracked> {
        match &*self.connection.borrow() {
            Some((t, tracked)) if t == tuple => Some(tracked.clone()),
            _ => None,
        }
    }

    pub fn remember_connection(&self, tuple: Tuple, tracked: &Tracked) {
        *self.connection.borrow_mut() = Some((tuple, tracked.clone()));
    }

    pub fn forget_connection(&self) {
        *self.connection.borrow_mut() = None;
    }

    /// Some learn through this memo changed the FDB (for a memo of its own,
    /// to tell the batch's).
    pub fn changed(&self) -> bool {
        self.changed.get()
    }

    /// A table changed under the batch: what was looked up may be wrong.
    pub fn forget_tables(&self) {
        self.looked_up.set(None);
        self.route.set(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::fdb::PortHandle;
    use std::sync::Arc;

    const A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];

    fn port(slot: u32) -> Dest {
        Dest::Port(PortHandle {
            slot,
            uid: u64::from(slot) + 1,
        })
    }

    #[test]
    fn a_lookup_is_remembered_until_the_table_changes() {
        let fdb = Fdb::new(16, 300);
        let memo = Memo::default();
        assert_eq!(memo.lookup(&fdb, B, 0), None);
        fdb.learn(B, port(1), 0);
        // Remembered: the batch saw B as unknown.
        assert_eq!(memo.lookup(&fdb, B, 0), None);
        // A frame of the batch whose source is new forgets it.
        assert!(!memo.changed());
        memo.learn(&fdb, A, port(0), 0);
        assert!(memo.changed(), "a new source is a change of the table");
        assert_eq!(memo.lookup(&fdb, B, 0), Some(port(1)));
        // A source seen again changes nothing: still remembered.
        memo.learn(&fdb, A, port(0), 0);
        fdb.learn(B, port(2), 0);
        assert_eq!(memo.lookup(&fdb, B, 0), Some(port(1)));
        // A source that moved is a change.
        memo.learn(&fdb, A, port(3), 0);
        assert_eq!(fdb.lookup(A, 0), Some(port(3)), "learned despite the memo");
        assert_eq!(memo.lookup(&fdb, B, 0), Some(port(2)));
    }

    #[test]
    fn a_route_is_remembered_per_next_hop() {
        let memo = Memo::default();
        let hop = NextHop::Bridge(1);
        let ip = Ipv4Addr::new(10, 2, 0, 2);
        let route = Route {
            mac: B,
            src_mac: A,
            verdict: Verdict::Forward(1),
        };
        assert_eq!(memo.route(hop, ip), None);
        memo.remember_route(hop, ip, route);
        assert_eq!(memo.route(hop, ip), Some(route));
        assert_eq!(memo.route(NextHop::Uplink(1), ip), None);
        assert_eq!(memo.route(hop, Ipv4Addr::new(10, 2, 0, 3)), None);
        memo.forget_tables();
        assert_eq!(memo.route(hop, ip), None);
    }

    #[test]
    fn a_connection_is_remembered_for_its_tuple_only() {
        use vswitch_nat::table::{ConnTable, Nat, Seen};
        use vswitch_nat::tuple::Proto;
        let ct = ConnTable::new(16);
        let tuple = Tuple {
            zone: 0,
            proto: Proto::Udp,
            src: Ipv4Addr::new(10, 1, 0, 2),
            src_port: 4000,
            dst: Ipv4Addr::new(198, 18, 0, 1),
            dst_port: 53,
        };
        let nat = Nat {
            snat: Some(Ipv4Addr::new(198, 51, 100, 2)),
            dnat: None,
        };
        let tracked = ct.track(Seen { tuple, tcp: None }, 0, |_| nat).expect("tracked");
        let memo = Memo::default();
        assert!(memo.connection(&tuple).is_none());
        memo.remember_connection(tuple, &tracked);
        let found = memo.connection(&tuple).expect("remembered");
        assert!(Arc::ptr_eq(&found.conn, &tracked.conn));
        let other = Tuple {
            src_port: 4001,
            ..tuple
        };
        assert!(memo.connection(&other).is_none());
        memo.forget_connection();
        assert!(memo.connection(&tuple).is_none());
    }
}
