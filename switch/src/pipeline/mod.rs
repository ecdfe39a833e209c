//! The pipeline: what happens to a batch between rx and tx.
//!
//! Sort first, act second (Snabb's learning bridge, VPP's `nexts[]`): each
//! stage looks at the whole batch and writes a [`Verdict`] per frame; then
//! one runner counts the drops, puts every frame on the tx queue of each port
//! it goes to, and flushes each touched port once. Output queues hold indices
//! into the batch, so flooding sends the same buffer to every port without a
//! copy, and nothing here allocates: the queues are sized when a snapshot
//! arrives, not per frame.

pub mod classify;
pub mod fdb;
pub mod l2;

use crate::packet::{Batch, BATCH_SIZE};
use crate::snapshot::Snapshot;
use crate::stats::DropReason;
use fdb::PortHandle;

/// Where a frame goes next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Drop(DropReason),
    /// To one port, by slot.
    Forward(u32),
    /// To every other port of the bridge.
    Flood,
}

/// Per-thread working space of the runner, reused for every batch.
pub struct Scratch {
    verdicts: [Verdict; BATCH_SIZE],
    /// Per output port slot: indices of the batch's frames to send there.
    tx: Vec<Vec<u16>>,
    /// Slots whose queue is not empty, in the order first used.
    touched: Vec<u32>,
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch {
            verdicts: [Verdict::Flood; BATCH_SIZE],
            tx: Vec::new(),
            touched: Vec::new(),
        }
    }
}

impl Scratch {
    /// Makes room for `slots` output ports. Called when a snapshot arrives.
    pub fn fit(&mut self, slots: usize) {
        if self.tx.len() < slots {
            self.tx.resize_with(slots, || Vec::with_capacity(BATCH_SIZE));
        }
        self.touched.reserve(slots.saturating_sub(self.touched.capacity()));
    }

    fn enqueue(&mut self, slot: u32, frame: usize) -> bool {
        let Some(queue) = self.tx.get_mut(slot as usize) else {
            return false;
        };
        if queue.is_empty() {
            self.touched.push(slot);
        }
        queue.push(frame as u16);
        true
    }
}

/// Runs one batch read from port `in_slot` through the pipeline and sends it.
/// The caller gives the frames back to its pool afterwards.
pub fn run_batch(snap: &Snapshot, thread: usize, in_slot: u32, batch: &mut Batch, scratch: &mut Scratch, now_ms: u64) {
    let Some(input) = snap.port(in_slot) else { return };
    let counters = input.port.stats.cell(thread);
    let Some(bridge) = snap.bridge(input.bridge) else {
        return;
    };
    let in_handle = PortHandle {
        slot: in_slot,
        uid: input.port.uid,
    };

    for (i, frame) in batch.frames_mut().iter_mut().enumerate() {
        scratch.verdicts[i] = match classify::classify(frame, input.vnet_hdr) {
            Err(reason) => Verdict::Drop(reason),
            Ok(()) => {
                if frame.meta.gso.is_some() {
                    counters.rx_gso_packets.add(1);
                }
                l2::decide(snap, bridge, in_handle, frame, now_ms)
            }
        };
    }

    for i in 0..batch.len() {
        match scratch.verdicts[i] {
            Verdict::Drop(reason) => counters.drop(reason),
            Verdict::Forward(slot) => {
                if !scratch.enqueue(slot, i) {
                    counters.drop(DropReason::NoDestination);
                }
            }
            Verdict::Flood => {
                let mut sent = false;
                for &slot in &bridge.ports {
                    let usable = snap.port(slot).is_some_and(|p| p.port.fault().is_none());
                    if slot != in_slot && usable {
                        sent |= scratch.enqueue(slot, i);
                    }
                }
                if !sent {
                    counters.drop(DropReason::NoDestination);
                }
            }
        }
    }

    let Scratch { tx, touched, .. } = scratch;
    for slot in touched.drain(..) {
        let Some(queue) = tx.get_mut(slot as usize) else {
            continue;
        };
        if let Some(out) = snap.port(slot) {
            out.port.io.tx_burst(batch, queue, out.port.stats.cell(thread));
        }
        queue.clear();
    }
}

#[cfg(test)]
mod tests;
