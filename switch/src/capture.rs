//! Capture: copies of a port's frames, for `vsctl capture` to write as
//! pcap.
//!
//! Off, it costs the datapath one relaxed load per batch and direction.
//! Armed, the poll thread copies each frame (its Ethernet frame, cut at
//! [`SNAPLEN`]; a TCP super-frame is cut there too, its original length
//! kept) into a ring of buffers allocated when the capture started, under
//! the port's capture lock, once per batch. A full ring skips frames and
//! counts them: a slow reader never slows forwarding. The control thread
//! drains the ring when vsctl asks (swapping each filled buffer for an
//! empty one, so the lock is held for no copy) and applies the capture's
//! filter, if it has one, outside the lock; a capture nobody reads for
//! `session::IDLE_LIMIT` stops itself (vsctl killed, say).

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::packet::Frame;
use crate::session::Session;

/// Bytes kept of each frame.
pub const SNAPLEN: usize = 9216;
/// Frames the ring holds between two reads.
pub const RING: usize = 512;

pub const RX: u8 = 1;
pub const TX: u8 = 2;

/// One captured frame, as handed to the reader.
pub struct Captured {
    pub unix_ns: u64,
    pub orig_len: usize,
    pub tx: bool,
    pub data: Vec<u8>,
}

struct Ring {
    bufs: Vec<Vec<u8>>,
    /// (wall-clock ns, original length, sent) per buffer.
    info: Vec<(u64, usize, bool)>,
    start: usize,
    len: usize,
    /// Frames still to capture (None: until stopped).
    remaining: Option<u64>,
    skipped: u64,
}

/// Which frames a capture keeps (an Ethernet frame, cut at [`SNAPLEN`]).
pub type Filter = Box<dyn Fn(&[u8]) -> bool + Send>;

/// What a read of the ring returns.
pub struct Drained {
    pub frames: Vec<Captured>,
    /// Frames skipped so far because the ring was full.
    pub skipped: u64,
    /// Frames the filter left out in this read.
    pub filtered: u64,
    /// The count was reached and everything read.
    pub done: bool,
}

/// A port's capture: which directions are armed, the ring and the filter.
#[derive(Default)]
pub struct CaptureSlot {
    /// The ring; armed with the directions captured.
    session: Session<Ring>,
    /// Used by the reader only, never by the poll thread.
    filter: Mutex<Option<Filter>>,
}

impl CaptureSlot {
    fn filter(&self) -> MutexGuard<'_, Option<Filter>> {
        self.filter.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether direction `dir` (RX or TX) is being captured.
    #[inline]
    pub fn armed(&self, dir: u8) -> bool {
        self.session.armed() & dir != 0
    }

    /// Starts capturing `dirs`, the first `count` frames (all, without a
    /// filter; the count is of frames copied, before the filter); false if
    /// a capture is already running.
    pub fn start(&self, dirs: u8, count: Option<u64>, filter: Option<Filter>) -> bool {
        let ring = Ring {
            bufs: (0..RING).map(|_| Vec::with_capacity(SNAPLEN)).collect(),
            info: vec![(0, 0, false); RING],
            start: 0,
            len: 0,
            remaining: count,
            skipped: 0,
        };
        // The filter is the reader's (the control thread's, which also
        // starts and stops): set once the capture is ours.
        let started = self.session.start(dirs, ring);
        if started {
            *self.filter() = filter;
        }
        started
    }

    pub fn stop(&self) {
        self.session.stop();
        *self.filter() = None;
    }

