//! Routing: between a bridge and the bridges linked to it (Docker isolates
//! networks: routing is off unless asked for), out of and into the bridge's
//! uplink.
//!
//! A routed frame gets the out leg's MAC as source and the neighbour's MAC
//! as destination, its TTL decremented with an incremental checksum update
//! (RFC 1624), and goes through the out bridge's FDB like any other frame.
//! A frame whose neighbour is unknown is held while the gateway asks (see
//! `pipeline::hold`). NAT (`pipeline::nat`) runs first, so the
//! route is chosen for the translated destination.

use std::net::Ipv4Addr;

use smoltcp::wire::{EthernetFrame, EthernetProtocol, Icmpv4Message, Icmpv4Packet, IpProtocol, Ipv4Packet};

use super::arp::{arp, ArpLeg};
use super::icmp::{self, CODE_NET_UNREACHABLE, CODE_TTL_EXCEEDED};
use super::{ethernet, leg, set_macs, Me, ETH_HDR_LEN, IPV4_HDR_LEN};
use crate::packet::Frame;
use crate::pipeline::ingress::Ingress;
use crate::pipeline::memo::Route;
use crate::pipeline::nat::{self, Side};
use crate::snapshot::{BridgeL3, Snapshot, UplinkL3};
use crate::stats::DropReason;
use crate::tables::fdb::Dest;
use crate::verdict::{FloodFrom, NextHop, Verdict};

/// Handles a frame l2 sent here.
pub fn process(frame: &mut Frame, at: &Ingress<'_>) -> Verdict {
    let Some(l3) = at.snap.bridge(at.bridge).and_then(|b| b.l3.as_ref()) else {
        return Verdict::Drop(DropReason::NotRoutable);
    };
    let (offset, ethertype) = match ethernet(frame) {
        Ok(found) => found,
        Err(reason) => return Verdict::Drop(reason),
    };
    match ethertype {
        EthernetProtocol::Arp => {
            if !at.counters.slow_path(at.now_ms) {
                return Verdict::Drop(DropReason::SlowPathLimit);
            }
            let leg = ArpLeg {
                net: &l3.subnet,
                neigh: &l3.neigh,
                me: l3.me(),
                host: l3.internal,
                also: host_asks_uplink(l3, at),
            };
            // Err: ARP between containers, and gratuitous ARP: a bridge floods it.
            let verdict = arp(frame, offset, &leg, at).unwrap_or(Verdict::Flood {
                bridge: at.bridge,
                from: FloodFrom::Port(at.in_slot),
            });
            at.memo.forget_tables();
            verdict
        }
        EthernetProtocol::Ipv4 => route(frame, offset, l3, at),
        _ => Verdict::Drop(DropReason::NotRoutable),
    }
}

/// Handles a frame received on a bridge's uplink.
pub fn from_uplink(frame: &mut Frame, at: &Ingress<'_>) -> Verdict {
    let Some(l3) = at.snap.bridge(at.bridge).and_then(|b| b.l3.as_ref()) else {
        return Verdict::Drop(DropReason::NotRoutable);
    };
    let Some(up) = &l3.uplink else {
        return Verdict::Drop(DropReason::NotRoutable);
    };
    let (offset, ethertype) = match ethernet(frame) {
        Ok(found) => found,
        Err(reason) => return Verdict::Drop(reason),
    };
    let dst = EthernetFrame::new_unchecked(&frame.data()[offset..]).dst_addr();
    if dst.0 != up.mac && !dst.is_broadcast() {
        return Verdict::Drop(DropReason::NotRoutable);
    }
    match ethertype {
        // Whatever the outside says to others is not ours to pass on.
        EthernetProtocol::Arp => {
            let leg = ArpLeg {
                net: &up.net,
                neigh: &up.neigh,
                me: up.me(),
                host: None,
                also: None,
            };
            let verdict = arp(frame, offset, &leg, at).unwrap_or(Verdict::Consumed);
            // It may have taught the neighbour table something.
            at.memo.forget_tables();
            verdict
        }
        EthernetProtocol::Ipv4 if dst.0 == up.mac => route_in(frame, offset, l3, up, at),
        _ => Verdict::Drop(DropReason::NotRoutable),
    }
}

/// The host (behind the internal port) reaches the uplink address, and the
/// ports published there, through the bridge: vswitchd routes that address
/// to the internal port and answers the host's ARP for it.
fn host_asks_uplink(l3: &BridgeL3, at: &Ingress<'_>) -> Option<Ipv4Addr> {
    let up = l3.uplink.as_ref()?;
    (l3.internal == Some(at.in_slot)).then_some(up.ip)
}

/// Where a frame for `mac` goes on the far side of `hop`.
pub fn deliver_via(snap: &Snapshot, hop: NextHop, mac: [u8; 6], now_ms: u64) -> Verdict {
    match hop {
        NextHop::Bridge(b) => deliver(snap, b, mac, now_ms),
        NextHop::Uplink(b) => match snap
            .bridge(b)
            .and_then(|br| br.l3.as_ref())
            .and_then(|l3| l3.uplink.as_ref())
        {
            Some(up) => Verdict::Forward(up.slot),
            None => Verdict::Drop(DropReason::NoRoute),
        },
    }
}

