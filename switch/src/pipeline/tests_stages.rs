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
