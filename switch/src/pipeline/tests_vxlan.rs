//! The tunnel stages (in and out) over in-memory ports: a bridge (ports 0 and 1) with a
//! tunnel to two remote VTEPs, carried by the uplink (port 2) of a second
//! bridge. What the uplink "sends" is real VXLAN, read back with the
//! library's own decapsulation.

use std::net::Ipv4Addr;
use std::sync::Arc;

use vswitch_vxlan::header::FLAG_I;
use vswitch_vxlan::{decapsulate, encapsulate, Expect, Outer, OuterCsum, Vni, IANA_PORT, OVERHEAD, VXLAN_HDR_LEN};

use super::tests::{udp, World, BCAST, MAC_A, NOW};
use crate::snapshot::{BridgeL3, TunnelIn, TunnelL2, UplinkL3};
use crate::stats::DropReason;
use crate::tables::fdb::Dest;
use crate::tables::neigh::NeighTable;

const UPLINK: u32 = 2;
const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const R1: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);
const R2: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 12);
const UPLINK_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x99];
const MAC_X: [u8; 6] = [2, 0, 0, 0, 0, 0x77];

fn vni() -> Vni {
    Vni::new(42).unwrap()
}

fn world() -> World {
    let mut w = World::new(3, 2, 100);
    // Port 2 is bridge 1's uplink: a router leg, not a member.
    if let Some(p) = w.snap.ports[UPLINK as usize].as_mut() {
        p.uplink = true;
    }
    let neigh = Arc::new(NeighTable::default());
    for (ip, last) in [(R1, 11), (R2, 12)] {
        neigh.learn(ip, [2, 0, 0, 0, 0, last], NOW);
    }
    let under = w.snap.bridges[1].as_mut().unwrap();
    under.ports.clear();
    under.l3 = Some(BridgeL3 {
        subnet: "10.9.0.0/24".parse().unwrap(),
        gateway: Ipv4Addr::new(10, 9, 0, 1),
        gateway_mac: [2, 0, 0, 0, 0, 0x91],
        routes_to: vec![1],
        neigh: Arc::new(NeighTable::default()),
        internal: None,
        uplink: Some(UplinkL3 {
            slot: UPLINK,
            ip: LOCAL,
            net: "192.0.2.0/24".parse().unwrap(),
            gw: Ipv4Addr::new(192, 0, 2, 254),
            mac: UPLINK_MAC,
            neigh,
            tunnels: vec![TunnelIn {
                port: IANA_PORT,
                vni: vni(),
                bridge: 0,
                learn: true,
            }],
        }),
        nat: None,
    });
    w.snap.tunnels = true;
    w.snap.bridges[0].as_mut().unwrap().tunnel = Some(TunnelL2 {
        vni: vni(),
        port: IANA_PORT,
        underlay: 1,
        remotes: vec![R1, R2],
        learn: true,
        udp_csum: false,
        statics: Default::default(),
        max_inner: 1464,
    });
    w
}

/// What the uplink sent: (remote VTEP, inner frame) of each VXLAN packet.
fn tunnelled(w: &World) -> Vec<(Ipv4Addr, Vec<u8>)> {
    w.sent(UPLINK as usize)
        .into_iter()
        .map(|packet| {
            let ip = Ipv4Addr::new(packet[30], packet[31], packet[32], packet[33]);
            let expect = Expect {
                local_ip: ip,
                port: IANA_PORT,
                verify_csum: true,
            };
            let d = decapsulate(&packet, &expect, |v| v == vni()).unwrap().unwrap();
            (ip, packet[d.inner_at..d.inner_at + d.inner_len].to_vec())
        })
        .collect()
}

