//! The pipeline over in-memory ports: frames built with etherparse, outputs
//! read back from what each port "sent".

use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};

use etherparse::PacketBuilder;

use super::*;
use crate::packet::{Batch, PacketPool, BATCH_SIZE, VNET_HDR_LEN};
use crate::port::{LivePort, PortFault, PortIo};
use crate::snapshot::{BridgeSlot, PortSlot};
use crate::stats::DropReason;
use crate::stats::PortCounters;
use crate::tables::fdb::Fdb;

/// A port whose output is a list of frames (from the Ethernet header on).
pub(super) type Sent = Arc<Mutex<Vec<Vec<u8>>>>;

#[derive(Default)]
pub(super) struct MemPort {
    sent: Sent,
}

impl PortIo for MemPort {
    fn rx_burst(&self, _: &mut PacketPool, _: &mut Batch, _: &PortCounters) -> Result<(), PortFault> {
        Ok(())
    }

    fn tx_burst(&self, batch: &Batch, which: &[u16], counters: &PortCounters) {
        let mut sent = self.sent.lock().unwrap();
        for &i in which {
            let f = batch.get(usize::from(i)).unwrap();
            // Tunnel frames come sealed: what is here goes on the wire.
            assert!(f.meta.encap.is_none(), "a port never sees an unsealed tunnel frame");
            let eth = f.meta.eth_offset.map_or(VNET_HDR_LEN, usize::from);
            sent.push(f.data()[eth..].to_vec());
            counters.tx_packets.add(1);
        }
    }

    fn raw_fd(&self) -> RawFd {
        -1
    }

    fn has_vnet_hdr(&self) -> bool {
        true
    }
}

pub(super) const NOW: u64 = 1_000;
pub(super) const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
pub(super) const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];
pub(super) const BCAST: [u8; 6] = [0xff; 6];

pub(super) struct World {
    pub snap: Snapshot,
    pub ports: Vec<Sent>,
    pub pool: PacketPool,
    pub scratch: Scratch,
}

impl World {
    /// Ports 0..n_first on bridge 0, the rest on bridge 1.
    pub fn new(n_ports: u32, n_first: u32, max_macs: usize) -> World {
        let mut snap = Snapshot {
            generation: 1,
            ..Default::default()
        };
        let mut ports = Vec::new();
        let fdbs = [Arc::new(Fdb::new(max_macs, 300)), Arc::new(Fdb::new(max_macs, 300))];
        let mut members = [Vec::new(), Vec::new()];
        for slot in 0..n_ports {
            let mem = MemPort::default();
            ports.push(mem.sent.clone());
            let bridge = u32::from(slot >= n_first);
            let io: Box<dyn PortIo> = Box::new(mem);
            let live = Arc::new(LivePort::new(u64::from(slot) + 100, format!("p{slot}"), io, 1));
            snap.ports.push(Some(PortSlot {
                port: live,
                bridge,
                vnet_hdr: true,
                guard: None,
                uplink: false,
                policy: None,
            }));
            members[bridge as usize].push(slot);
        }
        for (fdb, ports) in fdbs.into_iter().zip(members) {
            snap.bridges.push(Some(BridgeSlot {
                fdb,
                ports,
                l3: None,
                tunnel: None,
                policy_zone: 0,
            }));
        }
        let mut scratch = Scratch::default();
        scratch.fit(snap.ports.len());
        World {
            snap,
            ports,
            pool: PacketPool::new(64),
            scratch,
        }
    }

    /// Sends frames into port `slot` as one batch.
    pub fn send(&mut self, slot: u32, frames: &[Vec<u8>]) {
        let mut batch = Batch::default();
        for bytes in frames {
            let mut f = self.pool.alloc().expect("pool");
            let mut with_hdr = vec![0u8; VNET_HDR_LEN];
            with_hdr.extend_from_slice(bytes);
            f.fill(&with_hdr);
            batch.push(f).unwrap();
        }
        run_batch(&self.snap, 0, slot, &mut batch, &mut self.pool, &mut self.scratch, NOW);
        batch.release(&mut self.pool);
    }

    /// Takes what port `slot` sent so far.
    pub fn sent(&self, slot: usize) -> Vec<Vec<u8>> {
        std::mem::take(&mut *self.ports[slot].lock().unwrap())
    }

    pub fn drops(&self, slot: u32, reason: DropReason) -> u64 {
        self.snap.port(slot).unwrap().port.stats.totals().drops(reason)
    }
}

pub(super) fn udp(src: [u8; 6], dst: [u8; 6], payload: &[u8]) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(src, dst)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(1000, 2000);
    let mut out = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut out, payload).unwrap();
    out
}

