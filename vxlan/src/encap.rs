//! Encapsulation: the outer Ethernet, IPv4, UDP and VXLAN headers written
//! in front of an inner frame, in place.
//!
//! The caller hands over one buffer holding [`OVERHEAD`] bytes of room
//! followed by the inner frame (the switch's frames keep headroom for
//! this, so nothing is copied). The outer IPv4 header has no options; its
//! identification and DF bit are the caller's (a per-thread counter; DF as
//! the tunnel is configured). The outer UDP checksum is zero by default
//! (RFC 7348 allows it over IPv4, and Linux sends zero unless `udpcsum`),
//! or computed over the whole datagram.

use std::net::Ipv4Addr;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, UdpPacket,
};

use crate::header::{Vni, VxlanHeader};
use crate::{ETH_HDR_LEN, IPV4_HDR_LEN, OVERHEAD, UDP_HDR_LEN, VXLAN_HDR_LEN};

/// Largest IPv4 packet.
const IPV4_MAX_LEN: usize = u16::MAX as usize;

/// The outer UDP checksum on send.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OuterCsum {
    /// None (zero): the inner frame carries its own checksums.
    #[default]
    Zero,
    /// Computed over the pseudo-header, the UDP and VXLAN headers and the
    /// inner frame.
    Full,
}

/// Everything the outer headers say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outer {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    /// The local VTEP address.
    pub src_ip: Ipv4Addr,
    /// The remote VTEP address.
    pub dst_ip: Ipv4Addr,
    /// From [`crate::source_port`]: a hash of the inner flow.
    pub src_port: u16,
    /// The tunnel's port (4789, or 8472 for Linux's default).
    pub dst_port: u16,
    pub vni: Vni,
    pub ttl: u8,
    pub ident: u16,
    pub dont_frag: bool,
    pub csum: OuterCsum,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncapError {
    #[error("{len} bytes hold no room for the {OVERHEAD} bytes of outer headers and an Ethernet header")]
    NoRoom { len: usize },
    #[error("an inner frame of {inner_len} bytes makes an outer IPv4 packet over 65535 bytes")]
    TooLong { inner_len: usize },
}

/// Writes the outer headers into the first [`OVERHEAD`] bytes of `packet`;
/// the inner frame is the rest of it.
pub fn encapsulate(packet: &mut [u8], outer: &Outer) -> Result<(), EncapError> {
    let len = packet.len();
    let inner_len = len.checked_sub(OVERHEAD).ok_or(EncapError::NoRoom { len })?;
    write_headers(&mut packet[..OVERHEAD], outer, inner_len)?;
    if outer.csum == OuterCsum::Full {
        let mut udp = UdpPacket::new_unchecked(&mut packet[ETH_HDR_LEN + IPV4_HDR_LEN..]);
        udp.fill_checksum(&IpAddress::Ipv4(outer.src_ip), &IpAddress::Ipv4(outer.dst_ip));
    }
    Ok(())
}

