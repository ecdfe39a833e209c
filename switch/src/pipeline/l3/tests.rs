//! The router's own messages on literal frames, called directly: ICMP
//! errors (what they quote, their checksums, when RFC 1812 forbids one)
//! and ARP (whom a leg learns, what it answers, what it leaves to others).

use std::net::Ipv4Addr;

use etherparse::{Icmpv4Slice, Icmpv4Type, PacketBuilder};
use smoltcp::wire::Icmpv4Message;

use super::arp::{arp, ArpLeg};
use super::icmp::{error, frag_needed, CODE_TTL_EXCEEDED};
use super::Me;
use crate::packet::{Frame, PacketPool};
use crate::pipeline::ingress::Ingress;
use crate::pipeline::tests::{parsed_ipv4, World, GW_A, MAC_A, NOW};
use crate::snapshot::Net4;
use crate::stats::DropReason;
use crate::tables::neigh::NeighTable;
use crate::verdict::Verdict;

const ME: Me = Me {
    ip: Ipv4Addr::new(10, 1, 0, 1),
    mac: GW_A,
};

fn frame_of(pool: &mut PacketPool, bytes: &[u8]) -> Frame {
    let mut f = pool.alloc().expect("a buffer");
    f.fill(bytes);
    f
}

fn udp_from(src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(MAC_A, GW_A).ipv4(src, dst, 1).udp(4000, 53);
    let mut out = Vec::new();
    b.write(&mut out, payload).expect("written");
    out
}

#[test]
fn an_icmp_error_goes_back_from_the_router_quoting_the_packet_with_valid_sums() {
    let mut w = World::routed();
    let at = Ingress::new(&w.snap, 0, 0, NOW).expect("port 0");
    let original = udp_from([10, 1, 0, 2], [10, 2, 0, 5], b"a long enough payload");
    let mut f = frame_of(&mut w.pool, &original);
    let v = error(&mut f, 0, ME, Icmpv4Message::TimeExceeded, CODE_TTL_EXCEEDED, &at);
    assert_eq!(v, Verdict::Forward(0), "back where it came from");
    let (src_mac, dst_mac, ip, payload) = parsed_ipv4(f.data());
    assert_eq!((src_mac, dst_mac), (GW_A, MAC_A));
    assert_eq!((ip.source, ip.destination), ([10, 1, 0, 1], [10, 1, 0, 2]));
    let icmp = Icmpv4Slice::from_slice(&payload).expect("ICMP");
    assert!(matches!(icmp.icmp_type(), Icmpv4Type::TimeExceeded(_)));
    assert_eq!(icmp.header().checksum, icmp.icmp_type().calc_checksum(icmp.payload()));
    assert_eq!(icmp.payload(), &original[14..14 + 20 + 8], "the IP header and 8 bytes");
    w.pool.free(f);
}

#[test]
fn fragmentation_needed_carries_the_next_links_mtu() {
    let mut w = World::routed();
    let at = Ingress::new(&w.snap, 0, 0, NOW).expect("port 0");
    let mut f = frame_of(&mut w.pool, &udp_from([10, 1, 0, 2], [10, 2, 0, 5], &[7; 100]));
    assert_eq!(frag_needed(&mut f, 0, ME, 1450, &at), Verdict::Forward(0));
    let (_, _, _, payload) = parsed_ipv4(f.data());
    let icmp = Icmpv4Slice::from_slice(&payload).expect("ICMP");
    assert_eq!(
        (icmp.type_u8(), icmp.code_u8()),
        (3, 4),
        "destination unreachable, fragmentation needed"
    );
    assert_eq!(&payload[6..8], &1450u16.to_be_bytes(), "next-hop MTU (RFC 1191)");
    assert_eq!(icmp.header().checksum, icmp.icmp_type().calc_checksum(icmp.payload()));
    w.pool.free(f);
}