/// Where a frame for `mac` goes on bridge `bridge`: its learned port, or
/// every port of the bridge.
fn deliver(snap: &Snapshot, bridge: u32, mac: [u8; 6], now_ms: u64) -> Verdict {
    let learned = snap.bridge(bridge).and_then(|b| b.fdb.lookup(mac, now_ms));
    match learned {
        Some(Dest::Port(port)) if snap.is_usable(port) => Verdict::Forward(port.slot),
        _ => Verdict::Flood {
            bridge,
            from: FloodFrom::Router,
        },
    }
}

/// What route decisions need from an IPv4 header, checked.
struct Ipv4Facts {
    dst: Ipv4Addr,
    ttl: u8,
    echo_request: bool,
}

fn ipv4_facts(frame: &Frame, ip_at: usize) -> Result<Ipv4Facts, DropReason> {
    let ip = Ipv4Packet::new_checked(&frame.data()[ip_at..]).map_err(|_| DropReason::Malformed)?;
    // new_checked compares lengths with the buffer only: an IHL below 5
    // passes it and must be refused here.
    if ip.version() != 4 || usize::from(ip.header_len()) < IPV4_HDR_LEN {
        return Err(DropReason::Malformed);
    }
    if !ip.verify_checksum() {
        return Err(DropReason::BadIpChecksum);
    }
    let (dst, src) = (ip.dst_addr(), ip.src_addr());
    if dst.is_broadcast() || dst.is_multicast() || src.is_unspecified() || src.is_multicast() {
        return Err(DropReason::NotRoutable);
    }
    let echo_request = ip.next_header() == IpProtocol::Icmp
        && Icmpv4Packet::new_checked(ip.payload()).is_ok_and(|icmp| icmp.msg_type() == Icmpv4Message::EchoRequest);
    Ok(Ipv4Facts {
        dst,
        ttl: ip.hop_limit(),
        echo_request,
    })
}

/// Checks the IPv4 header, lets NAT translate the packet (when the bridge
/// has NAT; `side` given the destination), and returns the facts routing
/// goes on with: the new destination if NAT changed the packet.
fn facts_after_nat(
    frame: &mut Frame,
    ip_at: usize,
    l3: &BridgeL3,
    side: impl FnOnce(Ipv4Addr) -> Side,
    at: &Ingress<'_>,
) -> Result<Ipv4Facts, DropReason> {
    let facts = ipv4_facts(frame, ip_at)?;
    let Some(nat_l3) = &l3.nat else {
        return Ok(facts);
    };
    let to = nat::To {
        side: side(facts.dst),
        dst: facts.dst,
    };
    if nat::translate(frame, ip_at, l3, nat_l3, to, at.now_ms, &at.memo)? {
        // NAT changed the addresses (and kept the checksums right): only
        // the destination is news. Parsing and verifying the header again
        // read back what NAT had just written, a stall on every frame.
        let dst = Ipv4Packet::new_unchecked(&frame.data()[ip_at..]).dst_addr();
        Ok(Ipv4Facts { dst, ..facts })
    } else {
        Ok(facts)
    }
}

/// The bridge reachable from `l3` (itself or linked) whose subnet holds `dst`.
fn bridge_for<'a>(snap: &'a Snapshot, l3: &BridgeL3, dst: Ipv4Addr) -> Option<(u32, &'a BridgeL3)> {
    l3.routes_to.iter().find_map(|&slot| {
        let out = snap.bridge(slot)?.l3.as_ref()?;
        out.subnet.contains(dst).then_some((slot, out))
    })
}

/// An IPv4 frame a container sent to its gateway.
fn route(frame: &mut Frame, offset: usize, l3: &BridgeL3, at: &Ingress<'_>) -> Verdict {
    let ip_at = offset + ETH_HDR_LEN;
    let up = l3.uplink.as_ref();
    let side = |dst| Side::Bridge {
        leaves: up.is_some_and(|u| dst != u.ip) && bridge_for(at.snap, l3, dst).is_none(),
    };
    let facts = match facts_after_nat(frame, ip_at, l3, side, at) {
        Ok(f) => f,
        Err(reason) => return Verdict::Drop(reason),
    };
    let dst = facts.dst;
    if dst == l3.subnet.broadcast() {
        return Verdict::Drop(DropReason::NotRoutable);
    }
    let hop = match bridge_for(at.snap, l3, dst) {
        Some((out_slot, out)) if dst == out.gateway => {
            if let (Some(host), true) = (l3.internal, out_slot == at.bridge) {
                // The host owns the gateway address: its stack answers.
                return Verdict::Forward(host);
            }
            return local(frame, offset, out.me(), facts.echo_request, at);
        }
        Some((out_slot, _)) => (NextHop::Bridge(out_slot), dst),
        None => match up {
            Some(up) if dst == up.ip => return local(frame, offset, up.me(), facts.echo_request, at),
            Some(up) => (
                NextHop::Uplink(at.bridge),
                if up.net.contains(dst) { dst } else { up.gw },
            ),
            // The host routes what no bridge holds, as the docker0 host does.
            None if l3.internal.is_some() => return l3.internal.map_or(Verdict::Consumed, Verdict::Forward),
            None => {
                at.counters.drop(DropReason::NoRoute);
                return icmp::error(
                    frame,
                    offset,
                    l3.me(),
                    Icmpv4Message::DstUnreachable,
                    CODE_NET_UNREACHABLE,
                    at,
                );
            }
        },
    };
    hop_on(frame, offset, facts.ttl, l3.me(), hop.0, hop.1, at)
}

