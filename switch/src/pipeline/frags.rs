//! Later IPv4 fragments that arrive before their datagram's first one
//! (NAT needs the first fragment's ports to know what they become): each
//! poll thread holds a few, in frames of its own pool, and runs them
//! through the router again until the first fragment has been seen or
//! they have waited too long (`frag-no-first`). Bounded: at most
//! [`FRAG_HELD_MAX`] per thread; past that they are dropped at once.

use super::ingress::Ingress;
use super::l3;
use super::scratch::{Held, HeldFrag, Scratch, FRAG_HELD_MAX, PENDING_MAX, PENDING_TIMEOUT_MS};
use crate::packet::{Batch, PacketPool, BATCH_SIZE};
use crate::snapshot::Snapshot;
use crate::stats::DropReason;
use crate::verdict::Verdict;

/// How long a fragment waits for its datagram's first one.
pub const FRAG_WAIT_MS: u64 = 1_000;

/// Takes the batch's fragments that wait for their first one out of it,
/// while there is room, a fresh frame taking each one's slot.
pub fn pass(at: &Ingress<'_>, batch: &mut Batch, pool: &mut PacketPool, scratch: &mut Scratch) {
    let (in_slot, now_ms) = (at.in_slot, at.now_ms);
    for i in 0..batch.len() {
        if scratch.verdicts[i] != Verdict::Drop(DropReason::FragNoFirst) || scratch.frags.len() >= FRAG_HELD_MAX {
            continue;
        }
        let Some(spare) = pool.alloc() else {
            continue;
        };
        let frame = batch.replace(i, spare);
        scratch.verdicts[i] = Verdict::Consumed;
        scratch.frags.push(HeldFrag {
            frame,
            in_slot,
            deadline_ms: now_ms + FRAG_WAIT_MS,
        });
    }
}

/// Routes the held fragments whose first fragment has come, into `batch`
/// (up to a batch), and drops those that waited too long.
pub fn release(
    snap: &Snapshot,
    thread: usize,
    batch: &mut Batch,
    pool: &mut PacketPool,
    scratch: &mut Scratch,
    now_ms: u64,
) {
    let mut i = 0;
    while i < scratch.frags.len() && batch.len() < BATCH_SIZE {
        let h = &mut scratch.frags[i];
        let Some(at) = Ingress::new(snap, thread, h.in_slot, now_ms) else {
            pool.free(scratch.frags.swap_remove(i).frame);
            continue;
        };
        let counters = at.counters;
        // Nothing was changed in a fragment refused for waiting.
        let verdict = if at.uplink() {
            l3::from_uplink(&mut h.frame, &at)
        } else {
            l3::process(&mut h.frame, &at)
        };
        if verdict == Verdict::Drop(DropReason::FragNoFirst) && now_ms <= h.deadline_ms {
            i += 1;
            continue;
        }
        let held = scratch.frags.swap_remove(i);
        match verdict {
            Verdict::Drop(reason) => {
                counters.drop(reason);
                pool.free(held.frame);
            }
            // Its first fragment went the same way moments ago and asked
            // for the next hop's MAC: it waits with it.
            Verdict::Hold { via, ip } if scratch.held.len() < PENDING_MAX => scratch.held.push(Held {
                frame: held.frame,
                via,
                ip,
                in_slot: held.in_slot,
                deadline_ms: now_ms + PENDING_TIMEOUT_MS,
            }),
            Verdict::Hold { .. } => {
                counters.drop(DropReason::NeighUnresolved);
                pool.free(held.frame);
            }
            verdict => match batch.push_generated(held.frame) {
                Ok(()) => scratch.verdicts[batch.len() - 1] = verdict,
                Err(frame) => pool.free(frame),
            },
        }
    }
}
