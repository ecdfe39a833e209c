//! Decapsulation: is this frame from the underlay a VXLAN packet for us,
//! and if so, where is its inner frame?
//!
//! Three answers: not ours (`Ok(None)`: not IPv4, not UDP, another
//! address or port; the switch handles it as any other frame of the
//! underlay), ours and well-formed (`Ok(Some)`), or ours and malformed
//! (`Err`, with the reason the switch counts). The inner frame is found in
//! place, by offset, and is bounded by the UDP length, not the frame's
//! (Ethernet padding is not part of it).

use std::net::Ipv4Addr;

use smoltcp::wire::{EthernetFrame, EthernetProtocol, IpAddress, IpProtocol, Ipv4Packet, UdpPacket};

use crate::header::{Vni, VxlanHeader};
use crate::{ETH_HDR_LEN, IPV4_HDR_LEN, UDP_HDR_LEN, VXLAN_HDR_LEN};

/// What a packet for this VTEP looks like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expect {
    /// The local VTEP address.
    pub local_ip: Ipv4Addr,
    /// The tunnel's UDP port.
    pub port: u16,
    /// Verify a non-zero outer UDP checksum. Off only when the device has
    /// vouched for it already (a virtio-net header saying "checksum valid"
    /// or "checksum to be completed").
    pub verify_csum: bool,
}

/// A well-formed VXLAN packet for us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decapped {
    pub vni: Vni,
    /// The remote VTEP: the outer source address and port.
    pub vtep: Ipv4Addr,
    pub vtep_port: u16,
    /// Where the inner Ethernet frame is in the packet, and its length.
    pub inner_at: usize,
    pub inner_len: usize,
}

/// Why a VXLAN packet for us was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("outer headers cut short")]
    Truncated,
    #[error("outer IPv4 header not valid (version, length or checksum)")]
    BadIpv4,
    #[error("outer IPv4 fragment")]
    Fragment,
    #[error("outer UDP length does not fit the packet")]
    BadUdpLength,
    #[error("outer UDP checksum wrong")]
    BadChecksum,
    #[error("VXLAN flags or reserved bits not those of a plain VXLAN header")]
    BadFlags,
    #[error("VNI {0} is not configured here")]
    UnknownVni(Vni),
    #[error("inner frame shorter than an Ethernet header")]
    InnerTooShort,
}

impl Malformed {
    /// Every reason, in a fixed order (for counters).
    pub const ALL: [Malformed; 8] = [
        Malformed::Truncated,
        Malformed::BadIpv4,
        Malformed::Fragment,
        Malformed::BadUdpLength,
        Malformed::BadChecksum,
        Malformed::BadFlags,
        Malformed::UnknownVni(Vni::ZERO),
        Malformed::InnerTooShort,
    ];

    /// A short name, for counters and logs.
    pub fn name(self) -> &'static str {
        match self {
            Malformed::Truncated => "vxlan-truncated",
            Malformed::BadIpv4 => "vxlan-bad-ipv4",
            Malformed::Fragment => "vxlan-fragment",
            Malformed::BadUdpLength => "vxlan-bad-udp-length",
            Malformed::BadChecksum => "vxlan-bad-checksum",
            Malformed::BadFlags => "vxlan-bad-flags",
            Malformed::UnknownVni(_) => "vxlan-unknown-vni",
            Malformed::InnerTooShort => "vxlan-inner-too-short",
        }
    }
}

