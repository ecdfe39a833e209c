//! Network policy: connections to and from attachments a policy isolates
//! go only where their policies allow (Kubernetes NetworkPolicy, compiled
//! by `vswitch-policy` into [`PolicyView`]).
//!
//! Two points, one connection table. [`outbound`] sees the frames an
//! isolated attachment sends, as it sent them (after the guard, before
//! switching and NAT); [`inbound`] the frames about to be handed to one
//! (after routing and NAT, before the tunnel). Both see the attachment's
//! own addresses, so a connection and its replies are one entry, whichever
//! end is met first. A frame of a connection in the table passes when the
//! generation that allowed it is the snapshot's; otherwise (a first packet,
//! or the policies changed since) the connection is judged: the opener's
//! egress rules and the acceptor's ingress rules must both allow it (an end
//! no policy isolates allows anything), and only then is it entered. A
//! connection a changed policy no longer allows is cut at its next packet.
//! Calico's order (established first, then policy), in one lookup.
//!
//! - ARP passes: a neighbour must be found to be refused at IP. Other
//!   non-IPv4 frames to or from an isolated attachment (IPv6 until it is
//!   carried, raw Ethernet) are dropped: Docker's `enable_icc=false`
//!   filters only IP and lets raw frames through.
//! - The bridge's gateway is the node, which Kubernetes always lets talk
//!   to its pods: its traffic passes, untracked.
//! - ICMP echo is tracked with `vswitch-nat`'s tuple, which keys a request
//!   (id, 0) and a reply (0, id): an inbound echo request never matches the
//!   entry of an outbound one (Cilium's advisory).
//! - An ICMP error passes when the packet it quotes belongs to a
//!   connection allowed (path MTU discovery, port unreachable), and only
//!   then.
//! - What the table cannot track (protocols without ports, TCP in
//!   fragments) is judged per packet, destination port 0; later fragments
//!   pass (without their first they are nothing).
//! - Floods reach an isolated attachment only if ARP (`tx`); a unicast
//!   frame waiting for its next hop is judged before it waits.
//! - A bridge with `icc` false (Docker's `enable_icc=false`) isolates its
//!   attachments too, and two of them never reach each other, directly or
//!   routed through the gateway; the gateway, the host and the outside
//!   they reach as policies allow.

use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;

use smoltcp::wire::{EthernetFrame, EthernetProtocol, Ipv4Packet};
use vswitch_nat::table::{CtDrop, Nat};
use vswitch_nat::tuple::{Proto, Tuple};
use vswitch_policy::compile::{IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP};
use vswitch_policy::Direction;

use super::ingress::Ingress;
pub use super::scratch::{End, FlowKey, Recent};
use crate::flows::{FlowEvent, FlowKind};
use crate::packet::{Batch, Frame};
use crate::snapshot::{PolicyView, Snapshot};
use crate::stats::DropReason;
use crate::verdict::{NextHop, Verdict};

/// How long a flow passes on [`Recent`] before its connection is looked
/// up (and its expiry advanced) again.
const RECENT_MS: u64 = 1_000;

impl Recent {
    /// Starts a batch under snapshot `generation` at `now_ms`.
    #[inline]
    fn begin(&mut self, generation: u64, now_ms: u64) {
        if self.generation != generation || now_ms.saturating_sub(self.since_ms) >= RECENT_MS {
            self.last = FlowKey::NONE;
            self.generation = generation;
        }
    }

    /// `frame`'s flow for `end`, and whether it is the one last allowed.
    #[inline(always)]
    fn continues(&self, frame: &Frame, end: End) -> (bool, FlowKey) {
        let offset = frame.meta.eth_offset.map_or(0, usize::from) + ETHERNET_HEADER_LEN;
        let key = match (frame.meta.ethertype, frame.data().get(offset..)) {
            (Some(EthernetProtocol::Ipv4), Some(ip)) => flow_key(ip, end),
            _ => FlowKey::NONE,
        };
        (key != FlowKey::NONE && key == self.last, key)
    }