/// `inner` as remote VTEP `from` sends it to us; the outer UDP checksum is
/// computed unless the flags are changed afterwards (which would break it).
fn from_vtep(from: Ipv4Addr, inner: &[u8], vxlan_flags: u8) -> Vec<u8> {
    let mut packet = vec![0u8; OVERHEAD];
    packet.extend_from_slice(inner);
    let outer = Outer {
        src_mac: [2, 0, 0, 0, 0, 11],
        dst_mac: UPLINK_MAC,
        src_ip: from,
        dst_ip: LOCAL,
        src_port: 50_000,
        dst_port: IANA_PORT,
        vni: vni(),
        ttl: 64,
        ident: 0,
        dont_frag: true,
        csum: if vxlan_flags == FLAG_I {
            OuterCsum::Full
        } else {
            OuterCsum::Zero
        },
    };
    encapsulate(&mut packet, &outer).unwrap();
    packet[OVERHEAD - VXLAN_HDR_LEN] = vxlan_flags;
    packet
}

#[test]
fn a_flood_from_a_port_reaches_local_ports_and_every_remote_vtep() {
    let mut w = world();
    let frame = udp(MAC_A, BCAST, b"who");
    w.send(0, std::slice::from_ref(&frame));
    assert_eq!(w.sent(1), vec![frame.clone()]);
    assert_eq!(tunnelled(&w), vec![(R1, frame.clone()), (R2, frame)]);
}

#[test]
fn what_comes_through_the_tunnel_is_switched_learned_and_answered_by_unicast() {
    let mut w = world();
    w.send(0, &[udp(MAC_A, BCAST, b"hello")]);
    w.sent(1);
    tunnelled(&w);
    // From behind R1, to MAC_A: delivered to port 0 only, never back out.
    let inner = udp(MAC_X, MAC_A, b"reply");
    w.send(UPLINK, &[from_vtep(R1, &inner, FLAG_I)]);
    assert_eq!(w.sent(0), vec![inner]);
    assert!(w.sent(1).is_empty() && tunnelled(&w).is_empty());
    let fdb = &w.snap.bridges[0].as_ref().unwrap().fdb;
    assert_eq!(fdb.lookup(MAC_X, NOW), Some(Dest::Vtep(R1)));
    // Learned: unicast to MAC_X goes to R1 alone.
    let frame = udp(MAC_A, MAC_X, b"unicast");
    w.send(0, std::slice::from_ref(&frame));
    assert_eq!(tunnelled(&w), vec![(R1, frame)]);
    assert!(w.sent(1).is_empty());
    // A broadcast from the tunnel stays local (split horizon).
    w.send(
        UPLINK,
        &[from_vtep(R2, &udp([2, 0, 0, 0, 0, 0x78], BCAST, b"b"), FLAG_I)],
    );
    assert_eq!(w.sent(0).len() + w.sent(1).len(), 2);
    assert!(tunnelled(&w).is_empty());
}

#[test]
fn malformed_tunnel_packets_are_counted_on_the_uplink() {
    let mut w = world();
    let bad_flags = from_vtep(R1, &udp(MAC_X, MAC_A, b"x"), 0x00);
    w.send(UPLINK, &[bad_flags]);
    assert_eq!(w.drops(UPLINK, DropReason::VxlanBadFlags), 1);
    let mut bad_csum = from_vtep(R1, &udp(MAC_X, MAC_A, b"x"), FLAG_I);
    // The outer UDP checksum's first byte.
    bad_csum[40] ^= 0x01;
    w.send(UPLINK, &[bad_csum]);
    assert_eq!(w.drops(UPLINK, DropReason::VxlanBadChecksum), 1);
    assert!(w.sent(0).is_empty() && w.sent(1).is_empty());
}

#[test]
fn a_frame_too_big_for_the_tunnel_is_dropped_and_counted() {
    let mut w = world();
    let fdb = &w.snap.bridges[0].as_ref().unwrap().fdb;
    fdb.learn(MAC_X, Dest::Vtep(R1), NOW);
    w.send(0, &[udp(MAC_A, MAC_X, &[0; 1500])]);
    assert!(tunnelled(&w).is_empty());
    assert_eq!(w.drops(0, DropReason::TunnelTooBig), 1);
}
