//! L3: the gateway of a bridge with a subnet.
//!
//! Frames reach this stage when they are addressed to the gateway MAC, or
//! are broadcast ARP on a routed bridge. The gateway answers ARP for its
//! address, answers pings to it, and routes between bridges that are linked
//! (Docker isolates networks: routing is off unless asked for). A routed
//! frame gets the out bridge's gateway MAC as source and the neighbour's MAC
//! as destination, its TTL decremented with an incremental checksum update
//! (RFC 1624), and goes through the out bridge's FDB like any other frame.
//! A frame whose neighbour is unknown is held while the gateway asks (see
//! `pipeline::hold_unresolved`).
//!
//! A bridge may have an uplink: a port that is no member of the bridge but
//! the gateway's leg on the outside, with its own address, MAC, neighbour
//! table and next hop. What no linked bridge holds goes out there, and what
//! arrives there for a bridge's subnet is routed in.
//!
//! Replies (ARP, echo, ICMP errors) are written over the frame that asked,
//! in place: no allocation, and the virtio-net header is dropped from the
//! front since the reply's checksums are complete.

use std::net::Ipv4Addr;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, Icmpv4Message, Icmpv4Packet,
    IpProtocol, Ipv4Packet, Ipv4Repr,
};
use vswitch_ctl::Ipv4Net;

use vswitch_ctl::NatProto;
use vswitch_nat::table::Nat;
use vswitch_nat::tuple::Proto;

use super::{nat, NextHop, Verdict};
use crate::packet::Frame;
use crate::pipeline::neigh::NeighTable;
use crate::snapshot::{BridgeL3, NatL3, Snapshot, UplinkL3};
use crate::stats::{DropReason, PortCounters};

const ETH_HDR_LEN: usize = 14;
const IPV4_HDR_LEN: usize = 20;
const ICMP_HDR_LEN: usize = 8;
/// What an ICMP error quotes of the offending packet: its IP header (up to
/// 60 bytes) and the first 8 bytes of its payload (RFC 792).
const ICMP_QUOTE_MAX: usize = 60 + 8;
const REPLY_TTL: u8 = 64;
/// ICMP codes (RFC 792).
const CODE_NET_UNREACHABLE: u8 = 0;
const CODE_TTL_EXCEEDED: u8 = 0;

/// Where the frame came from.
pub struct Ingress<'a> {
    pub snap: &'a Snapshot,
    pub bridge: u32,
    pub in_slot: u32,
    pub counters: &'a PortCounters,
    pub now_ms: u64,
}

/// Who answers: the gateway, or the uplink's outside address.
#[derive(Clone, Copy)]
pub struct Me {
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
}

impl BridgeL3 {
    pub fn me(&self) -> Me {
        Me {
            ip: self.gateway,
            mac: self.gateway_mac,
        }
    }
}

impl UplinkL3 {
    pub fn me(&self) -> Me {
        Me {
            ip: self.ip,
            mac: self.mac,
        }
    }
}

/// The side of the router a next hop is on: its neighbour table and the
/// address frames leave it from.
pub struct Leg<'a> {
    pub neigh: &'a NeighTable,
    pub me: Me,
}

pub fn leg(snap: &Snapshot, hop: NextHop) -> Option<Leg<'_>> {
    match hop {
        NextHop::Bridge(b) => {
            let l3 = snap.bridge(b)?.l3.as_ref()?;
            Some(Leg {
                neigh: &l3.neigh,
                me: l3.me(),
            })
        }
        NextHop::Uplink(b) => {
            let up = snap.bridge(b)?.l3.as_ref()?.uplink.as_ref()?;
            Some(Leg {
                neigh: &up.neigh,
                me: up.me(),
            })
        }
    }
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

