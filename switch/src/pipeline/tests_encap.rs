//! The tx side of the tunnel on literal frames: what `encap::seal` makes of
//! a frame (the bytes a port writes), and what `encap::cut` makes of a TCP
//! super-frame, read back with the vxlan library's decapsulation and
//! etherparse, independent of the code under test.

use std::net::Ipv4Addr;

use etherparse::checksum::Sum16BitWords;
use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use smoltcp::wire::EthernetProtocol;
use vswitch_vxlan::{decapsulate, Expect, Outer, OuterCsum, Vni, IANA_PORT, OVERHEAD};

use super::encap::{cut, seal};
use crate::packet::{Batch, Frame, GsoType, Meta, PacketPool, VnetHdr, VNET_HDR_LEN};
use crate::stats::PortCounters;

const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const REMOTE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const MSS: u16 = 1000;
/// Ethernet + IPv4 headers: where the TCP header starts.
const L4_AT: u16 = 34;
/// The TCP checksum field within the TCP header.
const TCP_CSUM_AT: u16 = 16;

fn outer(csum: OuterCsum) -> Outer {
    Outer {
        src_mac: [2, 0, 0, 0, 0, 1],
        dst_mac: [2, 0, 0, 0, 0, 2],
        src_ip: LOCAL,
        dst_ip: REMOTE,
        src_port: 50_000,
        dst_port: IANA_PORT,
        vni: Vni::new(42).expect("a VNI"),
        ttl: 64,
        ident: 0,
        dont_frag: true,
        csum,
    }
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

/// A TCP frame as a container's stack hands it to a TAP with checksum
/// offload: the checksum field holds only the pseudo-header sum.
fn tcp_seeded(data: &[u8]) -> Vec<u8> {
    let mut frame = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 0xa], [2, 0, 0, 0, 0, 0xb])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .tcp(40000, 5201, 7, 502)
        .ack(1)
        .write(&mut frame, data)
        .expect("a frame");
    let tcp_len = (frame.len() - usize::from(L4_AT)) as u16;
    let seed = Sum16BitWords::new()
        .add_4bytes([10, 0, 0, 1])
        .add_4bytes([10, 0, 0, 2])
        .add_2bytes([0, 6])
        .add_2bytes(tcp_len.to_be_bytes())
        .ones_complement();
    let at = usize::from(L4_AT + TCP_CSUM_AT);
    frame[at..at + 2].copy_from_slice(&(!seed).to_ne_bytes());
    frame
}

/// `eth` behind a virtio-net header `hdr`, as classify leaves it.
fn with_vnet(pool: &mut PacketPool, hdr: [u8; VNET_HDR_LEN], eth: &[u8], gso: Option<GsoType>) -> Frame {
    let mut bytes = hdr.to_vec();
    bytes.extend_from_slice(eth);
    let mut f = pool.alloc().expect("a buffer");
    f.fill(&bytes);
    f.meta = Meta {
        eth_offset: Some(VNET_HDR_LEN as u16),
        ethertype: Some(EthernetProtocol::Ipv4),
        gso,
        csum_partial: hdr[0] & VnetHdr::F_NEEDS_CSUM != 0,
        ..Meta::default()
    };
    f
}

fn needs_csum() -> [u8; VNET_HDR_LEN] {
    let mut hdr = [0u8; VNET_HDR_LEN];
    VnetHdr::write_needs_csum(&mut hdr, L4_AT, TCP_CSUM_AT);
    hdr
}

/// The inner frame of a VXLAN packet, checked by the library (the outer
/// UDP checksum verified when it is not zero).
fn opened(packet: &[u8]) -> Vec<u8> {
    let expect = Expect {
        local_ip: REMOTE,
        port: IANA_PORT,
        verify_csum: true,
    };
    let d = decapsulate(packet, &expect, |vni| vni.get() == 42)
        .expect("valid VXLAN")
        .expect("for our VNI");
    packet[d.inner_at..d.inner_at + d.inner_len].to_vec()
}

/// The TCP payload of `eth`, its checksum checked by etherparse.
fn tcp_payload_checked(eth: &[u8]) -> Vec<u8> {
    let p = SlicedPacket::from_ethernet(eth).expect("parses");
    let (Some(NetSlice::Ipv4(ip)), Some(TransportSlice::Tcp(tcp))) = (&p.net, &p.transport) else {
        panic!("TCP over IPv4")
    };
    let expected = tcp
        .to_header()
        .calc_checksum_ipv4(&ip.header().to_header(), tcp.payload())
        .expect("a checksum");
    assert_eq!(tcp.checksum(), expected, "TCP checksum");
    tcp.payload().to_vec()
}

