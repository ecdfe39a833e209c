//! Frames waiting for their next hop's MAC: the stage that takes them out
//! of the batch (asking for each next hop once) and the release of those
//! whose next hop has answered, or that waited too long.
//!
//! A held frame leaves the batch and a fresh buffer of the pool takes its
//! place; at most [`PENDING_MAX`] wait per poll thread, each up to
//! [`PENDING_TIMEOUT_MS`]. A tunnel frame waits for the next hop toward
//! its VTEP, and gets that MAC as its outer destination.

use super::ingress::Ingress;
use super::l3;
use super::scratch::{Held, Scratch, PENDING_MAX, PENDING_TIMEOUT_MS};
use crate::packet::{Batch, PacketPool, BATCH_SIZE};
use crate::snapshot::Snapshot;
use crate::stats::DropReason;
use crate::verdict::{FloodFrom, NextHop, Verdict};

/// Moves the frames waiting for a next hop out of the batch into the held
/// queue, and asks for each next hop once.
pub fn pass(at: &Ingress<'_>, batch: &mut Batch, pool: &mut PacketPool, scratch: &mut Scratch) {
    let snap = at.snap;
    for i in 0..batch.len() {
        let Verdict::Hold { via, ip } = scratch.verdicts[i] else {
            continue;
        };
        let asked = scratch.held.iter().any(|h| h.via == via && h.ip == ip);
        let (Some(leg), true) = (l3::leg(snap, via), scratch.held.len() < PENDING_MAX) else {
            scratch.verdicts[i] = Verdict::Drop(DropReason::NeighUnresolved);
            continue;
        };
        // The held frame leaves the batch; a fresh one takes its slot.
        let Some(spare) = pool.alloc() else {
            scratch.verdicts[i] = Verdict::Drop(DropReason::NoBuffer);
            continue;
        };
        let frame = batch.replace(i, spare);
        scratch.verdicts[i] = Verdict::Consumed;
        scratch.held.push(Held {
            frame,
            via,
            ip,
            in_slot: at.in_slot,
            deadline_ms: at.now_ms + PENDING_TIMEOUT_MS,
        });
        if asked {
            continue;
        }
        let Some(mut request) = pool.alloc() else {
            at.counters.drop(DropReason::NoBuffer);
            continue;
        };
        l3::arp_request(&mut request, leg.me, ip);
        let ask = match via {
            NextHop::Bridge(bridge) => Verdict::Flood {
                bridge,
                from: FloodFrom::Router,
            },
            NextHop::Uplink(_) => l3::deliver_via(snap, via, [0xff; 6], at.now_ms),
        };
        match batch.push_generated(request) {
            Ok(()) => scratch.verdicts[batch.len() - 1] = ask,
            Err(request) => pool.free(request),
        }
    }
}

/// Puts the held frames whose next hop has answered into `batch` (up to a
/// batch), with their verdicts, and drops those that waited too long.
pub fn release(
    snap: &Snapshot,
    thread: usize,
    batch: &mut Batch,
    pool: &mut PacketPool,
    scratch: &mut Scratch,
    now_ms: u64,
) {
    let mut i = 0;
    while i < scratch.held.len() && batch.len() < BATCH_SIZE {
        let h = &scratch.held[i];
        let leg = l3::leg(snap, h.via);
        let resolved = leg
            .as_ref()
            .and_then(|leg| leg.neigh.lookup(h.ip, now_ms).map(|mac| (mac, leg.me.mac)));
        if resolved.is_none() && now_ms <= h.deadline_ms && leg.is_some() {
            i += 1;
            continue;
        }
        let mut held = scratch.held.swap_remove(i);
        let Some((mac, src_mac)) = resolved else {
            if let Some(p) = snap.port(held.in_slot) {
                p.port.stats.cell(thread).drop(DropReason::NeighUnresolved);
            }
            pool.free(held.frame);
            continue;
        };
        match &mut held.frame.meta.encap {
            // A tunnel frame waited for the next hop toward its VTEP.
            Some(outer) => outer.dst_mac = mac,
            None => {
                let offset = held.frame.meta.eth_offset.map_or(0, usize::from);
                l3::set_macs(&mut held.frame, offset, mac, src_mac);
            }
        }
        let verdict = l3::deliver_via(snap, held.via, mac, now_ms);
        match batch.push_generated(held.frame) {
            Ok(()) => scratch.verdicts[batch.len() - 1] = verdict,
            Err(frame) => pool.free(frame),
        }
    }
}