/// Handles a frame l2 sent here.
pub fn process(frame: &mut Frame, at: &Ingress<'_>) -> Verdict {
    let Some(l3) = at.snap.bridge(at.bridge).and_then(|b| b.l3.as_ref()) else {
        return Verdict::Drop(DropReason::NotRoutable);
    };
    let Some(offset) = frame.meta.eth_offset.map(usize::from) else {
        return Verdict::Drop(DropReason::Malformed);
    };
    let Ok(eth) = EthernetFrame::new_checked(&frame.data()[offset..]) else {
        return Verdict::Drop(DropReason::Malformed);
    };
    match eth.ethertype() {
        EthernetProtocol::Arp => match arp(
            frame,
            offset,
            &l3.subnet,
            &l3.neigh,
            l3.me(),
            l3.internal,
            host_asks_uplink(l3, at),
            at,
        ) {
            Ok(verdict) => verdict,
            // ARP between containers, and gratuitous ARP: a bridge floods it.
            Err(()) => Verdict::Flood {
                bridge: at.bridge,
                except: Some(at.in_slot),
            },
        },
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
    let Some(offset) = frame.meta.eth_offset.map(usize::from) else {
        return Verdict::Drop(DropReason::Malformed);
    };
    let Ok(eth) = EthernetFrame::new_checked(&frame.data()[offset..]) else {
        return Verdict::Drop(DropReason::Malformed);
    };
    if eth.dst_addr().0 != up.mac && !eth.dst_addr().is_broadcast() {
        return Verdict::Drop(DropReason::NotRoutable);
    }
    match eth.ethertype() {
        // Whatever the outside says to others is not ours to pass on.
        EthernetProtocol::Arp => {
            arp(frame, offset, &up.net, &up.neigh, up.me(), None, None, at).unwrap_or(Verdict::Consumed)
        }
        EthernetProtocol::Ipv4 if eth.dst_addr().0 == up.mac => route_in(frame, offset, l3, up, at),
        _ => Verdict::Drop(DropReason::NotRoutable),
    }
}

/// Makes the frame start at its Ethernet header, for a reply we write.
fn strip_to_ethernet(frame: &mut Frame, offset: usize) {
    frame.advance(offset);
    frame.meta.eth_offset = Some(0);
    frame.meta.gso = None;
}

/// The host (behind the internal port) reaches the uplink address, and the
/// ports published there, through the bridge: vswitchd routes that address
/// to the internal port and answers the host's ARP for it.
fn host_asks_uplink(l3: &BridgeL3, at: &Ingress<'_>) -> Option<Ipv4Addr> {
    let up = l3.uplink.as_ref()?;
    (l3.internal == Some(at.in_slot)).then_some(up.ip)
}

/// Learns the sender of an ARP packet (if it is a host of `net`), answers a
/// request for `me` (or for `also`, with `me`'s MAC), and takes replies to
/// `me` (passing them to `host`, the internal port that shares the
/// gateway's MAC, if any). Err: someone else's ARP.
#[allow(clippy::too_many_arguments)]
fn arp(
    frame: &mut Frame,
    offset: usize,
    net: &Ipv4Net,
    neigh: &NeighTable,
    me: Me,
    host: Option<u32>,
    also: Option<Ipv4Addr>,
    at: &Ingress<'_>,
) -> Result<Verdict, ()> {
    let data = &frame.data()[offset + ETH_HDR_LEN..];
    let Ok(packet) = ArpPacket::new_checked(data) else {
        return Ok(Verdict::Drop(DropReason::Malformed));
    };
    let Ok(ArpRepr::EthernetIpv4 {
        operation,
        source_hardware_addr,
        source_protocol_addr,
        target_protocol_addr,
        ..
    }) = ArpRepr::parse(&packet)
    else {
        return Ok(Verdict::Drop(DropReason::Malformed));
    };
    if net.is_host(source_protocol_addr) && source_protocol_addr != me.ip && source_hardware_addr.is_unicast() {
        neigh.learn(source_protocol_addr, source_hardware_addr.0, at.now_ms);
    }
    let to_me = EthernetFrame::new_unchecked(&frame.data()[offset..]).dst_addr().0 == me.mac;
    match operation {
        ArpOperation::Request if target_protocol_addr == me.ip || Some(target_protocol_addr) == also => {
            strip_to_ethernet(frame, offset);
            let reply = ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Reply,
                source_hardware_addr: EthernetAddress(me.mac),
                source_protocol_addr: target_protocol_addr,
                target_hardware_addr: source_hardware_addr,
                target_protocol_addr: source_protocol_addr,
            };
            let mut eth = EthernetFrame::new_unchecked(frame.data_mut());
            eth.set_dst_addr(source_hardware_addr);
            eth.set_src_addr(EthernetAddress(me.mac));
            reply.emit(&mut ArpPacket::new_unchecked(eth.payload_mut()));
            Ok(Verdict::Forward(at.in_slot))
        }
        _ if to_me => Ok(host.map_or(Verdict::Consumed, Verdict::Forward)),
        _ => Err(()),
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

/// The bridge reachable from `l3` (itself or linked) whose subnet holds `dst`.
fn bridge_for<'a>(snap: &'a Snapshot, l3: &BridgeL3, dst: Ipv4Addr) -> Option<(u32, &'a BridgeL3)> {
    l3.routes_to.iter().find_map(|&slot| {
        let out = snap.bridge(slot)?.l3.as_ref()?;
        out.subnet.contains(dst).then_some((slot, out))
    })
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
        return icmp_error(frame, offset, me, Icmpv4Message::TimeExceeded, CODE_TTL_EXCEEDED, at);
    }
    decrement_ttl(&mut Ipv4Packet::new_unchecked(
        &mut frame.data_mut()[offset + ETH_HDR_LEN..],
    ));
    forward(frame, offset, hop, hop_ip, at)
}