/// Writes the outer headers for an inner frame of `inner_len` bytes into
/// `headers` (at least [`OVERHEAD`] bytes), for a caller that sends them
/// in front of the inner frame without moving it (a vectored write). The
/// outer UDP checksum is left zero whatever `outer.csum` says: it covers
/// the inner frame, which only [`encapsulate`] sees.
pub fn write_headers(headers: &mut [u8], outer: &Outer, inner_len: usize) -> Result<(), EncapError> {
    if headers.len() < OVERHEAD || inner_len < ETH_HDR_LEN {
        return Err(EncapError::NoRoom {
            len: headers.len() + inner_len,
        });
    }
    let udp_len = UDP_HDR_LEN + VXLAN_HDR_LEN + inner_len;
    if IPV4_HDR_LEN + udp_len > IPV4_MAX_LEN {
        return Err(EncapError::TooLong { inner_len });
    }

    let mut eth = EthernetFrame::new_unchecked(&mut headers[..]);
    eth.set_dst_addr(EthernetAddress(outer.dst_mac));
    eth.set_src_addr(EthernetAddress(outer.src_mac));
    eth.set_ethertype(EthernetProtocol::Ipv4);

    let repr = Ipv4Repr {
        src_addr: outer.src_ip,
        dst_addr: outer.dst_ip,
        next_header: IpProtocol::Udp,
        payload_len: udp_len,
        hop_limit: outer.ttl,
    };
    let mut ip = Ipv4Packet::new_unchecked(&mut headers[ETH_HDR_LEN..]);
    repr.emit(&mut ip, &ChecksumCapabilities::ignored());
    ip.set_ident(outer.ident);
    ip.set_dont_frag(outer.dont_frag);
    ip.fill_checksum();

    let at = ETH_HDR_LEN + IPV4_HDR_LEN;
    let mut udp = UdpPacket::new_unchecked(&mut headers[at..at + UDP_HDR_LEN]);
    udp.set_src_port(outer.src_port);
    udp.set_dst_port(outer.dst_port);
    // Fits: checked against the IPv4 maximum above.
    udp.set_len(udp_len as u16);
    udp.set_checksum(0);
    VxlanHeader::new_unchecked(&mut headers[at + UDP_HDR_LEN..OVERHEAD]).emit(outer.vni);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    pub(crate) fn outer(csum: OuterCsum) -> Outer {
        Outer {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src_ip: Ipv4Addr::new(192, 0, 2, 1),
            dst_ip: Ipv4Addr::new(192, 0, 2, 2),
            src_port: 50_000,
            dst_port: crate::IANA_PORT,
            vni: Vni::new(42).unwrap(),
            ttl: 64,
            ident: 7,
            dont_frag: false,
            csum,
        }
    }

    fn inner() -> Vec<u8> {
        let mut frame = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 0xa], [2, 0, 0, 0, 0, 0xb])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(1000, 2000)
            .write(&mut frame, b"inner payload")
            .unwrap();
        frame
    }

    /// etherparse, an independent parser, reads what we wrote.
    #[test]
    fn etherparse_reads_the_outer_headers() {
        for csum in [OuterCsum::Zero, OuterCsum::Full] {
            let inner = inner();
            let mut packet = vec![0u8; OVERHEAD];
            packet.extend_from_slice(&inner);
            encapsulate(&mut packet, &outer(csum)).unwrap();
            let sliced = SlicedPacket::from_ethernet(&packet).unwrap();
            let Some(NetSlice::Ipv4(ip)) = &sliced.net else {
                panic!("no IPv4")
            };
            let h = ip.header();
            assert_eq!(h.source(), [192, 0, 2, 1]);
            assert_eq!(h.destination(), [192, 0, 2, 2]);
            assert_eq!(h.ttl(), 64);
            assert_eq!(h.identification(), 7);
            assert!(!h.dont_fragment());
            assert_eq!(h.to_header().calc_header_checksum(), h.header_checksum());
            let Some(TransportSlice::Udp(udp)) = &sliced.transport else {
                panic!("no UDP")
            };
            assert_eq!((udp.source_port(), udp.destination_port()), (50_000, crate::IANA_PORT));
            assert_eq!(usize::from(udp.length()), 8 + 8 + inner.len());
            let expected = match csum {
                OuterCsum::Zero => 0,
                OuterCsum::Full => udp
                    .to_header()
                    .calc_checksum_ipv4(&h.to_header(), udp.payload())
                    .unwrap(),
            };
            assert_eq!(udp.checksum(), expected);
            assert_eq!(&udp.payload()[..8], &[0x08, 0, 0, 0, 0, 0, 42, 0]);
            assert_eq!(&udp.payload()[8..], &inner[..]);
        }
    }

    #[test]
    fn too_small_and_too_large_are_refused() {
        let mut short = vec![0u8; OVERHEAD + 13];
        assert_eq!(
            encapsulate(&mut short, &outer(OuterCsum::Zero)),
            Err(EncapError::NoRoom { len: OVERHEAD + 13 })
        );
        let mut huge = vec![0u8; OVERHEAD + 65_535 - 36 + 1];
        assert!(matches!(
            encapsulate(&mut huge, &outer(OuterCsum::Full)),
            Err(EncapError::TooLong { .. })
        ));
        let mut largest = vec![0u8; OVERHEAD + 65_535 - 36];
        assert_eq!(encapsulate(&mut largest, &outer(OuterCsum::Full)), Ok(()));
    }
}
