//! The tx step: puts every frame on the queue of each port its verdict
//! names, counts the drops (on the ingress port's counters), seals tunnel
//! frames now that their next hop is known, and flushes each touched port
//! once, in the order its frames were queued. Output queues hold indices
//! into the batch, so a flood sends the same buffer to every port without
//! a copy.

use super::encap;
use super::scratch::Scratch;
use crate::capture;
use crate::packet::{Batch, PacketPool, BATCH_CAPACITY};
use crate::snapshot::{PortSlot, Snapshot};
use crate::stats::{DropReason, PortCounters};
use crate::verdict::Verdict;

/// Indices 0, 1, 2, ...: the whole of a batch of pieces, as a queue.
const EVERY: [u16; BATCH_CAPACITY] = {
    let mut all = [0u16; BATCH_CAPACITY];
    let mut i = 0;
    while i < BATCH_CAPACITY {
        all[i] = i as u16;
        i += 1;
    }
    all
};

/// Sends the batch by its verdicts. `counters`: the ingress port's, where
/// drops are counted (None for frames that waited: their drops were
/// counted when they were held).
pub fn send(
    snap: &Snapshot,
    thread: usize,
    counters: Option<&PortCounters>,
    batch: &mut Batch,
    pool: &mut PacketPool,
    scratch: &mut Scratch,
) {
    if snap.tunnels {
        encap::seal_batch(snap, thread, batch, &mut scratch.verdicts);
    }
    queue(snap, counters, batch, scratch);
    let batch = &*batch;
    scratch.drain_queues(|slot, queue, pieces| match snap.port(slot) {
        Some(out) if snap.tunnels => flush(out, thread, batch, queue, pool, pieces),
        Some(out) => burst(out, batch, queue, out.port.stats.cell(thread)),
        None => {}
    });
}

fn queue(snap: &Snapshot, counters: Option<&PortCounters>, batch: &Batch, scratch: &mut Scratch) {
    let count = |reason| {
        if let Some(c) = counters {
            c.drop(reason);
        }
    };
    for i in 0..batch.len() {
        match scratch.verdicts[i] {
            Verdict::Drop(reason) => count(reason),
            Verdict::Consumed | Verdict::Hold { .. } => {}
            // A frame no stage took (its stage went away under it, as a
            // tunnel can): nowhere to go.
            Verdict::L2 | Verdict::Underlay | Verdict::L3 | Verdict::Tunnel { .. } => count(DropReason::NoRoute),
            Verdict::Forward(slot) => {
                if !scratch.enqueue(slot, i) {
                    count(DropReason::NoDestination);
                }
            }
            Verdict::Flood { bridge, from } => {
                let except = from.except();
                let mut sent = false;
                // Isolated attachments get floods only if ARP (`policy`).
                let arp = snap.policy.is_none() || batch.frames().get(i).is_some_and(is_arp);
                for &slot in snap.bridge(bridge).map(|b| b.ports.as_slice()).unwrap_or(&[]) {
                    let usable = snap
                        .port(slot)
                        .is_some_and(|p| p.port.fault().is_none() && (arp || p.policy.is_none()));
                    if Some(slot) != except && usable {
                        sent |= scratch.enqueue(slot, i);
                    }
                }
                if !sent {
                    count(DropReason::NoDestination);
                }
            }
        }
    }
}

fn is_arp(frame: &crate::packet::Frame) -> bool {
    let offset = frame.meta.eth_offset.map_or(0, usize::from);
    let data = frame.data().get(offset..).unwrap_or_default();
    smoltcp::wire::EthernetFrame::new_checked(data)
        .is_ok_and(|eth| eth.ethertype() == smoltcp::wire::EthernetProtocol::Arp)
}

/// Sends the frames of `queue` out of port `out`, in order: runs of frames
/// ready for the wire in one burst each, a tunnel super-frame the port
/// cannot take whole cut into pieces between them.
fn flush(out: &PortSlot, thread: usize, batch: &Batch, queue: &[u16], pool: &mut PacketPool, pieces: &mut Batch) {
    let counters = out.port.stats.cell(thread);
    let frames = batch.frames();
    let mut rest = queue;
    while !rest.is_empty() {
        let to_cut = |&i: &u16| frames.get(usize::from(i)).is_some_and(|f| f.meta.encap.is_some());
        let ready = rest.iter().position(to_cut).unwrap_or(rest.len());
        if ready > 0 {
            burst(out, batch, &rest[..ready], counters);
        }
        let Some((&i, after)) = rest[ready..].split_first() else {
            break;
        };
        if let Some(frame) = frames.get(usize::from(i)) {
            if let Some(outer) = &frame.meta.encap {
                encap::cut(frame, outer, pool, pieces, counters, |cut| {
                    burst(out, cut, &EVERY[..cut.len()], counters)
                });
            }
        }
        rest = after;
    }
}

fn burst(out: &PortSlot, batch: &Batch, which: &[u16], counters: &PortCounters) {
    if out.port.capture.armed(capture::TX) {
        let frames = batch.frames();
        let sent = which.iter().filter_map(|&i| frames.get(usize::from(i)));
        out.port
            .capture
            .record(sent, |f| f.meta.eth_offset.map_or(0, usize::from), true);
    }
    out.port.io.tx_burst(batch, which, counters);
}