#[test]
fn unknown_unicast_floods_to_every_other_port_and_never_back() {
    let mut w = World::new(3, 3, 100);
    let frame = udp(MAC_A, MAC_B, b"hello");
    w.send(0, std::slice::from_ref(&frame));
    assert!(w.sent(0).is_empty(), "never back to the ingress port");
    assert_eq!(w.sent(1), vec![frame.clone()]);
    assert_eq!(w.sent(2), vec![frame]);
}

#[test]
fn after_learning_unicast_goes_to_one_port_only() {
    let mut w = World::new(3, 3, 100);
    w.send(0, &[udp(MAC_A, MAC_B, b"1")]);
    w.send(1, &[udp(MAC_B, MAC_A, b"2")]);
    assert_eq!(w.sent(0).len(), 1, "B -> A goes to A, learned from the first frame");
    assert!(w.sent(2).iter().all(|f| f[12..14] == [0x08, 0x00]), "sanity");
    w.sent(1);
    w.sent(2);
    w.send(0, &[udp(MAC_A, MAC_B, b"3"), udp(MAC_A, MAC_B, b"4")]);
    assert_eq!(w.sent(1).len(), 2);
    assert!(w.sent(2).is_empty(), "a learned destination is not flooded");
}

#[test]
fn broadcast_floods_within_the_bridge_only() {
    let mut w = World::new(4, 2, 100);
    w.send(0, &[udp(MAC_A, BCAST, b"who")]);
    assert_eq!(w.sent(1).len(), 1);
    assert!(w.sent(2).is_empty() && w.sent(3).is_empty(), "bridges are isolated");
    // The same MAC on the other bridge is a different entry.
    w.send(2, &[udp(MAC_B, MAC_A, b"x")]);
    assert_eq!(w.sent(3).len(), 1, "flooded on bridge 1: A is unknown there");
    assert!(w.sent(0).is_empty());
}

#[test]
fn bad_frames_are_dropped_by_name() {
    let mut w = World::new(2, 2, 100);
    let multicast_src = udp([3, 0, 0, 0, 0, 1], MAC_B, b"x");
    let zero_src = udp([0; 6], MAC_B, b"x");
    let stp = udp(MAC_A, [0x01, 0x80, 0xc2, 0, 0, 0], b"bpdu");
    let short = vec![0u8; 10];
    w.send(0, &[multicast_src, zero_src, stp, short]);
    assert!(w.sent(1).is_empty());
    assert_eq!(w.drops(0, DropReason::BadSrcMac), 2);
    assert_eq!(w.drops(0, DropReason::ReservedGroup), 1);
    assert_eq!(w.drops(0, DropReason::Malformed), 1);
}

#[test]
fn destination_behind_the_ingress_port_is_dropped() {
    let mut w = World::new(2, 2, 100);
    w.send(0, &[udp(MAC_A, BCAST, b"1"), udp(MAC_B, BCAST, b"2")]);
    // Both MACs were seen on port 0: A -> B now targets port 0 itself.
    assert_eq!(w.sent(1).len(), 2);
    w.send(0, &[udp(MAC_A, MAC_B, b"3")]);
    assert!(w.sent(1).is_empty());
    assert_eq!(w.drops(0, DropReason::SameInPort), 1);
}

#[test]
fn beyond_the_mac_cap_frames_are_flooded_not_learned() {
    let mut w = World::new(3, 3, 1);
    w.send(0, &[udp(MAC_A, BCAST, b"learned")]);
    w.send(1, &[udp(MAC_B, BCAST, b"not learned")]);
    let fdb = &w.snap.bridge(0).unwrap().fdb;
    assert_eq!(fdb.len(), 1);
    assert_eq!(fdb.limit_hits(), 1);
    w.sent(0);
    w.sent(1);
    w.sent(2);
    w.send(0, &[udp(MAC_A, MAC_B, b"to B")]);
    assert_eq!(w.sent(1).len(), 1, "still delivered, by flooding");
    assert_eq!(w.sent(2).len(), 1);
}

#[test]
fn an_entry_for_a_deleted_port_is_not_used() {
    let mut w = World::new(3, 3, 100);
    w.send(1, &[udp(MAC_B, BCAST, b"B lives on slot 1")]);
    // Slot 1 is now another port (another uid), as after del-port + add-port.
    let io: Box<dyn PortIo> = Box::new(MemPort {
        sent: w.ports[1].clone(),
    });
    w.snap.ports[1] = Some(PortSlot {
        port: Arc::new(LivePort::new(999, "new".into(), io, 1)),
        bridge: 0,
        vnet_hdr: true,
        guard: None,
        uplink: false,
        policy: None,
    });
    w.sent(0);
    w.sent(2);
    w.send(0, &[udp(MAC_A, MAC_B, b"x")]);
    assert_eq!(w.sent(2).len(), 1, "stale entry: flooded instead of trusted");
}

