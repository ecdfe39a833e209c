//! Each stage on its own: a batch classified, handed to one stage with the
//! verdicts the stages before it would have written, and that stage's
//! verdicts read back (what the runner-level tests only see as output).

use std::net::Ipv4Addr;

use super::ingress::Ingress;
use super::tests::{ipv4_udp, udp, World, GW_A, MAC_A, MAC_B, MAC_C, NOW};
use super::{classify, guard, l3};
use crate::packet::{Batch, VnetHdr, VNET_HDR_LEN};
use crate::snapshot::SourceGuard;
use crate::stats::DropReason;
use crate::verdict::{FloodFrom, NextHop, Verdict};

/// `frames` behind a virtio-net header `hdr`, as a TAP port reads them.
fn batch_of(w: &mut World, hdr: [u8; VNET_HDR_LEN], frames: &[Vec<u8>]) -> Batch {
    let mut batch = Batch::default();
    for bytes in frames {
        let mut with_hdr = hdr.to_vec();
        with_hdr.extend_from_slice(bytes);
        let mut f = w.pool.alloc().expect("pool");
        f.fill(&with_hdr);
        batch.push(f).expect("room");
    }
    batch
}

#[test]
fn classify_sends_a_members_frames_to_the_switch_and_an_uplinks_to_the_underlay() {
    let mut w = World::new(2, 2, 100);
    w.snap.ports[1].as_mut().expect("port 1").uplink = true;
    let frames = [udp(MAC_A, MAC_B, b"x"), vec![0u8; 10]];
    let mut v = [Verdict::Consumed; 2];
    for (slot, next) in [(0, Verdict::L2), (1, Verdict::Underlay)] {
        let mut batch = batch_of(&mut w, [0; VNET_HDR_LEN], &frames);
        let at = Ingress::new(&w.snap, 0, slot, NOW).expect("port");
        classify::pass(&mut batch, &at, &mut v);
        assert_eq!(v, [next, Verdict::Drop(DropReason::Malformed)], "port {slot}");
        batch.release(&mut w.pool);
    }

    // A super-frame is counted as one on the way in.
    let mut hdr = [0u8; VNET_HDR_LEN];
    VnetHdr::write_gso(&mut hdr, 1, 54, 1000, (34, 16));
    let mut batch = batch_of(&mut w, hdr, &[udp(MAC_A, MAC_B, &[0; 100])]);
    let at = Ingress::new(&w.snap, 0, 0, NOW).expect("port");
    classify::pass(&mut batch, &at, &mut v);
    assert_eq!(v[0], Verdict::L2);
    assert_eq!(at.counters.rx_gso_packets.get(), 1);
    batch.release(&mut w.pool);
}

#[test]
fn the_guard_drops_what_is_not_its_ports_own_and_passes_the_rest_by() {
    let mut w = World::new(2, 2, 100);
    w.snap.ports[0].as_mut().expect("port 0").guard = Some(SourceGuard {
        mac: MAC_A,
        ip: Ipv4Addr::new(10, 0, 0, 1),
    });
    let frames = [
        udp(MAC_A, MAC_B, b"mine"),
        udp(MAC_B, MAC_A, b"a sibling's MAC"),
        udp(MAC_B, MAC_A, b""),
    ];
    let mut batch = batch_of(&mut w, [0; VNET_HDR_LEN], &frames);
    let at = Ingress::new(&w.snap, 0, 0, NOW).expect("port");
    let mut v = [Verdict::Consumed; 3];
    classify::pass(&mut batch, &at, &mut v);
    // An earlier stage's drop stays that drop.
    v[2] = Verdict::Drop(DropReason::Malformed);
    guard::pass(&batch, &at, &mut v);
    assert_eq!(
        v,
        [
            Verdict::L2,
            Verdict::Drop(DropReason::SpoofedSrc),
            Verdict::Drop(DropReason::Malformed)
        ]
    );
    batch.release(&mut w.pool);
}