    /// What [`judge`] said at `now_ms` of the frame of flow `key`.
    #[inline]
    fn judged(
        &mut self,
        key: FlowKey,
        verdict: Result<Option<bool>, DropReason>,
        now_ms: u64,
    ) -> Result<(), DropReason> {
        if verdict == Ok(Some(true)) && key != FlowKey::NONE {
            self.last = key;
            self.since_ms = now_ms;
        } else if key == self.last {
            self.last = FlowKey::NONE;
        }
        verdict.map(|_| ())
    }
}

/// The length of an Ethernet header without a VLAN tag.
const ETHERNET_HEADER_LEN: usize = 14;

/// The outbound point: the frames an isolated attachment sends.
#[inline]
pub fn outbound(batch: &Batch, at: &Ingress<'_>, verdicts: &mut [Verdict], recent: &mut Recent) {
    let (Some(view), Some(member)) = (&at.snap.policy, at.input.policy) else {
        return;
    };
    let (zone, gateway) = place(at.snap, at.bridge);
    recent.begin(at.snap.generation, at.now_ms);
    let end = End::Src(member);
    for (frame, out) in batch.frames().iter().zip(verdicts.iter_mut()) {
        if *out != Verdict::L2 {
            continue;
        }
        let (known, key) = recent.continues(frame, end);
        if known {
            continue;
        }
        if let Err(reason) = recent.judged(
            key,
            judge(view, frame, zone, gateway, end, at.now_ms, at.thread),
            at.now_ms,
        ) {
            *out = Verdict::Drop(reason);
        }
    }
}

/// The inbound point: the frames going to an isolated attachment, by port
/// or waiting for its MAC.
#[inline]
pub fn inbound(batch: &Batch, at: &Ingress<'_>, verdicts: &mut [Verdict], recent: &mut Recent) {
    let Some(view) = &at.snap.policy else {
        return;
    };
    recent.begin(at.snap.generation, at.now_ms);
    // The last output port looked at, and its bridge and member.
    let mut last_port: Option<(u32, Option<(u32, u32)>)> = None;
    for (frame, out) in batch.frames().iter().zip(verdicts.iter_mut()) {
        let (bridge, member) = match *out {
            Verdict::Forward(slot) => {
                let found = match last_port {
                    Some((s, found)) if s == slot => found,
                    _ => {
                        let found = at.snap.port(slot).and_then(|p| Some((p.bridge, p.policy?)));
                        last_port = Some((slot, found));
                        found
                    }
                };
                match found {
                    Some(found) => found,
                    None => continue,
                }
            }
            Verdict::Hold {
                via: NextHop::Bridge(bridge),
                ip,
            } => {
                let (zone, _) = place(at.snap, bridge);
                match view.members.get(&(zone, ip)).filter(|&&m| isolated(view, m)) {
                    Some(&m) => (bridge, m),
                    None => continue,
                }
            }
            _ => continue,
        };
        let end = End::Dst(member);
        let (known, key) = recent.continues(frame, end);
        if known {
            continue;
        }
        let (zone, gateway) = place(at.snap, bridge);
        if let Err(reason) = recent.judged(
            key,
            judge(view, frame, zone, gateway, end, at.now_ms, at.thread),
            at.now_ms,
        ) {
            *out = Verdict::Drop(reason);
        }
    }
}

/// A bridge's policy zone and gateway address.
#[inline]
fn place(snap: &Snapshot, bridge: u32) -> (u16, Option<Ipv4Addr>) {
    snap.bridge(bridge)
        .map_or((0, None), |b| (b.policy_zone, b.l3.as_ref().map(|l3| l3.gateway)))
}

fn isolated(view: &PolicyView, member: u32) -> bool {
    let rules = view.compiled.endpoint(member as usize);
    rules.isolated(Direction::Ingress)
        || rules.isolated(Direction::Egress)
        || view.apart.get(member as usize).is_some_and(Option::is_some)
}

/// May the frame go, `end` being the isolated attachment? `Ok(Some(true))`
/// when it passed as a packet of a tracked connection.
pub fn judge(
    view: &PolicyView,
    frame: &Frame,
    zone: u16,
    gateway: Option<Ipv4Addr>,
    end: End,
    now_ms: u64,
    thread: usize,
) -> Result<Option<bool>, DropReason> {
    let offset = frame.meta.eth_offset.map_or(0, usize::from);
    let data = frame.data().get(offset..).unwrap_or_default();
    let eth = EthernetFrame::new_checked(data).map_err(|_| DropReason::Malformed)?;
    // Classify read the type already.
    match frame.meta.ethertype.unwrap_or_else(|| eth.ethertype()) {
        EthernetProtocol::Arp => return Ok(None),
        EthernetProtocol::Ipv4 => {}
        _ => return Err(DropReason::PolicyDenied),
    }
    judge_ipv4(view, eth.payload(), zone, gateway, end, (now_ms, thread))
}