#[test]
fn a_batch_returns_every_frame_to_the_pool() {
    let mut w = World::new(3, 3, 100);
    let frames: Vec<Vec<u8>> = (0..BATCH_SIZE as u8).map(|i| udp(MAC_A, BCAST, &[i])).collect();
    w.send(0, &frames);
    assert_eq!(w.pool.available(), w.pool.capacity());
    assert_eq!(w.sent(1).len(), BATCH_SIZE);
    assert_eq!(
        w.sent(2).len(),
        BATCH_SIZE,
        "the flood sends the same buffers, in order"
    );
}

// --- L3: two routed bridges, 10.1.0.0/24 (ports 0, 1) and 10.2.0.0/24 (port 2).

pub(super) const GW_A: [u8; 6] = [2, 0x76, 0x73, 0, 0, 1];
const GW_B: [u8; 6] = [2, 0x76, 0x73, 0, 0, 2];
pub(super) const MAC_C: [u8; 6] = [2, 0, 0, 0, 0, 0xc];

impl World {
    pub(super) fn routed() -> World {
        let mut w = World::new(3, 2, 100);
        for (slot, (net, gw, mac)) in [
            ("10.1.0.0/24", [10, 1, 0, 1], GW_A),
            ("10.2.0.0/24", [10, 2, 0, 1], GW_B),
        ]
        .into_iter()
        .enumerate()
        {
            let b = w.snap.bridges[slot].as_mut().unwrap();
            b.l3 = Some(crate::snapshot::BridgeL3 {
                subnet: net.parse().unwrap(),
                gateway: gw.into(),
                gateway_mac: mac,
                routes_to: vec![slot as u32, 1 - slot as u32],
                neigh: Arc::new(crate::tables::neigh::NeighTable::default()),
                internal: None,
                uplink: None,
                nat: None,
            });
        }
        w
    }

    fn held(&mut self) {
        let mut batch = Batch::default();
        run_held(&self.snap, 0, &mut batch, &mut self.pool, &mut self.scratch, NOW);
    }
}

pub(super) fn ipv4_udp(src_mac: [u8; 6], dst_mac: [u8; 6], src: [u8; 4], dst: [u8; 4], ttl: u8) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src, dst, ttl)
        .udp(1000, 2000);
    let mut out = Vec::new();
    builder.write(&mut out, b"routed").unwrap();
    out
}

fn arp(op: u16, src_mac: [u8; 6], src_ip: [u8; 4], dst_mac: [u8; 6], target_ip: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(if op == 1 { &[0xff; 6] } else { &dst_mac });
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, op as u8]);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&src_ip);
    f.extend_from_slice(if op == 1 { &[0; 6] } else { &dst_mac });
    f.extend_from_slice(&target_ip);
    f
}

/// Parses a frame with etherparse: (src MAC, dst MAC, IPv4 header, IP payload).
pub(super) fn parsed_ipv4(frame: &[u8]) -> ([u8; 6], [u8; 6], etherparse::Ipv4Header, Vec<u8>) {
    let p = etherparse::PacketHeaders::from_ethernet_slice(frame).expect("parses");
    let Some(etherparse::LinkHeader::Ethernet2(eth)) = p.link else {
        panic!("ethernet")
    };
    let Some(etherparse::NetHeaders::Ipv4(ip, _)) = p.net else {
        panic!("ipv4")
    };
    assert_eq!(ip.header_checksum, ip.calc_header_checksum(), "IPv4 header checksum");
    let ip_payload = frame[14 + ip.header_len()..].to_vec();
    (eth.source, eth.destination, ip, ip_payload)
}

#[test]
fn the_gateway_answers_arp_for_itself_only() {
    let mut w = World::routed();
    w.send(0, &[arp(1, MAC_A, [10, 1, 0, 2], [0; 6], [10, 1, 0, 1])]);
    let reply = w.sent(0);
    assert_eq!(reply.len(), 1, "answered to the asker");
    assert_eq!(&reply[0][0..6], &MAC_A);
    assert_eq!(&reply[0][6..12], &GW_A);
    assert_eq!(&reply[0][20..22], &[0, 2], "an ARP reply");
    assert_eq!(&reply[0][22..28], &GW_A, "with the gateway's MAC");
    assert!(w.sent(1).is_empty(), "not flooded");
    w.send(0, &[arp(1, MAC_A, [10, 1, 0, 2], [0; 6], [10, 1, 0, 9])]);
    assert_eq!(w.sent(1).len(), 1, "ARP for another host is flooded as on any bridge");
}

