//! The pipeline: what happens to a batch between rx and tx.
//!
//! A batch passes the stages in order, each one a loop over the whole
//! batch that reads and writes one [`Verdict`] per frame (VPP's nodes and
//! `nexts[]`; Snabb's bridge sorts first and acts second): a frame whose
//! verdict names a stage (`L2`, `Underlay`, `L3`) is that stage's to
//! decide, any other verdict the stages pass by. The runner below only
//! calls the stages in order; the tx step (`tx`) sends what they decided
//! and counts drops by reason; capture and trace watch through a hook
//! (`observe`).
//!
//! | stage | file | decides |
//! | --- | --- | --- |
//! | classify | `classify` | headers checked once, offsets recorded; to `L2` (member port) or `Underlay` (uplink) |
//! | guard | `guard` | a guarded port speaks only as its lease |
//! | settle | `l4sum` | checksums a port without a virtio-net header left unfinished |
//! | policy out | `policy` | what an isolated attachment sends, by its policies (and the acceptor's) |
//! | tunnel in | `decap` | an uplink's VXLAN opened and switched in its bridge; the rest to `L3` |
//! | switch | `l2` | learn the source, forward, flood, or to `L3` (the gateway) |
//! | route | `l3` (+ `nat`) | ARP, ICMP, NAT, routing, TTL, next hop or `Hold` |
//! | policy in | `policy` | what goes to an isolated attachment, by its policies (and the opener's) |
//! | tunnel out | `encap` | frames for remote VTEPs to the underlay; floods replicated |
//! | hold | `hold`, `frags` | frames waiting for a next hop's MAC or their first fragment |
//! | tx | `tx` (+ `encap::seal`, `encap::cut`) | queues per port, one burst each |
//!
//! A stage after the switch runs only when a frame was sent its way (as
//! VPP runs a node only for the frames enqueued to it): a batch that is
//! only switched skips the router and the hold scans (~10 instructions a
//! frame, callgrind). Adding a stage is one file and one line in
//! [`run_batch`]. Stages read
//! the snapshot and the tables and write only the frames and the
//! counters; they never call the control plane, open a device or make a
//! syscall (the ports' tx bursts, called by the tx step, do the I/O).
//! Nothing here allocates: the queues are sized when a snapshot arrives.
//! The vocabulary the stages share is in `crate::verdict`, `ingress` and
//! `scratch`, which import no stage (`switch/tests/layering.rs` checks).

pub mod classify;
pub mod decap;
pub mod encap;
mod frags;
pub mod guard;
mod hold;
pub mod ingress;
pub mod l2;
pub mod l3;
pub mod l4sum;
mod memo;
pub mod nat;
mod observe;
pub mod policy;
pub mod scratch;
mod tx;

pub use crate::verdict::{FloodFrom, NextHop, Verdict};
pub use scratch::Scratch;

use crate::packet::{Batch, PacketPool};
use crate::snapshot::Snapshot;
use ingress::Ingress;

/// Runs one batch read from port `in_slot` through the pipeline and sends it.
/// The caller gives the frames back to its pool afterwards.
pub fn run_batch(
    snap: &Snapshot,
    thread: usize,
    in_slot: u32,
    batch: &mut Batch,
    pool: &mut PacketPool,
    scratch: &mut Scratch,
    now_ms: u64,
) {
    let Some(at) = Ingress::new(snap, thread, in_slot, now_ms) else {
        return;
    };
    let (v, trace) = (&mut scratch.verdicts, &mut scratch.trace);
    let traced = observe::received(&at, thread, batch, trace);
    classify::pass(batch, &at, v);
    guard::pass(batch, &at, v);
    l4sum::pass(batch, &at, v);
    policy::outbound(batch, &at, v, &mut scratch.policy_out);
    observe::classified(traced, v, trace);
    let routed = decap::pass(batch, &at, v) | l2::pass(batch, &at, v);
    observe::switched(traced, v, trace);
    if routed {
        l3::pass(batch, &at, v);
    }
    policy::inbound(batch, &at, v, &mut scratch.policy_in);
    encap::pass(&at, batch, pool, v);
    observe::decided(&at, traced, batch, v, trace);
    if routed || snap.tunnels {
        hold::pass(&at, batch, pool, scratch);
        frags::pass(&at, batch, pool, scratch);
    }
    tx::send(snap, thread, Some(at.counters), batch, pool, scratch);
}

/// Sends the frames still held whose next hop has answered (or whose
/// datagram's first fragment has come), and drops those that waited too
/// long. Returns true while frames remain held (the poll thread must not
/// sleep on them).
pub fn run_held(
    snap: &Snapshot,
    thread: usize,
    batch: &mut Batch,
    pool: &mut PacketPool,
    scratch: &mut Scratch,
    now_ms: u64,
) -> bool {
    hold::release(snap, thread, batch, pool, scratch, now_ms);
    frags::release(snap, thread, batch, pool, scratch, now_ms);
    if !batch.is_empty() {
        tx::send(snap, thread, None, batch, pool, scratch);
        batch.release(pool);
    }
    scratch.held() > 0
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_encap;
#[cfg(test)]
mod tests_stages;
#[cfg(test)]
mod tests_vxlan;
