//! The policy stages' connection events, for `vsctl observe` (Hubble's
//! flows): a connection allowed (new), refused (denied) or forgotten by
//! the policy table (closed), as its addresses, ports and time. Names,
//! namespaces and the deciding policy are found when the events are read
//! (`control::observe`), by the compiler `check-policy` uses.
//!
//! One log per poll thread (by index, modulo [`SLOTS`]), of a capacity
//! reserved at start, so recording never allocates: a poll thread takes
//! its log's lock only for a connection's first packet (the packets of one
//! allowed never come here), the reader only to drain it. What a full log
//! cannot keep is counted. Housekeeping drains the logs into the control
//! plane's history once a period, so `observe` shows the recent past.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// Logs (poll threads beyond share them).
pub const SLOTS: usize = 8;
/// Events a log keeps between two drains.
pub const CAPACITY: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowKind {
    New,
    Denied,
    Closed,
}

impl FlowKind {
    pub fn name(self) -> &'static str {
        match self {
            FlowKind::New => "new",
            FlowKind::Denied => "denied",
            FlowKind::Closed => "closed",
        }
    }
}

/// One event: the connection as its first packet named it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowEvent {
    pub kind: FlowKind,
    /// `clock::now_ms` when it happened.
    pub at_ms: u64,
    /// IP protocol number.
    pub protocol: u8,
    pub src: Ipv4Addr,
    pub src_port: u16,
    pub dst: Ipv4Addr,
    pub dst_port: u16,
}

impl FlowEvent {
    /// `parts`: protocol, source, source port, destination, its port.
    pub fn new(kind: FlowKind, at_ms: u64, parts: (u8, Ipv4Addr, u16, Ipv4Addr, u16)) -> FlowEvent {
        let (protocol, src, src_port, dst, dst_port) = parts;
        FlowEvent {
            kind,
            at_ms,
            protocol,
            src,
            src_port,
            dst,
            dst_port,
        }
    }
}

pub struct FlowLogs {
    slots: Vec<Mutex<Vec<FlowEvent>>>,
    lost: AtomicU64,
}

impl Default for FlowLogs {
    fn default() -> Self {
        FlowLogs {
            slots: (0..SLOTS).map(|_| Mutex::new(Vec::with_capacity(CAPACITY))).collect(),
            lost: AtomicU64::new(0),
        }
    }
}

impl FlowLogs {
    /// Keeps `event` in poll thread `thread`'s log (no allocation).
    #[inline]
    pub fn record(&self, thread: usize, event: FlowEvent) {
        let Some(slot) = self.slots.get(thread % SLOTS) else {
            return;
        };
        let mut log = slot.lock().unwrap_or_else(PoisonError::into_inner);
        if log.len() < log.capacity() {
            log.push(event);
        } else {
            drop(log);
            self.lost.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Moves every log's events into `out`, oldest first within a log;
    /// the logs keep their capacity.
    pub fn drain_into(&self, out: &mut Vec<FlowEvent>) {
        for slot in &self.slots {
            let mut log = slot.lock().unwrap_or_else(PoisonError::into_inner);
            out.append(&mut log);
        }
        out.sort_by_key(|e| e.at_ms);
    }

    /// Events no log had room for, so far.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(at_ms: u64) -> FlowEvent {
        FlowEvent {
            kind: FlowKind::New,
            at_ms,
            protocol: 6,
            src: [10, 0, 0, 1].into(),
            src_port: 4000,
            dst: [10, 0, 0, 2].into(),
            dst_port: 80,
        }
    }

    #[test]
    fn logs_keep_what_fits_count_the_rest_and_drain_in_time_order() {
        let logs = FlowLogs::default();
        logs.record(1, event(5));
        logs.record(0, event(3));
        logs.record(SLOTS + 1, event(4));
        let mut out = Vec::new();
        logs.drain_into(&mut out);
        assert_eq!(out.iter().map(|e| e.at_ms).collect::<Vec<_>>(), vec![3, 4, 5]);
        for i in 0..CAPACITY as u64 + 2 {
            logs.record(0, event(i));
        }
        assert_eq!(logs.lost(), 2);
        out.clear();
        logs.drain_into(&mut out);
        assert_eq!(out.len(), CAPACITY);
        logs.record(0, event(9));
        out.clear();
        logs.drain_into(&mut out);
        assert_eq!(out.len(), 1, "drained logs take events again");
    }
}