/// Looks at `packet` (starting at its outer Ethernet header) as the VTEP
/// `expect` describes, with `known` telling which VNIs are configured.
pub fn decapsulate(packet: &[u8], expect: &Expect, known: impl Fn(Vni) -> bool) -> Result<Option<Decapped>, Malformed> {
    let Ok(eth) = EthernetFrame::new_checked(packet) else {
        return Ok(None);
    };
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return Ok(None);
    }
    let ip_bytes = eth.payload();
    let ip = match Ipv4Packet::new_checked(ip_bytes) {
        Ok(ip) => ip,
        Err(_) if ip_bytes.len() < IPV4_HDR_LEN => return Ok(None),
        Err(_) => return Err(Malformed::BadIpv4),
    };
    // smoltcp's check accepts a header length below the minimum.
    if ip.version() != 4 || usize::from(ip.header_len()) < IPV4_HDR_LEN {
        return Err(Malformed::BadIpv4);
    }
    // Later fragments carry no UDP header: nothing says they are ours.
    if ip.next_header() != IpProtocol::Udp || ip.dst_addr() != expect.local_ip || ip.frag_offset() != 0 {
        return Ok(None);
    }
    let udp_bytes = ip.payload();
    let Some(port) = udp_bytes.get(2..4).map(|p| u16::from_be_bytes([p[0], p[1]])) else {
        return Ok(None);
    };
    if port != expect.port {
        return Ok(None);
    }
    // From here on the packet is addressed to our tunnel.
    if !ip.verify_checksum() {
        return Err(Malformed::BadIpv4);
    }
    if ip.more_frags() {
        return Err(Malformed::Fragment);
    }
    let udp = match UdpPacket::new_checked(udp_bytes) {
        Ok(udp) => udp,
        Err(_) if udp_bytes.len() < UDP_HDR_LEN => return Err(Malformed::Truncated),
        Err(_) => return Err(Malformed::BadUdpLength),
    };
    let (src, dst) = (IpAddress::Ipv4(ip.src_addr()), IpAddress::Ipv4(ip.dst_addr()));
    if expect.verify_csum && !udp.verify_checksum(&src, &dst) {
        return Err(Malformed::BadChecksum);
    }
    let payload = udp.payload();
    let header = VxlanHeader::new_checked(payload).ok_or(Malformed::Truncated)?;
    let vni = header.valid_vni().ok_or(Malformed::BadFlags)?;
    if !known(vni) {
        return Err(Malformed::UnknownVni(vni));
    }
    let inner_len = payload.len() - VXLAN_HDR_LEN;
    if inner_len < ETH_HDR_LEN {
        return Err(Malformed::InnerTooShort);
    }
    Ok(Some(Decapped {
        vni,
        vtep: ip.src_addr(),
        vtep_port: udp.src_port(),
        inner_at: ETH_HDR_LEN + usize::from(ip.header_len()) + UDP_HDR_LEN + VXLAN_HDR_LEN,
        inner_len,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    const LOCAL: [u8; 4] = [192, 0, 2, 1];
    const REMOTE: [u8; 4] = [192, 0, 2, 9];

    fn expect(port: u16) -> Expect {
        Expect {
            local_ip: Ipv4Addr::from(LOCAL),
            port,
            verify_csum: true,
        }
    }

    fn inner() -> Vec<u8> {
        let mut frame = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 0xa], [2, 0, 0, 0, 0, 0xb])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(1000, 53)
            .write(&mut frame, b"query")
            .unwrap();
        frame
    }

    /// A VXLAN packet as a kernel VTEP would send it, built by etherparse
    /// (which computes the UDP checksum: `udpcsum` on).
    fn vxlan(port: u16, vxlan_hdr: &[u8], inner: &[u8]) -> Vec<u8> {
        let mut payload = vxlan_hdr.to_vec();
        payload.extend_from_slice(inner);
        let mut packet = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 9], [2, 0, 0, 0, 0, 1])
            .ipv4(REMOTE, LOCAL, 64)
            .udp(54_321, port)
            .write(&mut packet, &payload)
            .unwrap();
        packet
    }

    const VNI_42: [u8; 8] = [0x08, 0, 0, 0, 0, 0, 42, 0];
    const UDP_CSUM_AT: usize = 14 + 20 + 6;

    fn any(_: Vni) -> bool {
        true
    }

    #[test]
    fn a_kernel_style_packet_is_found_on_either_port() {
        for port in [crate::IANA_PORT, crate::LINUX_PORT] {
            let inner = inner();
            let packet = vxlan(port, &VNI_42, &inner);
            let d = decapsulate(&packet, &expect(port), any).unwrap().unwrap();
            assert_eq!(d.vni.get(), 42);
            assert_eq!(d.vtep, Ipv4Addr::from(REMOTE));
            assert_eq!(d.vtep_port, 54_321);
            assert_eq!(&packet[d.inner_at..d.inner_at + d.inner_len], &inner[..]);
            // Zero means "no checksum" and is accepted.
            let mut zero = packet.clone();
            zero[UDP_CSUM_AT..UDP_CSUM_AT + 2].copy_from_slice(&[0, 0]);
            assert!(decapsulate(&zero, &expect(port), any).unwrap().is_some());
        }
    }

    #[test]
    fn what_is_not_ours_is_left_alone() {
        let packet = vxlan(crate::IANA_PORT, &VNI_42, &inner());
        assert_eq!(decapsulate(&packet, &expect(crate::LINUX_PORT), any), Ok(None));
        let mut other_dst = expect(crate::IANA_PORT);
        other_dst.local_ip = Ipv4Addr::new(192, 0, 2, 3);
        assert_eq!(decapsulate(&packet, &other_dst, any), Ok(None));
        assert_eq!(
            decapsulate(&inner(), &expect(crate::IANA_PORT), any),
            Ok(None),
            "other UDP"
        );
        assert_eq!(decapsulate(&packet[..20], &expect(crate::IANA_PORT), any), Ok(None));
    }

    #[test]
    fn every_malformation_has_its_reason() {
        let port = crate::IANA_PORT;
        let good = vxlan(port, &VNI_42, &inner());
        let check = |packet: &[u8], want: Malformed| {
            assert_eq!(decapsulate(packet, &expect(port), any), Err(want), "{}", want.name());
        };

        let mut bad_csum = good.clone();
        bad_csum[UDP_CSUM_AT] ^= 0x55;
        check(&bad_csum, Malformed::BadChecksum);
        let mut trusted = expect(port);
        trusted.verify_csum = false;
        assert!(
            decapsulate(&bad_csum, &trusted, any).unwrap().is_some(),
            "the device vouched"
        );

        let mut no_i = vxlan(port, &[0, 0, 0, 0, 0, 0, 42, 0], &inner());
        check(&no_i, Malformed::BadFlags);
        no_i = vxlan(port, &[0x88, 0, 0, 0, 0, 0, 42, 0], &inner());
        check(&no_i, Malformed::BadFlags);
        check(
            &vxlan(port, &[0x08, 0, 1, 0, 0, 0, 42, 0], &inner()),
            Malformed::BadFlags,
        );

        assert_eq!(
            decapsulate(&good, &expect(port), |v| v.get() == 7),
            Err(Malformed::UnknownVni(Vni::new(42).unwrap()))
        );
        check(&vxlan(port, &VNI_42, &inner()[..13]), Malformed::InnerTooShort);
        check(&vxlan(port, &[0x08, 0, 0, 0], &[]), Malformed::Truncated);

        // The UDP length says more than the packet holds.
        let mut long_udp = good.clone();
        let udp_len_at = 14 + 20 + 4;
        long_udp[udp_len_at..udp_len_at + 2].copy_from_slice(&2000u16.to_be_bytes());
        check(&long_udp, Malformed::BadUdpLength);

        let mut bad_ip_csum = good.clone();
        bad_ip_csum[14 + 10] ^= 1;
        check(&bad_ip_csum, Malformed::BadIpv4);
        let mut ihl_short = good.clone();
        ihl_short[14] = 0x44;
        check(&ihl_short, Malformed::BadIpv4);

        // A first fragment: More Fragments set (the header checksum fixed).
        let mut frag = good.clone();
        frag[14 + 6] |= 0x20;
        let mut ip = Ipv4Packet::new_unchecked(&mut frag[14..]);
        ip.fill_checksum();
        check(&frag, Malformed::Fragment);
    }

    /// Frames written by `encapsulate` come back out whole, and Ethernet
    /// padding after the datagram is not taken for part of the inner frame.
    #[test]
    fn encapsulate_then_decapsulate() {
        use crate::encap::{encapsulate, Outer, OuterCsum};
        let inner = inner();
        for csum in [OuterCsum::Zero, OuterCsum::Full] {
            let mut packet = vec![0u8; crate::OVERHEAD];
            packet.extend_from_slice(&inner);
            let outer = Outer {
                src_mac: [2, 0, 0, 0, 0, 9],
                dst_mac: [2, 0, 0, 0, 0, 1],
                src_ip: Ipv4Addr::from(REMOTE),
                dst_ip: Ipv4Addr::from(LOCAL),
                src_port: 60_000,
                dst_port: crate::LINUX_PORT,
                vni: Vni::new(0xab_cdef).unwrap(),
                ttl: 64,
                ident: 1,
                dont_frag: true,
                csum,
            };
            encapsulate(&mut packet, &outer).unwrap();
            packet.extend_from_slice(&[0; 6]);
            let d = decapsulate(&packet, &expect(crate::LINUX_PORT), any).unwrap().unwrap();
            assert_eq!((d.vni, d.vtep, d.vtep_port), (outer.vni, outer.src_ip, 60_000));
            assert_eq!((d.inner_at, d.inner_len), (crate::OVERHEAD, inner.len()));
            assert_eq!(&packet[d.inner_at..d.inner_at + d.inner_len], &inner[..]);
        }
    }
}