#[test]
fn a_frame_without_virtio_header_gets_the_outer_headers_in_front() {
    let mut pool = PacketPool::new(1);
    let mut inner = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 0xa], [2, 0, 0, 0, 0, 0xb])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(1000, 2000)
        .write(&mut inner, b"hello")
        .expect("a frame");
    let mut f = pool.alloc().expect("a buffer");
    f.fill(&inner);
    f.meta = Meta::generated(EthernetProtocol::Ipv4);
    assert_eq!(seal(&mut f, &outer(OuterCsum::Zero), false), Ok(true));
    assert_eq!(f.meta.eth_offset, Some(0));
    assert_eq!(f.len(), OVERHEAD + inner.len());
    assert_eq!(opened(f.data()), inner);
}

#[test]
fn a_checksum_left_to_the_device_stays_left_to_it_at_its_new_place() {
    let mut pool = PacketPool::new(1);
    let inner = tcp_seeded(&payload(100));
    let mut f = with_vnet(&mut pool, needs_csum(), &inner, None);
    assert_eq!(seal(&mut f, &outer(OuterCsum::Zero), true), Ok(true));
    let hdr = VnetHdr::new_checked(f.data()).expect("a header");
    assert_eq!(hdr.flags(), VnetHdr::F_NEEDS_CSUM);
    assert_eq!(hdr.gso(), None);
    assert_eq!(
        (hdr.csum_start(), hdr.csum_offset()),
        (L4_AT + OVERHEAD as u16, TCP_CSUM_AT)
    );
    assert!(f.meta.csum_partial && f.meta.encap.is_none());
    assert_eq!(opened(&f.data()[VNET_HDR_LEN..]), inner, "the inner frame untouched");
}

#[test]
fn an_outer_checksum_covers_an_inner_one_finished_first() {
    let mut pool = PacketPool::new(1);
    let data = payload(100);
    let mut f = with_vnet(&mut pool, needs_csum(), &tcp_seeded(&data), None);
    assert_eq!(seal(&mut f, &outer(OuterCsum::Full), true), Ok(true));
    assert_eq!(
        &f.data()[..VNET_HDR_LEN],
        &[0; VNET_HDR_LEN],
        "nothing left to the device"
    );
    assert!(!f.meta.csum_partial);
    // `opened` verifies the outer UDP checksum, this the inner TCP one.
    assert_eq!(tcp_payload_checked(&opened(&f.data()[VNET_HDR_LEN..])), data);
}

fn super_frame(pool: &mut PacketPool, data: &[u8]) -> Frame {
    let mut hdr = [0u8; VNET_HDR_LEN];
    let hdr_len = L4_AT + 20;
    VnetHdr::write_gso(&mut hdr, 1, hdr_len, MSS, (L4_AT, TCP_CSUM_AT));
    with_vnet(pool, hdr, &tcp_seeded(data), Some(GsoType::TcpV4))
}

#[test]
fn a_super_frame_goes_whole_only_to_a_port_with_tunnel_gso_and_no_outer_checksum() {
    let mut pool = PacketPool::new(1);
    let data = payload(3500);
    let mut f = super_frame(&mut pool, &data);
    let before = f.data().to_vec();
    assert_eq!(seal(&mut f, &outer(OuterCsum::Zero), false), Ok(false), "no tunnel GSO");
    assert_eq!(
        seal(&mut f, &outer(OuterCsum::Full), true),
        Ok(false),
        "an outer checksum"
    );
    assert_eq!(f.data(), &before[..], "left as it was, for cut");

    assert_eq!(seal(&mut f, &outer(OuterCsum::Zero), true), Ok(true));
    assert_eq!(f.meta.gso, Some(GsoType::UdpTunnel { inner_v6: false }));
    let hdr = VnetHdr::new_checked(f.data()).expect("a header");
    assert_eq!(hdr.gso(), Some(GsoType::UdpTunnel { inner_v6: false }));
    let shifted = OVERHEAD as u16;
    assert_eq!(
        (hdr.hdr_len(), hdr.gso_size(), hdr.csum_start()),
        (L4_AT + 20 + shifted, MSS, L4_AT + shifted)
    );
}

#[test]
fn a_super_frame_is_cut_into_sealed_segments_sent_in_order() {
    let mut pool = PacketPool::new(8);
    let data = payload(3500);
    let f = super_frame(&mut pool, &data);
    let counters = PortCounters::default();
    let mut pieces = Batch::default();
    let mut sent = Vec::new();
    for csum in [OuterCsum::Zero, OuterCsum::Full] {
        sent.clear();
        cut(&f, &outer(csum), &mut pool, &mut pieces, &counters, |b: &Batch| {
            sent.extend(b.frames().iter().map(|p| {
                assert_eq!(p.meta.eth_offset, Some(0));
                p.data().to_vec()
            }))
        });
        let joined: Vec<u8> = sent.iter().flat_map(|p| tcp_payload_checked(&opened(p))).collect();
        assert_eq!(sent.len(), 4);
        assert_eq!(joined, data, "every byte, in order");
        assert!(
            pieces.is_empty() && pool.available() == 7,
            "every piece back in the pool"
        );
    }
    assert_eq!(counters.tx_gso_packets.get(), 2);
}