#[test]
fn the_router_decides_each_frame_sent_to_it_and_only_those() {
    let mut w = World::routed();
    // 10.2.0.5 is a known neighbour on bridge 1; 10.2.0.6 is not.
    let neigh = &w.snap.bridges[1]
        .as_ref()
        .and_then(|b| b.l3.as_ref())
        .expect("l3")
        .neigh;
    neigh.learn(Ipv4Addr::new(10, 2, 0, 5), MAC_C, NOW);
    let frames = [
        ipv4_udp(MAC_A, GW_A, [10, 1, 0, 2], [10, 2, 0, 5], 64),
        ipv4_udp(MAC_A, GW_A, [10, 1, 0, 2], [10, 2, 0, 6], 64),
        ipv4_udp(MAC_A, GW_A, [10, 1, 0, 2], [10, 2, 0, 5], 1),
        ipv4_udp(MAC_A, GW_A, [10, 1, 0, 2], [192, 0, 2, 1], 64),
        ipv4_udp(MAC_A, MAC_B, [10, 1, 0, 2], [10, 1, 0, 3], 64),
    ];
    let mut batch = batch_of(&mut w, [0; VNET_HDR_LEN], &frames);
    let at = Ingress::new(&w.snap, 0, 0, NOW).expect("port");
    let mut v = [Verdict::Consumed; 5];
    classify::pass(&mut batch, &at, &mut v);
    // What the switch would have said: four to the gateway, one switched.
    v[..4].fill(Verdict::L3);
    v[4] = Verdict::Forward(1);
    l3::pass(&mut batch, &at, &mut v);
    assert_eq!(
        v,
        [
            // Known neighbour, its MAC not learned on bridge 1 yet.
            Verdict::Flood {
                bridge: 1,
                from: FloodFrom::Router
            },
            Verdict::Hold {
                via: NextHop::Bridge(1),
                ip: Ipv4Addr::new(10, 2, 0, 6)
            },
            // ICMP errors go back where the frame came from.
            Verdict::Forward(0),
            Verdict::Forward(0),
            Verdict::Forward(1),
        ]
    );
    let routed = &batch.frames()[0].data()[VNET_HDR_LEN..];
    assert_eq!(
        (&routed[..6], routed[14 + 8]),
        (&MAC_C[..], 63),
        "to the neighbour, TTL - 1"
    );
    let untouched = &batch.frames()[4].data()[VNET_HDR_LEN..];
    assert_eq!(
        untouched,
        &frames[4][..],
        "a frame not sent to the router is not touched"
    );
    assert_eq!(
        (
            at.counters.drops(DropReason::TtlExceeded),
            at.counters.drops(DropReason::NoRoute)
        ),
        (1, 1)
    );
    batch.release(&mut w.pool);
}

// --- NAT and fragments: port 0 on a masquerading bridge whose uplink is
// port 1, the outside's gateway known to the uplink.

const UPLINK_IP: [u8; 4] = [198, 51, 100, 2];
const UPLINK_MAC: [u8; 6] = [2, 0x76, 0x74, 0, 0, 1];
const OUTSIDE_GW_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xfe];
const INSIDE: [u8; 4] = [10, 1, 0, 2];
const FAR: [u8; 4] = [203, 0, 113, 9];

fn masquerading() -> World {
    let mut w = World::routed();
    let neigh = std::sync::Arc::new(crate::tables::neigh::NeighTable::default());
    neigh.learn(Ipv4Addr::new(198, 51, 100, 1), OUTSIDE_GW_MAC, NOW);
    let port1 = w.snap.ports[1].as_mut().expect("port 1");
    port1.uplink = true;
    let br = w.snap.bridges[0].as_mut().expect("bridge 0");
    br.ports = vec![0];
    let l3 = br.l3.as_mut().expect("l3");
    l3.uplink = Some(crate::snapshot::UplinkL3 {
        slot: 1,
        ip: UPLINK_IP.into(),
        net: "198.51.100.0/24".parse().expect("a network"),
        gw: Ipv4Addr::new(198, 51, 100, 1),
        mac: UPLINK_MAC,
        neigh,
        tunnels: Vec::new(),
    });
    l3.nat = Some(crate::snapshot::NatL3 {
        masquerade: true,
        published: Vec::new(),
        ct: std::sync::Arc::new(vswitch_nat::table::ConnTable::new(64)),
        zone: 0,
    });
    w
}