    /// Copies the frames `which` of `frames` (poll thread, armed only).
    /// `offset(frame)` is where its Ethernet header starts.
    pub fn record<'a>(&self, frames: impl Iterator<Item = &'a Frame>, offset: impl Fn(&Frame) -> usize, tx: bool) {
        let unix_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let done = self.session.with(|ring| {
            Self::copy(ring, frames, offset, tx, unix_ns);
            ring.remaining == Some(0)
        });
        // Enough: no more frames are taken (the reader stops it).
        if done == Some(true) {
            self.session.disarm();
        }
    }

    fn copy<'a>(
        ring: &mut Ring,
        frames: impl Iterator<Item = &'a Frame>,
        offset: impl Fn(&Frame) -> usize,
        tx: bool,
        unix_ns: u64,
    ) {
        for frame in frames {
            if ring.remaining == Some(0) {
                break;
            }
            if ring.len == RING {
                ring.skipped += 1;
                continue;
            }
            let Some(eth) = frame.data().get(offset(frame)..) else {
                continue;
            };
            let i = (ring.start + ring.len) % RING;
            let buf = &mut ring.bufs[i];
            buf.clear();
            // Within the capacity allocated at start: no allocation here.
            buf.extend_from_slice(&eth[..eth.len().min(SNAPLEN)]);
            ring.info[i] = (unix_ns, eth.len(), tx);
            ring.len += 1;
            if let Some(r) = ring.remaining.as_mut() {
                *r -= 1;
            }
        }
    }

    /// Takes what was captured and matches the filter; None when no
    /// capture runs.
    pub fn drain(&self) -> Option<Drained> {
        let (mut frames, skipped, done) = self.take()?;
        let before = frames.len();
        if let Some(keep) = self.filter().as_ref() {
            frames.retain(|f| keep(&f.data));
        }
        Some(Drained {
            filtered: (before - frames.len()) as u64,
            frames,
            skipped,
            done,
        })
    }

    /// Empties the ring: (frames, skipped so far, the count was reached).
    fn take(&self) -> Option<(Vec<Captured>, u64, bool)> {
        self.session.read(Self::empty)
    }

    fn empty(ring: &mut Ring) -> (Vec<Captured>, u64, bool) {
        let mut out = Vec::with_capacity(ring.len);
        while ring.len > 0 {
            let i = ring.start;
            let (unix_ns, orig_len, tx) = ring.info[i];
            // The filled buffer leaves with the frame and an empty one of
            // the same size takes its place: no copy while the poll
            // thread may be waiting for the lock.
            out.push(Captured {
                unix_ns,
                orig_len,
                tx,
                data: std::mem::replace(&mut ring.bufs[i], Vec::with_capacity(SNAPLEN)),
            });
            ring.start = (ring.start + 1) % RING;
            ring.len -= 1;
        }
        let done = ring.remaining == Some(0);
        (out, ring.skipped, done)
    }

    /// Stops a capture nobody has read for `session::IDLE_LIMIT`
    /// (housekeeping).
    pub fn expire_idle(&self) -> bool {
        let idle = self.session.expire_idle();
        if idle {
            *self.filter() = None;
        }
        idle
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::PacketPool;

    #[test]
    fn a_full_ring_skips_and_a_count_stops() {
        let slot = CaptureSlot::default();
        assert!(!slot.armed(RX));
        let mut pool = PacketPool::new(1);
        let mut f = pool.alloc().expect("a buffer");
        f.fill(&[0xab; 100]);
        assert!(slot.start(RX, Some(RING as u64 + 5), None));
        assert!(!slot.start(RX, None, None), "one capture at a time");
        assert!(slot.armed(RX) && !slot.armed(TX));
        for _ in 0..RING + 3 {
            slot.record(std::iter::once(&f), |_| 10, false);
        }
        let Drained {
            frames, skipped, done, ..
        } = slot.drain().expect("running");
        assert_eq!((frames.len(), skipped, done), (RING, 3, false));
        assert_eq!(
            (frames[0].orig_len, frames[0].data.len()),
            (90, 90),
            "from the offset on"
        );
        for _ in 0..10 {
            slot.record(std::iter::once(&f), |_| 0, true);
        }
        let Drained { frames, done, .. } = slot.drain().expect("running");
        assert_eq!(frames.len(), 5, "the count was reached");
        assert!(done && frames[0].tx && !slot.armed(RX));
        slot.stop();
        assert!(slot.drain().is_none());
    }

    #[test]
    fn a_filter_keeps_what_matches_and_counts_the_rest() {
        let slot = CaptureSlot::default();
        let mut pool = PacketPool::new(2);
        let (mut a, mut b) = (pool.alloc().expect("a buffer"), pool.alloc().expect("a buffer"));
        a.fill(&[1; 64]);
        b.fill(&[2; 64]);
        assert!(slot.start(RX, None, Some(Box::new(|data: &[u8]| data[0] == 1))));
        for _ in 0..3 {
            slot.record([&a, &b].into_iter(), |_| 0, false);
        }
        let Drained { frames, filtered, .. } = slot.drain().expect("running");
        assert_eq!((frames.len(), filtered), (3, 3));
        assert!(frames.iter().all(|f| f.data[0] == 1));
        slot.stop();
        assert!(slot.start(RX, None, None));
        slot.record(std::iter::once(&b), |_| 0, false);
        assert_eq!(
            slot.drain().map(|d| d.frames.len()),
            Some(1),
            "a new capture, no filter"
        );
    }
}
