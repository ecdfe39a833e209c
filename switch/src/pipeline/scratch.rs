//! Per-thread working space of the pipeline, reused for every batch: the
//! verdicts, the output queues, the frames held for a next hop or for
//! their datagram's first fragment, the trace records, and the frames a
//! tunnel super-frame is cut into. Allocated when the thread starts (the
//! queues grow when a snapshot brings more ports), never per frame.

use std::net::Ipv4Addr;

use crate::packet::{Batch, Frame, BATCH_CAPACITY};
use crate::trace::TraceRecord;
use crate::verdict::{NextHop, Verdict};

/// Frames one poll thread holds while the gateway resolves their next hop.
pub const PENDING_MAX: usize = 64;
/// How long a held frame waits for an ARP answer.
pub const PENDING_TIMEOUT_MS: u64 = 1_000;
/// Fragments one poll thread holds at most.
pub const FRAG_HELD_MAX: usize = 32;

/// A routed frame waiting for its next hop's MAC.
pub struct Held {
    pub frame: Frame,
    pub via: NextHop,
    pub ip: Ipv4Addr,
    pub in_slot: u32,
    pub deadline_ms: u64,
}

/// A later fragment waiting for its datagram's first fragment.
pub struct HeldFrag {
    pub frame: Frame,
    pub in_slot: u32,
    pub deadline_ms: u64,
}

/// Which end of a frame is the isolated attachment the point stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// It sent the frame (outbound).
    Src(u32),
    /// The frame is for it (inbound).
    Dst(u32),
}

impl End {
    /// One number for the key: the side, then the member.
    #[inline]
    pub fn code(self) -> u64 {
        match self {
            End::Src(m) => u64::from(m),
            End::Dst(m) => 1 << 32 | u64::from(m),
        }
    }
}

/// A flow as the policy points compare it: protocol, addresses and ports
/// as they sit in the packet, and the attachment's [`End::code`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowKey(pub u128, pub u64);

impl FlowKey {
    /// No flow (a packet judged the long way): no end has this code.
    pub const NONE: FlowKey = FlowKey(0, u64::MAX);
}

/// The flow a poll thread's policy point last allowed (`policy` holds the
/// methods): a frame of the same flow, for the same attachment, that
/// changes no TCP state, passes without a lookup (a batch, and the
/// batches after it, usually carry one flow). Forgotten when the snapshot
/// changes (policies, labels, members) and a second after the connection
/// was last advanced in the table, so its expiry stays fresh; TCP segments
/// that change state (SYN, FIN, RST) always go to the table.
pub struct Recent {
    /// The flow last allowed, and when the table last saw it.
    pub(super) last: FlowKey,
    pub(super) since_ms: u64,
    pub(super) generation: u64,
}

impl Default for Recent {
    fn default() -> Recent {
        Recent {
            last: FlowKey::NONE,
            since_ms: 0,
            generation: 0,
        }
    }
}

pub struct Scratch {
    pub verdicts: [Verdict; BATCH_CAPACITY],
    /// Per output port slot: indices of the batch's frames to send there.
    tx: Vec<Vec<u16>>,
    /// Slots whose queue is not empty, in the order first used.
    touched: Vec<u32>,
    pub held: Vec<Held>,
    /// Later IPv4 fragments waiting for their datagram's first one.
    pub frags: Vec<HeldFrag>,
    /// What `vsctl trace` is told of this batch's frames (room for a batch
    /// reserved once).
    pub trace: Vec<TraceRecord>,
    /// The pieces of a tunnel super-frame cut for a port that cannot take
    /// it whole, sent a burst at a time.
    pub pieces: Batch,
    /// What the policy points remember of the flow they last allowed.
    pub policy_out: Recent,
    pub policy_in: Recent,
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch {
            verdicts: [Verdict::Consumed; BATCH_CAPACITY],
            trace: Vec::with_capacity(BATCH_CAPACITY),
            tx: Vec::new(),
            touched: Vec::new(),
            held: Vec::with_capacity(PENDING_MAX),
            frags: Vec::with_capacity(FRAG_HELD_MAX),
            pieces: Batch::default(),
            policy_out: Recent::default(),
            policy_in: Recent::default(),
        }
    }
}

impl Scratch {
    /// Makes room for `slots` output ports. Called when a snapshot arrives.
    pub fn fit(&mut self, slots: usize) {
        if self.tx.len() < slots {
            self.tx.resize_with(slots, || Vec::with_capacity(BATCH_CAPACITY));
        }
        self.touched.reserve(slots.saturating_sub(self.touched.capacity()));
    }

    /// Queues frame `frame` of the batch for port `slot`; false when the
    /// slot is unknown.
    pub fn enqueue(&mut self, slot: u32, frame: usize) -> bool {
        let Some(queue) = self.tx.get_mut(slot as usize) else {
            return false;
        };
        if queue.is_empty() {
            self.touched.push(slot);
        }
        queue.push(frame as u16);
        true
    }

    /// The output queues filled since the last call, each with its slot,
    /// handed to `send` in the order first used and emptied after.
    pub fn drain_queues(&mut self, mut send: impl FnMut(u32, &[u16], &mut Batch)) {
        let Scratch {
            tx, touched, pieces, ..
        } = self;
        for slot in touched.drain(..) {
            let Some(queue) = tx.get_mut(slot as usize) else {
                continue;
            };
            send(slot, queue, pieces);
            queue.clear();
        }
    }

    /// Frames held for ARP resolution or for their first fragment.
    pub fn held(&self) -> usize {
        self.held.len() + self.frags.len()
    }
}