/// One fragment of a UDP datagram (id 77) from INSIDE to FAR: `payload` at
/// byte `offset` of the IP payload, more to come or not.
fn fragment(offset: u16, more: bool, payload: &[u8]) -> Vec<u8> {
    let mut ip = etherparse::Ipv4Header::new(payload.len() as u16, 64, etherparse::IpNumber::UDP, INSIDE, FAR)
        .expect("a header");
    ip.identification = 77;
    ip.more_fragments = more;
    ip.fragment_offset = etherparse::IpFragOffset::try_new(offset / 8).expect("an offset");
    ip.header_checksum = ip.calc_header_checksum();
    let mut out = Vec::new();
    etherparse::Ethernet2Header {
        source: MAC_A,
        destination: GW_A,
        ether_type: etherparse::EtherType::IPV4,
    }
    .write(&mut out)
    .expect("written");
    ip.write(&mut out).expect("written");
    out.extend_from_slice(payload);
    out
}

/// The source address and the destination MAC of a frame as it leaves.
fn source_and_next_hop(frame: &crate::packet::Frame) -> ([u8; 4], [u8; 6]) {
    let eth = &frame.data()[frame.meta.eth_offset.map_or(0, usize::from)..];
    let (_, dst_mac, ip, _) = super::tests::parsed_ipv4(eth);
    (ip.source, dst_mac)
}

#[test]
fn the_router_masquerades_and_a_later_fragment_waits_for_its_first() {
    let mut w = masquerading();
    // The first fragment: UDP header (ports 4000 -> 53, length of the whole
    // datagram, no checksum) and 8 bytes; the second: 8 more bytes.
    let mut first = vec![0x0f, 0xa0, 0, 53, 0, 24, 0, 0];
    first.extend_from_slice(b"eight by");
    let second = b"tes more".to_vec();

    // The later fragment first: the router cannot translate it yet.
    let mut batch = batch_of(&mut w, [0; VNET_HDR_LEN], &[fragment(16, false, &second)]);
    let at = Ingress::new(&w.snap, 0, 0, NOW).expect("port");
    let mut v = [Verdict::L3; 1];
    classify::pass(&mut batch, &at, &mut v);
    v[0] = Verdict::L3;
    l3::pass(&mut batch, &at, &mut v);
    assert_eq!(v[0], Verdict::Drop(DropReason::FragNoFirst));
    w.scratch.verdicts[0] = v[0];
    super::frags::pass(&at, &mut batch, &mut w.pool, &mut w.scratch);
    assert_eq!(w.scratch.verdicts[0], Verdict::Consumed, "taken out of the batch");
    assert_eq!(w.scratch.held(), 1);
    batch.release(&mut w.pool);

    // The first fragment: masqueraded out of the uplink.
    let mut batch = batch_of(&mut w, [0; VNET_HDR_LEN], &[fragment(0, true, &first)]);
    let at = Ingress::new(&w.snap, 0, 0, NOW).expect("port");
    classify::pass(&mut batch, &at, &mut v);
    v[0] = Verdict::L3;
    l3::pass(&mut batch, &at, &mut v);
    assert_eq!(v[0], Verdict::Forward(1));
    assert_eq!(source_and_next_hop(&batch.frames()[0]), (UPLINK_IP, OUTSIDE_GW_MAC));
    batch.release(&mut w.pool);

    // Now the held one goes the same way, translated the same.
    let mut out = Batch::default();
    super::frags::release(&w.snap, 0, &mut out, &mut w.pool, &mut w.scratch, NOW + 1);
    assert_eq!(w.scratch.held(), 0);
    assert_eq!(out.len(), 1);
    assert_eq!(w.scratch.verdicts[0], Verdict::Forward(1));
    assert_eq!(source_and_next_hop(&out.frames()[0]), (UPLINK_IP, OUTSIDE_GW_MAC));
    out.release(&mut w.pool);
}

