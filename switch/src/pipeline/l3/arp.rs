//! ARP at the router's legs: answer for our own addresses, learn every
//! sender on the leg's network, take the answers to our own requests, and
//! write the requests that resolve next hops.

use std::net::Ipv4Addr;

use crate::snapshot::Net4;
use smoltcp::wire::{ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol};

use super::{strip_to_ethernet, Me, ETH_HDR_LEN};
use crate::packet::{Frame, Meta};
use crate::pipeline::ingress::Ingress;
use crate::stats::DropReason;
use crate::tables::neigh::NeighTable;
use crate::verdict::Verdict;

/// Length of an Ethernet/IPv4 ARP packet.
const ARP_LEN: usize = 28;

/// One leg's view of an ARP packet: whose network it is, who we are there,
/// and what else we answer for.
pub(super) struct ArpLeg<'a> {
    pub net: &'a Net4,
    pub neigh: &'a NeighTable,
    pub me: Me,
    /// The internal port, which shares the gateway's MAC: replies to `me`
    /// that we did not ask for are its.
    pub host: Option<u32>,
    /// A second address answered with `me`'s MAC (the uplink address, asked
    /// by the host through the internal port).
    pub also: Option<Ipv4Addr>,
}

/// Learns the sender of an ARP packet (if it is a host of the leg's
/// network), answers a request for `me` (or for `also`), and takes replies
/// to `me`. Err: someone else's ARP, for the caller to pass on or drop.
pub(super) fn arp(frame: &mut Frame, offset: usize, leg: &ArpLeg<'_>, at: &Ingress<'_>) -> Result<Verdict, ()> {
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
    let me = leg.me;
    if leg.net.is_host(source_protocol_addr) && source_protocol_addr != me.ip && source_hardware_addr.is_unicast() {
        leg.neigh.learn(source_protocol_addr, source_hardware_addr.0, at.now_ms);
    }
    let to_me = EthernetFrame::new_unchecked(&frame.data()[offset..]).dst_addr().0 == me.mac;
    match operation {
        ArpOperation::Request if target_protocol_addr == me.ip || Some(target_protocol_addr) == leg.also => {
            strip_to_ethernet(frame, offset, EthernetProtocol::Arp);
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
        _ if to_me => Ok(leg.host.map_or(Verdict::Consumed, Verdict::Forward)),
        _ => Err(()),
    }
}

/// Writes an ARP request from `me` for `target` into `frame`.
pub fn arp_request(frame: &mut Frame, me: Me, target: Ipv4Addr) {
    let mut out = [0u8; ETH_HDR_LEN + ARP_LEN];
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
    frame.meta = Meta::generated(EthernetProtocol::Arp);
}