/// Sends a routed frame to `hop_ip` on the far side of `hop`, or holds it
/// while the address is resolved. The TTL has been checked and decremented.
fn forward(frame: &mut Frame, offset: usize, hop: NextHop, hop_ip: Ipv4Addr, at: &Ingress<'_>) -> Verdict {
    let Some(leg) = leg(at.snap, hop) else {
        return Verdict::Drop(DropReason::NoRoute);
    };
    match leg.neigh.lookup(hop_ip, at.now_ms) {
        Some(mac) => {
            set_macs(frame, offset, mac, leg.me.mac);
            deliver_via(at.snap, hop, mac, at.now_ms)
        }
        None => Verdict::Hold { via: hop, ip: hop_ip },
    }
}

/// The container address and port a published uplink port leads to.
fn published(nat: &NatL3, proto: Proto, port: u16) -> Option<(Ipv4Addr, u16)> {
    let proto = match proto {
        Proto::Tcp => NatProto::Tcp,
        Proto::Udp => NatProto::Udp,
        Proto::IcmpEcho => return None,
    };
    nat.published.get(proto, port)
}

/// NAT for a packet routed from a bridge: its connection's translation if
/// it has one; else masquerade when it leaves through the uplink, or DNAT
/// plus SNAT to the gateway when it is for a published port of the uplink
/// address (hairpin: the answer must come back through the switch).
/// Ok(true) when the packet was rewritten.
fn nat_from_bridge(
    frame: &mut Frame,
    ip_at: usize,
    l3: &BridgeL3,
    nat: &NatL3,
    dst: Ipv4Addr,
    at: &Ingress<'_>,
) -> Result<bool, DropReason> {
    let up = l3.uplink.as_ref();
    let leaves = up.is_some_and(|u| dst != u.ip) && bridge_for(at.snap, l3, dst).is_none();
    let Some(seen) = nat::seen(frame, ip_at, nat.zone)? else {
        if nat::icmp_error(frame, ip_at, nat.zone, &nat.ct, at.now_ms)? {
            return Ok(true);
        }
        return if nat.masquerade && leaves {
            Err(DropReason::NatUnsupported)
        } else {
            Ok(false)
        };
    };
    let tracked = match nat.ct.track_existing(seen, at.now_ms) {
        Some(found) => found?,
        None => {
            let policy = match up {
                Some(u) if dst == u.ip => match published(nat, seen.tuple.proto, seen.tuple.dst_port) {
                    Some(target) => Nat {
                        dnat: Some(target),
                        snat: Some(l3.gateway),
                    },
                    None => return Ok(false),
                },
                Some(u) if nat.masquerade && leaves => Nat {
                    snat: Some(u.ip),
                    dnat: None,
                },
                _ => return Ok(false),
            };
            nat.ct.track(seen, at.now_ms, |_| policy)?
        }
    };
    nat::apply(frame, ip_at, &seen, &tracked)?;
    Ok(true)
}