/// What the NAT stage's policy gives a new connection, from each side, to
/// each address: masquerade out, publishing in, hairpin, nothing else.
#[test]
fn nat_policy_translates_only_what_leaves_masqueraded_or_reaches_a_published_port() {
    use super::nat::{policy, Side};
    use vswitch_nat::table::{Nat, Seen};
    use vswitch_nat::tuple::{Proto, Tuple};

    let w = masquerading();
    let l3 = w.snap.bridges[0].as_ref().expect("bridge 0").l3.as_ref().expect("l3");
    let nat = l3.nat.as_ref().expect("nat");
    let published = std::sync::Arc::new(crate::tables::publish::PublishTable::default());
    published.insert(Proto::Tcp, 8080, (Ipv4Addr::from(INSIDE), 80));
    let nat = crate::snapshot::NatL3 {
        published: vec![published],
        ct: nat.ct.clone(),
        ..*nat
    };
    let seen = |proto, dst: [u8; 4], dst_port| Seen {
        tuple: Tuple {
            zone: 0,
            proto,
            src: FAR.into(),
            src_port: 40000,
            dst: dst.into(),
            dst_port,
        },
        tcp: None,
    };
    let gateway = Ipv4Addr::new(10, 1, 0, 1);
    let to_inside = Some((Ipv4Addr::from(INSIDE), 80));
    let out = Side::Bridge { leaves: true };
    for (what, side, s, want) in [
        (
            "out of the uplink: the uplink's address",
            out,
            seen(Proto::Udp, FAR, 53),
            Some(Nat {
                snat: Some(UPLINK_IP.into()),
                dnat: None,
            }),
        ),
        (
            "to a linked bridge: untouched",
            Side::Bridge { leaves: false },
            seen(Proto::Udp, [10, 2, 0, 5], 53),
            None,
        ),
        (
            "in to a published port: to the container",
            Side::Uplink,
            seen(Proto::Tcp, UPLINK_IP, 8080),
            Some(Nat {
                snat: None,
                dnat: to_inside,
            }),
        ),
        (
            "a published port from inside (hairpin): the gateway's address too",
            out,
            seen(Proto::Tcp, UPLINK_IP, 8080),
            Some(Nat {
                snat: Some(gateway),
                dnat: to_inside,
            }),
        ),
        (
            "a port not published, or another protocol: nothing",
            Side::Uplink,
            seen(Proto::Udp, UPLINK_IP, 8080),
            None,
        ),
        (
            "from the outside to anywhere else: nothing",
            Side::Uplink,
            seen(Proto::Tcp, [10, 1, 0, 2], 80),
            None,
        ),
    ] {
        let dst = s.tuple.dst;
        assert_eq!(policy(l3, &nat, side, &s, dst), want, "{what}");
    }
    let still = crate::snapshot::NatL3 {
        masquerade: false,
        published: Vec::new(),
        ct: nat.ct.clone(),
        zone: 0,
    };
    assert_eq!(
        policy(l3, &still, out, &seen(Proto::Udp, FAR, 53), FAR.into()),
        None,
        "masquerade off"
    );
    let bare = World::routed();
    let l3 = bare.snap.bridges[0]
        .as_ref()
        .expect("bridge 0")
        .l3
        .as_ref()
        .expect("l3");
    assert_eq!(
        policy(l3, &nat, out, &seen(Proto::Udp, FAR, 53), FAR.into()),
        None,
        "no uplink"
    );
}
