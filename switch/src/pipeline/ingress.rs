//! Where a batch came from, as every stage sees it: the snapshot, the
//! input port and its bridge, the counters drops are charged to, the
//! batch's clock, and the memo of what its frames already looked up.

use super::memo::Memo;
use crate::snapshot::{PortSlot, Snapshot};
use crate::stats::PortCounters;

pub struct Ingress<'a> {
    pub snap: &'a Snapshot,
    /// The port the batch was read from.
    pub input: &'a PortSlot,
    /// Its bridge's slot.
    pub bridge: u32,
    pub in_slot: u32,
    /// The input port's counters of this thread.
    pub counters: &'a PortCounters,
    pub now_ms: u64,
    /// The poll thread's index.
    pub thread: usize,
    /// What the batch's frames already looked up.
    pub memo: Memo,
}

impl<'a> Ingress<'a> {
    /// The batch read by poll thread `thread` from port `in_slot`; None
    /// when the port or its bridge is not in `snap`.
    pub fn new(snap: &'a Snapshot, thread: usize, in_slot: u32, now_ms: u64) -> Option<Ingress<'a>> {
        let input = snap.port(in_slot)?;
        snap.bridge(input.bridge)?;
        Some(Ingress {
            thread,
            snap,
            input,
            bridge: input.bridge,
            in_slot,
            counters: input.port.stats.cell(thread),
            now_ms,
            memo: Memo::default(),
        })
    }

    /// The batch came in on an uplink (a router leg, maybe a tunnel's
    /// underlay), not on a bridge member.
    #[inline]
    pub fn uplink(&self) -> bool {
        self.input.uplink
    }
}