#[test]
fn a_ping_to_the_gateway_is_answered() {
    let mut w = World::routed();
    let ping = {
        let b = PacketBuilder::ethernet2(MAC_A, GW_A)
            .ipv4([10, 1, 0, 2], [10, 1, 0, 1], 64)
            .icmpv4_echo_request(7, 1);
        let mut out = Vec::new();
        b.write(&mut out, b"hello").unwrap();
        out
    };
    w.send(0, &[ping]);
    let reply = w.sent(0);
    assert_eq!(reply.len(), 1);
    let (src, dst, ip, payload) = parsed_ipv4(&reply[0]);
    assert_eq!((src, dst), (GW_A, MAC_A));
    assert_eq!((ip.source, ip.destination), ([10, 1, 0, 1], [10, 1, 0, 2]));
    let icmp = etherparse::Icmpv4Slice::from_slice(&payload).unwrap();
    assert_eq!(icmp.type_u8(), 0, "echo reply");
    let header = icmp.header();
    assert_eq!(
        header.checksum,
        header.icmp_type.calc_checksum(icmp.payload()),
        "ICMP checksum"
    );
}

#[test]
fn a_routed_frame_waits_for_arp_then_leaves_with_ttl_minus_one() {
    let mut w = World::routed();
    w.send(0, &[ipv4_udp(MAC_A, GW_A, [10, 1, 0, 2], [10, 2, 0, 5], 64)]);
    let asked = w.sent(2);
    assert_eq!(
        asked.len(),
        1,
        "the frame is held and the gateway asks on the other bridge"
    );
    assert_eq!(&asked[0][12..14], &[0x08, 0x06]);
    assert_eq!(&asked[0][38..42], &[10, 2, 0, 5], "who has 10.2.0.5?");
    assert_eq!(w.scratch.held(), 1);

    w.send(2, &[arp(2, MAC_C, [10, 2, 0, 5], GW_B, [10, 2, 0, 1])]);
    assert!(
        w.sent(0).is_empty() && w.sent(1).is_empty(),
        "the answer to the gateway goes nowhere else"
    );
    w.held();
    let out = w.sent(2);
    assert_eq!(out.len(), 1, "released once the neighbour is known");
    let (src, dst, ip, _) = parsed_ipv4(&out[0]);
    assert_eq!(
        (src, dst),
        (GW_B, MAC_C),
        "from the out bridge's gateway to the neighbour"
    );
    assert_eq!(ip.time_to_live, 63);
    assert_eq!(w.scratch.held(), 0);

    // Now known: the next frame goes straight out, learned port and all.
    w.send(0, &[ipv4_udp(MAC_A, GW_A, [10, 1, 0, 2], [10, 2, 0, 5], 9)]);
    let out = w.sent(2);
    assert_eq!(parsed_ipv4(&out[0]).2.time_to_live, 8);
}

#[test]
fn ttl_one_gets_time_exceeded_and_unknown_networks_unreachable() {
    let mut w = World::routed();
    let original = ipv4_udp(MAC_A, GW_A, [10, 1, 0, 2], [10, 2, 0, 5], 1);
    w.send(0, std::slice::from_ref(&original));
    let back = w.sent(0);
    assert_eq!(back.len(), 1);
    let (_, dst, ip, payload) = parsed_ipv4(&back[0]);
    assert_eq!((dst, ip.source, ip.destination), (MAC_A, [10, 1, 0, 1], [10, 1, 0, 2]));
    assert_eq!(&payload[..2], &[11, 0], "time exceeded, in transit");
    assert_eq!(
        &payload[8..8 + 28],
        &original[14..14 + 28],
        "quoting the IP header and 8 bytes"
    );
    assert_eq!(w.drops(0, DropReason::TtlExceeded), 1);

    w.send(0, &[ipv4_udp(MAC_A, GW_A, [10, 1, 0, 2], [192, 0, 2, 1], 64)]);
    let (_, _, _, payload) = parsed_ipv4(&w.sent(0)[0]);
    assert_eq!(&payload[..2], &[3, 0], "destination net unreachable");
    assert_eq!(w.drops(0, DropReason::NoRoute), 1);
}

#[test]
fn ttl_decrement_matches_a_full_checksum() {
    for ttl in [2u8, 64, 128, 255] {
        let mut frame = ipv4_udp(MAC_A, GW_A, [10, 1, 0, 2], [10, 2, 0, 5], ttl);
        let mut ip = smoltcp::wire::Ipv4Packet::new_unchecked(&mut frame[14..]);
        super::l3::decrement_ttl(&mut ip);
        assert!(ip.verify_checksum(), "incremental update for ttl {ttl}");
        assert_eq!(ip.hop_limit(), ttl - 1);
    }
}