/// An IPv4 frame from the outside, to the uplink's MAC.
fn route_in(frame: &mut Frame, offset: usize, l3: &BridgeL3, up: &UplinkL3, at: &Ingress<'_>) -> Verdict {
    let ip_at = offset + ETH_HDR_LEN;
    let facts = match facts_after_nat(frame, ip_at, l3, |_| Side::Uplink, at) {
        Ok(f) => f,
        Err(reason) => return Verdict::Drop(reason),
    };
    if facts.dst == up.ip {
        return local(frame, offset, up.me(), facts.echo_request, at);
    }
    let Some((out_slot, out)) = bridge_for(at.snap, l3, facts.dst) else {
        at.counters.drop(DropReason::NoRoute);
        return icmp::error(
            frame,
            offset,
            up.me(),
            Icmpv4Message::DstUnreachable,
            CODE_NET_UNREACHABLE,
            at,
        );
    };
    if facts.dst == out.gateway || facts.dst == out.subnet.broadcast() {
        return Verdict::Drop(DropReason::ToGateway);
    }
    hop_on(
        frame,
        offset,
        facts.ttl,
        up.me(),
        NextHop::Bridge(out_slot),
        facts.dst,
        at,
    )
}

/// A packet to one of the router's own addresses: pings are answered.
fn local(frame: &mut Frame, offset: usize, me: Me, echo_request: bool, at: &Ingress<'_>) -> Verdict {
    if echo_request {
        icmp::echo_reply(frame, offset, me, at)
    } else {
        Verdict::Drop(DropReason::ToGateway)
    }
}

/// One routing hop: ICMP time exceeded (from `me`) if the TTL runs out,
/// else TTL - 1 and on to `hop_ip` on the far side of `hop`.
fn hop_on(
    frame: &mut Frame,
    offset: usize,
    ttl: u8,
    me: Me,
    hop: NextHop,
    hop_ip: Ipv4Addr,
    at: &Ingress<'_>,
) -> Verdict {
    if ttl <= 1 {
        at.counters.drop(DropReason::TtlExceeded);
        return icmp::error(frame, offset, me, Icmpv4Message::TimeExceeded, CODE_TTL_EXCEEDED, at);
    }
    decrement_ttl(&mut Ipv4Packet::new_unchecked(
        &mut frame.data_mut()[offset + ETH_HDR_LEN..],
    ));
    forward(frame, offset, hop, hop_ip, at)
}

/// Sends a routed frame to `hop_ip` on the far side of `hop`, or holds it
/// while the address is resolved. The TTL has been checked and decremented.
fn forward(frame: &mut Frame, offset: usize, hop: NextHop, hop_ip: Ipv4Addr, at: &Ingress<'_>) -> Verdict {
    if let Some(route) = at.memo.route(hop, hop_ip) {
        set_macs(frame, offset, route.mac, route.src_mac);
        return route.verdict;
    }
    let Some(leg) = leg(at.snap, hop) else {
        return Verdict::Drop(DropReason::NoRoute);
    };
    match leg.neigh.lookup(hop_ip, at.now_ms) {
        Some(mac) => {
            set_macs(frame, offset, mac, leg.me.mac);
            let verdict = deliver_via(at.snap, hop, mac, at.now_ms);
            let route = Route {
                mac,
                src_mac: leg.me.mac,
                verdict,
            };
            at.memo.remember_route(hop, hop_ip, route);
            verdict
        }
        None => Verdict::Hold { via: hop, ip: hop_ip },
    }
}

/// TTL - 1, with the header checksum updated for the one 16-bit word that
/// changed (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')).
pub fn decrement_ttl(ip: &mut Ipv4Packet<&mut [u8]>) {
    let ttl = ip.hop_limit();
    let proto = u8::from(ip.next_header());
    let old_word = u16::from_be_bytes([ttl, proto]);
    let new_word = u16::from_be_bytes([ttl - 1, proto]);
    let mut sum = u32::from(!ip.checksum()) + u32::from(!old_word) + u32::from(new_word);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip.set_hop_limit(ttl - 1);
    ip.set_checksum(!(sum as u16));
}