#[test]
fn no_error_about_an_error_a_later_fragment_or_a_sender_that_is_no_host() {
    let mut w = World::routed();
    let at = Ingress::new(&w.snap, 0, 0, NOW).expect("port 0");
    let about_an_error = {
        let b = PacketBuilder::ethernet2(MAC_A, GW_A)
            .ipv4([10, 1, 0, 2], [10, 2, 0, 5], 1)
            .icmpv4(Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::Port,
            ));
        let mut out = Vec::new();
        b.write(&mut out, &[0; 28]).expect("written");
        out
    };
    let later_fragment = {
        let mut out = udp_from([10, 1, 0, 2], [10, 2, 0, 5], &[1; 16]);
        out[14 + 6..14 + 8].copy_from_slice(&[0x00, 0x02]); // offset 16 bytes
        out
    };
    let from_broadcast = udp_from([255, 255, 255, 255], [10, 2, 0, 5], b"x");
    for (what, bytes) in [
        ("an ICMP error", about_an_error),
        ("a later fragment", later_fragment),
        ("a broadcast sender", from_broadcast),
    ] {
        let mut f = frame_of(&mut w.pool, &bytes);
        let v = error(&mut f, 0, ME, Icmpv4Message::TimeExceeded, CODE_TTL_EXCEEDED, &at);
        assert_eq!(v, Verdict::Drop(DropReason::NotRoutable), "{what}");
        assert_eq!(f.data(), &bytes[..], "{what}: the frame is left as it was");
        w.pool.free(f);
    }
}

/// An Ethernet/IPv4 ARP packet.
fn arp_packet(op: u16, dst_mac: [u8; 6], sender: ([u8; 6], [u8; 4]), target_ip: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&sender.0);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, op as u8]);
    f.extend_from_slice(&sender.0);
    f.extend_from_slice(&sender.1);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target_ip);
    f
}

const REQUEST: u16 = 1;
const REPLY: u16 = 2;

#[test]
fn a_leg_learns_only_hosts_of_its_network_and_answers_only_for_itself() {
    let mut w = World::routed();
    let at = Ingress::new(&w.snap, 0, 0, NOW).expect("port 0");
    let net = Net4::from("10.1.0.0/24".parse::<ipnet::Ipv4Net>().expect("a network"));
    let neigh = NeighTable::default();
    let leg = ArpLeg {
        net: &net,
        neigh: &neigh,
        me: ME,
        host: None,
        also: Some(Ipv4Addr::new(198, 51, 100, 2)),
    };
    let host = [2, 0, 0, 0, 0, 0x22];
    let mut run = |bytes: Vec<u8>| {
        let mut f = frame_of(&mut w.pool, &bytes);
        let v = arp(&mut f, 0, &leg, &at);
        let out = f.data().to_vec();
        w.pool.free(f);
        (v, out)
    };

    // A request for the gateway: answered to the asker, its sender learned.
    let (v, out) = run(arp_packet(REQUEST, [0xff; 6], (host, [10, 1, 0, 7]), [10, 1, 0, 1]));
    assert_eq!(v, Ok(Verdict::Forward(0)));
    assert_eq!((&out[0..6], &out[6..12]), (&host[..], &GW_A[..]));
    assert_eq!(&out[20..22], &[0, 2], "a reply");
    assert_eq!((&out[22..28], &out[28..32]), (&GW_A[..], &[10, 1, 0, 1][..]));
    assert_eq!(neigh.lookup(Ipv4Addr::new(10, 1, 0, 7), NOW), Some(host));

    // For the second address answered here, with the same MAC.
    let (v, out) = run(arp_packet(REQUEST, [0xff; 6], (host, [10, 1, 0, 7]), [198, 51, 100, 2]));
    assert_eq!(v, Ok(Verdict::Forward(0)));
    assert_eq!(&out[28..32], &[198, 51, 100, 2]);

    // Someone else's: not ours to answer, left to the caller.
    assert_eq!(
        run(arp_packet(REQUEST, [0xff; 6], (host, [10, 1, 0, 7]), [10, 1, 0, 9])).0,
        Err(())
    );

    // Senders that are no host of the network are not learned.
    for (mac, ip) in [
        (host, [192, 0, 2, 7]),              // another network
        (host, [10, 1, 0, 0]),               // the network's own address
        (host, [10, 1, 0, 255]),             // its broadcast
        ([3, 0, 0, 0, 0, 1], [10, 1, 0, 8]), // a multicast MAC
        (host, [10, 1, 0, 1]),               // the gateway itself
    ] {
        let _ = run(arp_packet(REPLY, GW_A, (mac, ip), [10, 1, 0, 1]));
        assert_eq!(neigh.lookup(Ipv4Addr::from(ip), NOW), None, "{ip:?} from {mac:?}");
    }

    // A reply to the gateway is taken (it asked); a truncated packet is malformed.
    let (v, _) = run(arp_packet(REPLY, GW_A, (host, [10, 1, 0, 8]), [10, 1, 0, 1]));
    assert_eq!(v, Ok(Verdict::Consumed));
    let mut short = arp_packet(REQUEST, [0xff; 6], (host, [10, 1, 0, 7]), [10, 1, 0, 1]);
    short.truncate(14 + 20);
    assert_eq!(run(short).0, Ok(Verdict::Drop(DropReason::Malformed)));
}
