//! Trace: what the pipeline decided for the next frames a port receives,
//! for `vsctl trace`.
//!
//! Off, it costs one relaxed load per batch. Armed, the poll thread notes
//! for each frame of the batch (up to the count asked) its headers as they
//! came, the L2 stage's decision, the verdict the pipeline reached and its
//! headers as they leave (so a route's TTL and a NAT rewrite show), into
//! a bounded list allocated when the trace started; no text is made in the
//! datapath. The control thread turns the records into words when vsctl
//! reads them (`control::trace`). A trace nobody reads for 10 s stops.

use std::net::Ipv4Addr;

use smoltcp::wire::{EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, TcpPacket, UdpPacket};

use crate::packet::Frame;
use crate::session::Session;
use crate::verdict::Verdict;

/// Records held between two reads.
pub const MAX_RECORDS: usize = 256;

/// The headers of a frame, as far as they parse.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Headers {
    pub len: usize,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub ethertype: u16,
    /// Source, destination, protocol number, TTL.
    pub ipv4: Option<(Ipv4Addr, Ipv4Addr, u8, u8)>,
    /// TCP or UDP ports.
    pub ports: Option<(u16, u16)>,
    /// ICMP type and code.
    pub icmp: Option<(u8, u8)>,
    /// TCP flags byte.
    pub tcp_flags: Option<u8>,
}

impl Headers {
    pub fn of(frame: &Frame, offset: usize) -> Headers {
        let data = frame.data().get(offset..).unwrap_or_default();
        let mut h = Headers {
            len: data.len(),
            ..Default::default()
        };
        let Ok(eth) = EthernetFrame::new_checked(data) else {
            return h;
        };
        h.src_mac = eth.src_addr().0;
        h.dst_mac = eth.dst_addr().0;
        h.ethertype = u16::from(eth.ethertype());
        if eth.ethertype() != EthernetProtocol::Ipv4 {
            return h;
        }
        let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
            return h;
        };
        let proto = ip.next_header();
        h.ipv4 = Some((ip.src_addr(), ip.dst_addr(), u8::from(proto), ip.hop_limit()));
        match proto {
            IpProtocol::Tcp => {
                if let Ok(t) = TcpPacket::new_checked(ip.payload()) {
                    h.ports = Some((t.src_port(), t.dst_port()));
                    // Byte 13 of the TCP header: CWR ECE URG ACK PSH RST SYN FIN.
                    h.tcp_flags = ip.payload().get(13).copied();
                }
            }
            IpProtocol::Udp => {
                h.ports = UdpPacket::new_checked(ip.payload())
                    .ok()
                    .map(|u| (u.src_port(), u.dst_port()));
            }
            IpProtocol::Icmp => {
                let p = ip.payload();
                h.icmp = p.first().copied().zip(p.get(1).copied());
            }
            _ => {}
        }
        h
    }
}

/// What happened to one frame.
#[derive(Clone, Copy, Debug)]
pub struct TraceRecord {
    pub thread: usize,
    pub before: Headers,
    /// The L2 stage's decision (None: the port is an uplink, routed at once;
    /// or classify/guard dropped it first).
    pub l2: Option<Verdict>,
    pub verdict: Verdict,
    pub after: Headers,
}

struct Ring {
    records: Vec<TraceRecord>,
    remaining: u64,
}

/// The session's one armed bit.
const ARMED: u8 = 1;

#[derive(Default)]
pub struct TraceSlot {
    session: Session<Ring>,
}

impl TraceSlot {
    #[inline]
    pub fn armed(&self) -> bool {
        self.session.armed() != 0
    }

    /// Traces the next `count` frames; false when a trace runs already.
    pub fn start(&self, count: u64) -> bool {
        let ring = Ring {
            records: Vec::with_capacity(MAX_RECORDS),
            remaining: count,
        };
        self.session.start(if count > 0 { ARMED } else { 0 }, ring)
    }

    pub fn stop(&self) {
        self.session.stop();
    }

    /// How many more frames the trace wants (poll thread, armed only).
    pub fn wanted(&self) -> usize {
        (self.session)
            .with(|r| (r.remaining as usize).min(MAX_RECORDS - r.records.len()))
            .unwrap_or(0)
    }

    /// Keeps `records` (at most what is still wanted).
    pub fn record(&self, records: &[TraceRecord]) {
        let done = self.session.with(|ring| {
            for r in records {
                if ring.remaining == 0 || ring.records.len() == MAX_RECORDS {
                    break;
                }
                // Within the capacity reserved at start: no allocation.
                ring.records.push(*r);
                ring.remaining -= 1;
            }
            ring.remaining == 0
        });
        if done == Some(true) {
            self.session.disarm();
        }
    }

    /// Takes the records so far; `done` when the count was reached. None
    /// when no trace runs.
    pub fn drain(&self) -> Option<(Vec<TraceRecord>, bool)> {
        (self.session).read(|ring| (ring.records.drain(..).collect(), ring.remaining == 0))
    }

    /// Stops a trace nobody has read for `session::IDLE_LIMIT`.
    pub fn expire_idle(&self) -> bool {
        self.session.expire_idle()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::PacketPool;
    use crate::stats::DropReason;

    #[test]
    fn a_trace_takes_its_count_then_stops() {
        let slot = TraceSlot::default();
        assert!(!slot.armed() && slot.drain().is_none());
        assert!(slot.start(3));
        assert!(!slot.start(1), "one trace at a time");
        assert_eq!(slot.wanted(), 3);
        let mut pool = PacketPool::new(1);
        let mut f = pool.alloc().expect("a buffer");
        f.fill(&[0xff; 60]);
        let r = TraceRecord {
            thread: 0,
            before: Headers::of(&f, 0),
            l2: None,
            verdict: Verdict::Drop(DropReason::Malformed),
            after: Headers::of(&f, 0),
        };
        assert_eq!(r.before.len, 60);
        slot.record(&[r, r]);
        let (got, done) = slot.drain().expect("running");
        assert_eq!((got.len(), done), (2, false));
        slot.record(&[r, r, r]);
        let (got, done) = slot.drain().expect("running");
        assert_eq!((got.len(), done), (1, true), "only the count");
        assert!(!slot.armed());
        slot.stop();
        assert!(slot.drain().is_none());
    }
}