/// NAT for a packet from the outside: the answer to a masqueraded
/// connection, or a connection to a published port. Ok(true) when rewritten.
fn nat_from_uplink(
    frame: &mut Frame,
    ip_at: usize,
    up: &UplinkL3,
    nat: &NatL3,
    dst: Ipv4Addr,
    at: &Ingress<'_>,
) -> Result<bool, DropReason> {
    let Some(seen) = nat::seen(frame, ip_at, nat.zone)? else {
        return nat::icmp_error(frame, ip_at, nat.zone, &nat.ct, at.now_ms);
    };
    let tracked = match nat.ct.track_existing(seen, at.now_ms) {
        Some(found) => found?,
        None => match published(nat, seen.tuple.proto, seen.tuple.dst_port).filter(|_| dst == up.ip) {
            Some(target) => nat.ct.track(seen, at.now_ms, |_| Nat {
                dnat: Some(target),
                snat: None,
            })?,
            None => return Ok(false),
        },
    };
    nat::apply(frame, ip_at, &seen, &tracked)?;
    Ok(true)
}

/// Checks the IPv4 header, lets `nat` rewrite the packet (given its
/// destination; None when the bridge has no NAT), and returns the facts
/// routing goes on with: read again if NAT changed the packet.
fn facts_after_nat(
    frame: &mut Frame,
    ip_at: usize,
    nat: impl FnOnce(&mut Frame, Ipv4Addr) -> Option<Result<bool, DropReason>>,
) -> Result<Ipv4Facts, DropReason> {
    let facts = ipv4_facts(frame, ip_at)?;
    match nat(frame, facts.dst).transpose()? {
        Some(true) => ipv4_facts(frame, ip_at),
        _ => Ok(facts),
    }
}