/// The bytes that name an unfragmented TCP or UDP packet's connection
/// (protocol, addresses, ports), with the attachment judged, for a packet
/// whose IPv4 header has no options and that changes no TCP state; None
/// for any other (judged the long way).
/// Read by hand: smoltcp's views and `vswitch-nat`'s tuple were 15% of an
/// established frame's instructions (callgrind, `pipeline/l2_forward_policy_1`)
/// for a comparison that needs 13 bytes.
#[inline(always)]
fn flow_key(ip: &[u8], end: End) -> FlowKey {
    const TCP: u8 = 6;
    const UDP: u8 = 17;
    const NOT_PLAIN: u8 = 0x07; // FIN, SYN, RST
                                // A 20-byte header (no options) and the ports: one bounds check.
    let Some(h) = ip.get(..24) else {
        return FlowKey::NONE;
    };
    let fragmented = h[6] & 0x3f != 0 || h[7] != 0;
    let plain = match h[9] {
        TCP => ip.get(33).is_some_and(|flags| flags & NOT_PLAIN == 0),
        UDP => true,
        _ => false,
    };
    if h[0] != 0x45 || fragmented || !plain {
        return FlowKey::NONE;
    }
    // Compared, never read as numbers: native byte order, no swaps.
    let addrs = u64::from_ne_bytes([h[12], h[13], h[14], h[15], h[16], h[17], h[18], h[19]]);
    let ports = u32::from_ne_bytes([h[20], h[21], h[22], h[23]]);
    FlowKey(
        u128::from(addrs) << 64 | u128::from(ports) << 8 | u128::from(h[9]),
        end.code(),
    )
}

/// [`judge`] for an IPv4 packet: `Ok(Some(true))` when it passed as a
/// packet of a tracked connection.
fn judge_ipv4(
    view: &PolicyView,
    packet: &[u8],
    zone: u16,
    gateway: Option<Ipv4Addr>,
    end: End,
    (now_ms, thread): (u64, usize),
) -> Result<Option<bool>, DropReason> {
    let ip = Ipv4Packet::new_checked(packet).map_err(|_| DropReason::Malformed)?;
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    if gateway.is_some_and(|gw| gw == src || gw == dst) || ip.frag_offset() != 0 {
        return Ok(None);
    }
    let seen = vswitch_nat::parse::seen(packet, zone).map_err(|_| DropReason::Malformed)?;
    let Some(seen) = seen else {
        // An ICMP error passes when it is about a connection allowed.
        if let Some((proto, src, src_port, dst, dst_port)) = vswitch_nat::rewrite::icmp_error_quote(packet) {
            let quoted = Tuple {
                zone,
                proto,
                src,
                src_port,
                dst,
                dst_port,
            };
            return match view.ct.lookup(&quoted, now_ms) {
                Some((conn, _)) if conn.mark.load(Ordering::Relaxed) == view.generation + 1 => Ok(None),
                _ => Err(DropReason::PolicyDenied),
            };
        }
        // Nothing to track: judged as a connection of its own.
        let protocol = u8::from(ip.next_header());
        let (opener, acceptor) = ends_of(src, dst, end);
        if allowed(view, zone, opener, acceptor, protocol, 0) {
            return Ok(None);
        }
        let (src_port, dst_port) = (0, 0);
        let event = (protocol, src, src_port, dst, dst_port);
        view.flows.record(thread, flow(FlowKind::Denied, now_ms, event));
        return Err(DropReason::PolicyDenied);
    };
    judge_tracked(view, seen, zone, end, (now_ms, thread)).map(|()| Some(true))
}

