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
//! - What the table cannot track (ICMP errors, protocols without ports,
//!   TCP in fragments) is judged per packet, destination port 0; later
//!   fragments pass (without their first they are nothing).
//! - Floods reach an isolated attachment only if ARP (`tx`); a unicast
//!   frame waiting for its next hop is judged before it waits.

use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;

use smoltcp::wire::{EthernetFrame, EthernetProtocol, Ipv4Packet};
use vswitch_nat::table::{CtDrop, Nat};
use vswitch_nat::tuple::{Proto, Tuple};
use vswitch_policy::compile::{IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP};
use vswitch_policy::Direction;

use super::ingress::Ingress;
use crate::packet::{Batch, Frame};
use crate::snapshot::{PolicyView, Snapshot};
use crate::stats::DropReason;
use crate::verdict::{NextHop, Verdict};

/// Which end of a frame is the isolated attachment the point stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// It sent the frame (outbound).
    Src(u32),
    /// The frame is for it (inbound).
    Dst(u32),
}

/// The outbound point: the frames an isolated attachment sends.
#[inline]
pub fn outbound(batch: &Batch, at: &Ingress<'_>, verdicts: &mut [Verdict]) {
    let (Some(view), Some(member)) = (&at.snap.policy, at.input.policy) else {
        return;
    };
    let (zone, gateway) = place(at.snap, at.bridge);
    for (frame, out) in batch.frames().iter().zip(verdicts.iter_mut()) {
        if *out == Verdict::L2 {
            if let Err(reason) = judge(view, frame, zone, gateway, End::Src(member), at.now_ms) {
                *out = Verdict::Drop(reason);
            }
        }
    }
}

/// The inbound point: the frames going to an isolated attachment, by port
/// or waiting for its MAC.
#[inline]
pub fn inbound(batch: &Batch, at: &Ingress<'_>, verdicts: &mut [Verdict]) {
    let Some(view) = &at.snap.policy else {
        return;
    };
    for (frame, out) in batch.frames().iter().zip(verdicts.iter_mut()) {
        let (bridge, member) = match *out {
            Verdict::Forward(slot) => match at.snap.port(slot).and_then(|p| Some((p.bridge, p.policy?))) {
                Some(found) => found,
                None => continue,
            },
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
        let (zone, gateway) = place(at.snap, bridge);
        if let Err(reason) = judge(view, frame, zone, gateway, End::Dst(member), at.now_ms) {
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
    rules.isolated(Direction::Ingress) || rules.isolated(Direction::Egress)
}

/// May the frame go, `end` being the isolated attachment?
pub fn judge(
    view: &PolicyView,
    frame: &Frame,
    zone: u16,
    gateway: Option<Ipv4Addr>,
    end: End,
    now_ms: u64,
) -> Result<(), DropReason> {
    let offset = frame.meta.eth_offset.map_or(0, usize::from);
    let eth = EthernetFrame::new_checked(frame.data().get(offset..).unwrap_or_default())
        .map_err(|_| DropReason::Malformed)?;
    match eth.ethertype() {
        EthernetProtocol::Arp => return Ok(()),
        EthernetProtocol::Ipv4 => {}
        _ => return Err(DropReason::PolicyDenied),
    }
    let packet = eth.payload();
    let ip = Ipv4Packet::new_checked(packet).map_err(|_| DropReason::Malformed)?;
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    if gateway.is_some_and(|gw| gw == src || gw == dst) || ip.frag_offset() != 0 {
        return Ok(());
    }
    let seen = vswitch_nat::parse::seen(packet, zone).map_err(|_| DropReason::Malformed)?;
    let Some(seen) = seen else {
        // Nothing to track: judged as a connection of its own.
        let protocol = u8::from(ip.next_header());
        let (opener, acceptor) = ends_of(src, dst, end);
        return allowed(view, zone, opener, acceptor, protocol, 0)
            .then_some(())
            .ok_or(DropReason::PolicyDenied);
    };
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
                Err(DropReason::PolicyDenied)
            }
        }
        Some(Err(drop)) => Err(drop.into()),
        None => {
            let t = seen.tuple;
            let (opener, acceptor) = ends_of(t.src, t.dst, end);
            if !allowed(view, zone, opener, acceptor, protocol_of(&t), t.dst_port) {
                return Err(DropReason::PolicyDenied);
            }
            match view.ct.track(seen, now_ms, |_| Nat::default()) {
                Ok(tracked) => {
                    tracked.conn.mark.store(mark, Ordering::Relaxed);
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

fn protocol_of(t: &Tuple) -> u8 {
    match t.proto {
        Proto::Tcp => IPPROTO_TCP,
        Proto::Udp => IPPROTO_UDP,
        Proto::IcmpEcho => IPPROTO_ICMP,
    }
}

/// The opener's egress rules and the acceptor's ingress rules both allow
/// the connection (an end no policy isolates allows anything).
fn allowed(view: &PolicyView, zone: u16, opener: Side, acceptor: Side, protocol: u8, port: u16) -> bool {
    let member = |(addr, known): Side| known.or_else(|| view.members.get(&(zone, addr)).copied());
    let c = &view.compiled;
    let out = member(opener).is_none_or(|m| {
        c.verdict(m as usize, Direction::Egress, acceptor.0, protocol, port)
            .allows()
    });
    out && member(acceptor).is_none_or(|m| {
        c.verdict(m as usize, Direction::Ingress, opener.0, protocol, port)
            .allows()
    })
}