/// An IPv4 frame a container sent to its gateway.
fn route(frame: &mut Frame, offset: usize, l3: &BridgeL3, at: &Ingress<'_>) -> Verdict {
    let ip_at = offset + ETH_HDR_LEN;
    let facts = match facts_after_nat(frame, ip_at, |f, dst| {
        l3.nat.as_ref().map(|nat| nat_from_bridge(f, ip_at, l3, nat, dst, at))
    }) {
        Ok(f) => f,
        Err(reason) => return Verdict::Drop(reason),
    };
    let dst = facts.dst;
    if dst == l3.subnet.broadcast() {
        return Verdict::Drop(DropReason::NotRoutable);
    }
    let up = l3.uplink.as_ref();
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
                return icmp_error(
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
    let facts = match facts_after_nat(frame, ip_at, |f, dst| {
        l3.nat.as_ref().map(|nat| nat_from_uplink(f, ip_at, up, nat, dst, at))
    }) {
        Ok(f) => f,
        Err(reason) => return Verdict::Drop(reason),
    };
    if facts.dst == up.ip {
        return local(frame, offset, up.me(), facts.echo_request, at);
    }
    let Some((out_slot, out)) = bridge_for(at.snap, l3, facts.dst) else {
        at.counters.drop(DropReason::NoRoute);
        return icmp_error(
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
        echo_reply(frame, offset, me, at)
    } else {
        Verdict::Drop(DropReason::ToGateway)
    }
}

/// Rewrites the Ethernet addresses of a routed frame.
pub fn set_macs(frame: &mut Frame, offset: usize, dst: [u8; 6], src: [u8; 6]) {
    let mut eth = EthernetFrame::new_unchecked(&mut frame.data_mut()[offset..]);
    eth.set_dst_addr(EthernetAddress(dst));
    eth.set_src_addr(EthernetAddress(src));
}

/// Where a frame for `mac` goes on bridge `bridge`: its learned port, or
/// every port of the bridge.
pub fn deliver(snap: &Snapshot, bridge: u32, mac: [u8; 6], now_ms: u64) -> Verdict {
    let learned = snap.bridge(bridge).and_then(|b| b.fdb.lookup(mac, now_ms));
    match learned {
        Some(port) if snap.is_usable(port) => Verdict::Forward(port.slot),
        _ => Verdict::Flood { bridge, except: None },
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

fn echo_reply(frame: &mut Frame, offset: usize, me: Me, at: &Ingress<'_>) -> Verdict {
    strip_to_ethernet(frame, offset);
    let data = frame.data_mut();
    {
        let mut eth = EthernetFrame::new_unchecked(&mut *data);
        let sender = eth.src_addr();
        eth.set_dst_addr(sender);
        eth.set_src_addr(EthernetAddress(me.mac));
    }
    let (header_len, total) = {
        let mut ip = Ipv4Packet::new_unchecked(&mut data[ETH_HDR_LEN..]);
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        ip.set_src_addr(dst);
        ip.set_dst_addr(src);
        ip.set_hop_limit(REPLY_TTL);
        ip.fill_checksum();
        (usize::from(ip.header_len()), usize::from(ip.total_len()))
    };
    let ip_bytes = &mut data[ETH_HDR_LEN..];
    let end = total.min(ip_bytes.len());
    let mut icmp = Icmpv4Packet::new_unchecked(&mut ip_bytes[header_len..end]);
    icmp.set_msg_type(Icmpv4Message::EchoReply);
    icmp.fill_checksum();
    Verdict::Forward(at.in_slot)
}

/// Turns the frame into an ICMP error about itself, from `me`, sent back to
/// its sender. Not for ICMP errors, fragments after the first, or senders
/// that are no single host (RFC 1812, 4.3.2.7): those are only dropped.
fn icmp_error(frame: &mut Frame, offset: usize, me: Me, message: Icmpv4Message, code: u8, at: &Ingress<'_>) -> Verdict {
    let data = &frame.data()[offset..];
    let sender_mac = EthernetFrame::new_unchecked(data).src_addr();
    let ip = Ipv4Packet::new_unchecked(&data[ETH_HDR_LEN..]);
    let sender = ip.src_addr();
    let is_error = ip.next_header() == IpProtocol::Icmp
        && Icmpv4Packet::new_checked(ip.payload())
            .is_ok_and(|i| !matches!(i.msg_type(), Icmpv4Message::EchoRequest | Icmpv4Message::EchoReply));
    let no_single_host =
        sender.is_unspecified() || sender.is_broadcast() || sender.is_multicast() || sender.is_loopback();
    if is_error || ip.frag_offset() != 0 || no_single_host {
        return Verdict::Drop(DropReason::NotRoutable);
    }
    let ip_bytes = &data[ETH_HDR_LEN..];
    let quote_len = (usize::from(ip.header_len()) + 8)
        .min(usize::from(ip.total_len()))
        .min(ip_bytes.len())
        .min(ICMP_QUOTE_MAX);
    let mut out = [0u8; ETH_HDR_LEN + IPV4_HDR_LEN + ICMP_HDR_LEN + ICMP_QUOTE_MAX];
    let len = ETH_HDR_LEN + IPV4_HDR_LEN + ICMP_HDR_LEN + quote_len;
    {
        let mut eth = EthernetFrame::new_unchecked(&mut out[..]);
        eth.set_dst_addr(sender_mac);
        eth.set_src_addr(EthernetAddress(me.mac));
        eth.set_ethertype(EthernetProtocol::Ipv4);
    }
    let repr = Ipv4Repr {
        src_addr: me.ip,
        dst_addr: sender,
        next_header: IpProtocol::Icmp,
        payload_len: ICMP_HDR_LEN + quote_len,
        hop_limit: REPLY_TTL,
    };
    repr.emit(
        &mut Ipv4Packet::new_unchecked(&mut out[ETH_HDR_LEN..]),
        &ChecksumCapabilities::default(),
    );
    {
        let mut icmp = Icmpv4Packet::new_unchecked(&mut out[ETH_HDR_LEN + IPV4_HDR_LEN..len]);
        icmp.set_msg_type(message);
        icmp.set_msg_code(code);
        icmp.set_echo_ident(0); // the "unused" word of error messages
        icmp.set_echo_seq_no(0);
        icmp.data_mut()[..quote_len].copy_from_slice(&ip_bytes[..quote_len]);
        icmp.fill_checksum();
    }
    frame.fill(&out[..len]);
    frame.meta.eth_offset = Some(0);
    Verdict::Forward(at.in_slot)
}

/// Writes an ARP request from `me` for `target` into `frame`.
pub fn arp_request(frame: &mut Frame, me: Me, target: Ipv4Addr) {
    let mut out = [0u8; ETH_HDR_LEN + 28];
    {
        let mut eth = EthernetFrame::new_unchecked(&mut out[..]);
        eth.set_dst_addr(EthernetAddress::BROADCAST);
        eth.set_src_addr(EthernetAddress(me.mac));
        eth.set_ethertype(EthernetProtocol::Arp);
        let request = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr: EthernetAddress(me.mac),
            source_protocol_addr: me.ip,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: target,
        };
        request.emit(&mut ArpPacket::new_unchecked(eth.payload_mut()));
    }
    frame.fill(&out);
    frame.meta.eth_offset = Some(0);
}