/// [`judge`] for a packet the connection table tracks.
fn judge_tracked(
    view: &PolicyView,
    seen: vswitch_nat::table::Seen,
    zone: u16,
    end: End,
    (now_ms, thread): (u64, usize),
) -> Result<(), DropReason> {
    let mark = view.generation + 1;
    match view.ct.track_existing(seen, now_ms) {
        Some(Ok(tracked)) => {
            if tracked.conn.mark.load(Ordering::Relaxed) == mark {
                return Ok(());
            }
            // Allowed under other policies: judged again by its first packet.
            let orig = tracked.conn.orig;
            let at_orig = match (end, tracked.dir == vswitch_nat::tcp::Dir::Original) {
                (e, true) => e,
                (End::Src(m), false) => End::Dst(m),
                (End::Dst(m), false) => End::Src(m),
            };
            let (opener, acceptor) = ends_of(orig.src, orig.dst, at_orig);
            if allowed(view, zone, opener, acceptor, protocol_of(&orig), orig.dst_port) {
                tracked.conn.mark.store(mark, Ordering::Relaxed);
                Ok(())
            } else {
                view.ct.forget(&tracked.conn);
                view.flows.record(thread, flow(FlowKind::Denied, now_ms, parts(&orig)));
                Err(DropReason::PolicyDenied)
            }
        }
        Some(Err(drop)) => Err(drop.into()),
        None => {
            let t = seen.tuple;
            let (opener, acceptor) = ends_of(t.src, t.dst, end);
            if !allowed(view, zone, opener, acceptor, protocol_of(&t), t.dst_port) {
                view.flows.record(thread, flow(FlowKind::Denied, now_ms, parts(&t)));
                return Err(DropReason::PolicyDenied);
            }
            match view.ct.track(seen, now_ms, |_| Nat::default()) {
                Ok(tracked) => {
                    tracked.conn.mark.store(mark, Ordering::Relaxed);
                    view.flows.record(thread, flow(FlowKind::New, now_ms, parts(&t)));
                    Ok(())
                }
                Err(CtDrop::TableFull) => Err(DropReason::CtTableFull),
                Err(drop) => Err(drop.into()),
            }
        }
    }
}

/// An end of a connection: its address, and its member when the point
/// knows it.
type Side = (Ipv4Addr, Option<u32>);

/// The opener (the source of the connection's first packet) and the
/// acceptor of a packet `src` -> `dst` whose `end` the point knows.
fn ends_of(src: Ipv4Addr, dst: Ipv4Addr, end: End) -> (Side, Side) {
    match end {
        End::Src(m) => ((src, Some(m)), (dst, None)),
        End::Dst(m) => ((src, None), (dst, Some(m))),
    }
}

/// A connection's protocol, addresses and ports.
type Parts = (u8, Ipv4Addr, u16, Ipv4Addr, u16);

/// `t` as a flow event's parts.
pub fn parts(t: &Tuple) -> Parts {
    (protocol_of(t), t.src, t.src_port, t.dst, t.dst_port)
}

fn flow(kind: FlowKind, at_ms: u64, parts: Parts) -> FlowEvent {
    FlowEvent::new(kind, at_ms, parts)
}

fn protocol_of(t: &Tuple) -> u8 {
    match t.proto {
        Proto::Tcp => IPPROTO_TCP,
        Proto::Udp => IPPROTO_UDP,
        Proto::IcmpEcho => IPPROTO_ICMP,
    }
}

/// The opener's egress rules and the acceptor's ingress rules both allow
/// the connection (an end no policy isolates allows anything), and the two
/// are not kept apart by their bridge.
fn allowed(view: &PolicyView, zone: u16, opener: Side, acceptor: Side, protocol: u8, port: u16) -> bool {
    let member = |(addr, known): Side| known.or_else(|| view.members.get(&(zone, addr)).copied());
    let (from, to) = (member(opener), member(acceptor));
    if let (Some(a), Some(b)) = (from, to) {
        let apart = |m: u32| view.apart.get(m as usize).copied().flatten();
        if apart(a).is_some() && apart(a) == apart(b) {
            return false;
        }
    }
    let c = &view.compiled;
    let out = from.is_none_or(|m| {
        c.verdict(m as usize, Direction::Egress, acceptor.0, protocol, port)
            .allows()
    });
    out && to.is_none_or(|m| {
        c.verdict(m as usize, Direction::Ingress, opener.0, protocol, port)
            .allows()
    })
}

#[cfg(test)]
mod tests;
