//! Changing an IPv4 packet's source or destination (address and port) in
//! place, the way SNAT and DNAT do, with every checksum updated
//! incrementally (RFC 1624) instead of recomputed over the payload.
//!
//! What each change touches:
//! - an address: the IPv4 header checksum, and the TCP/UDP checksum (the
//!   pseudo-header holds the addresses); not the ICMP checksum;
//! - a port: the TCP/UDP checksum; an ICMP echo identifier: the ICMP checksum.
//!
//! A TCP/UDP checksum field holds one of two things, and the caller says
//! which ([`L4Checksum`]): a finished checksum, or the pseudo-header seed an
//! offloading sender leaves for the device to finish (a virtio-net
//! "needs checksum" frame, every GSO super-frame). A seed covers only the
//! pseudo-header, so it moves with the addresses but not with the ports.
//! A UDP checksum of zero means "none" and stays zero.
//!
//! Only the first fragment of a fragmented packet carries the L4 header; the
//! others get their addresses changed and nothing else.

use std::net::Ipv4Addr;

use smoltcp::wire::{Icmpv4Message, Icmpv4Packet, IpProtocol, Ipv4Packet, TcpPacket, UdpPacket};

use crate::checksum::{update_checksum, update_seed};
use crate::tuple::Proto;

/// What the packet's TCP/UDP checksum field holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4Checksum {
    /// A finished checksum.
    Complete,
    /// The pseudo-header sum an offloading sender left for the device.
    Seed,
}

/// The new source and/or destination. A port is the ICMP echo identifier
/// for ICMP echo packets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rewrite {
    pub src: Option<(Ipv4Addr, u16)>,
    pub dst: Option<(Ipv4Addr, u16)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    #[error("not a well-formed IPv4 packet")]
    BadIpv4,
    #[error("the transport header is cut short")]
    BadTransport,
    #[error("protocol {0} has no ports to rewrite")]
    NoPorts(u8),
}

/// Applies `rw` to `packet`, which starts at the IPv4 header.
pub fn rewrite_ipv4(packet: &mut [u8], rw: &Rewrite, l4: L4Checksum) -> Result<(), RewriteError> {
    let mut ip = Ipv4Packet::new_checked(packet).map_err(|_| RewriteError::BadIpv4)?;
    if usize::from(ip.header_len()) < 20 {
        return Err(RewriteError::BadIpv4);
    }
    let (old_src, old_dst) = (ip.src_addr(), ip.dst_addr());
    let new_src = rw.src.map_or(old_src, |(a, _)| a);
    let new_dst = rw.dst.map_or(old_dst, |(a, _)| a);
    let proto = ip.next_header();
    let first_fragment = ip.frag_offset() == 0;

    let mut ip_sum = ip.checksum();
    ip_sum = update_checksum(ip_sum, &old_src.octets(), &new_src.octets());
    ip_sum = update_checksum(ip_sum, &old_dst.octets(), &new_dst.octets());
    ip.set_src_addr(new_src);
    ip.set_dst_addr(new_dst);
    ip.set_checksum(ip_sum);
    if !first_fragment {
        return Ok(());
    }

    let addrs = |sum: u16, update: fn(u16, &[u8], &[u8]) -> u16| {
        let sum = update(sum, &old_src.octets(), &new_src.octets());
        update(sum, &old_dst.octets(), &new_dst.octets())
    };
    let ports_update: fn(u16, &[u8], &[u8]) -> u16 = match l4 {
        L4Checksum::Complete => update_checksum,
        // The device sums the header with the new ports in it itself.
        L4Checksum::Seed => |sum, _, _| sum,
    };
    let addr_update: fn(u16, &[u8], &[u8]) -> u16 = match l4 {
        L4Checksum::Complete => update_checksum,
        L4Checksum::Seed => update_seed,
    };
    match proto {
        IpProtocol::Tcp => {
            let mut tcp = TcpPacket::new_checked(ip.payload_mut()).map_err(|_| RewriteError::BadTransport)?;
            let (old_sp, old_dp) = (tcp.src_port(), tcp.dst_port());
            let (sp, dp) = (rw.src.map_or(old_sp, |(_, p)| p), rw.dst.map_or(old_dp, |(_, p)| p));
            let mut sum = addrs(tcp.checksum(), addr_update);
            sum = ports_update(sum, &old_sp.to_be_bytes(), &sp.to_be_bytes());
            sum = ports_update(sum, &old_dp.to_be_bytes(), &dp.to_be_bytes());
            tcp.set_src_port(sp);
            tcp.set_dst_port(dp);
            tcp.set_checksum(sum);
        }
        IpProtocol::Udp => {
            // A first fragment holds the header and only part of what its
            // length field counts.
            let more_frags = ip.more_frags();
            let payload = ip.payload_mut();
            let mut udp = if more_frags && payload.len() >= 8 {
                UdpPacket::new_unchecked(payload)
            } else {
                UdpPacket::new_checked(payload).map_err(|_| RewriteError::BadTransport)?
            };
            let (old_sp, old_dp) = (udp.src_port(), udp.dst_port());
            let (sp, dp) = (rw.src.map_or(old_sp, |(_, p)| p), rw.dst.map_or(old_dp, |(_, p)| p));
            udp.set_src_port(sp);
            udp.set_dst_port(dp);
            let old_sum = udp.checksum();
            if old_sum == 0 && l4 == L4Checksum::Complete {
                return Ok(()); // no checksum, and none to keep up to date
            }
            let mut sum = addrs(old_sum, addr_update);
            sum = ports_update(sum, &old_sp.to_be_bytes(), &sp.to_be_bytes());
            sum = ports_update(sum, &old_dp.to_be_bytes(), &dp.to_be_bytes());
            // A finished UDP checksum of zero is sent as all ones (RFC 768).
            udp.set_checksum(if sum == 0 && l4 == L4Checksum::Complete {
                0xffff
            } else {
                sum
            });
        }
        IpProtocol::Icmp => {
            let mut icmp = Icmpv4Packet::new_checked(ip.payload_mut()).map_err(|_| RewriteError::BadTransport)?;
            if !matches!(icmp.msg_type(), Icmpv4Message::EchoRequest | Icmpv4Message::EchoReply) {
                // Errors carry no identifier of their own; their quoted
                // packet is translated by whoever knows the connection.
                return Ok(());
            }
            let old_id = icmp.echo_ident();
            let id = match icmp.msg_type() {
                Icmpv4Message::EchoRequest => rw.src.map_or(old_id, |(_, p)| p),
                _ => rw.dst.map_or(old_id, |(_, p)| p),
            };
            let sum = update_checksum(icmp.checksum(), &old_id.to_be_bytes(), &id.to_be_bytes());
            icmp.set_echo_ident(id);
            icmp.set_checksum(sum);
        }
        other => {
            if rw.src.is_some_and(|(_, p)| p != 0) || rw.dst.is_some_and(|(_, p)| p != 0) {
                return Err(RewriteError::NoPorts(u8::from(other)));
            }
        }
    }
    Ok(())
}

/// The packet an ICMP error (destination unreachable, time exceeded,
/// parameter problem, source quench) quotes: its protocol, addresses and
/// ports, as it was sent. `packet` starts at the error's IPv4 header. None
/// for anything else, or a quote too short to hold the ports.
pub fn icmp_error_quote(packet: &[u8]) -> Option<(Proto, Ipv4Addr, u16, Ipv4Addr, u16)> {
    let ip = Ipv4Packet::new_checked(packet).ok()?;
    if ip.next_header() != IpProtocol::Icmp {
        return None;
    }
    let icmp = Icmpv4Packet::new_checked(ip.payload()).ok()?;
    if !is_error(icmp.msg_type()) {
        return None;
    }
    let quote = icmp.data();
    let inner = Ipv4Packet::new_unchecked(quote);
    let ihl = usize::from(quote.first()? & 0x0f) * 4;
    let ports = quote.get(ihl..ihl + 4)?;
    if ihl < 20 {
        return None;
    }
    let (a, b) = (
        u16::from_be_bytes([ports[0], ports[1]]),
        u16::from_be_bytes([ports[2], ports[3]]),
    );
    let proto = match inner.next_header() {
        IpProtocol::Tcp => Proto::Tcp,
        IpProtocol::Udp => Proto::Udp,
        IpProtocol::Icmp => {
            // A quoted echo: its identifier (bytes 4-5) is the "port".
            let id = quote.get(ihl + 4..ihl + 6)?;
            let id = u16::from_be_bytes([id[0], id[1]]);
            return match quote[ihl] {
                8 => Some((Proto::IcmpEcho, inner.src_addr(), id, inner.dst_addr(), 0)),
                0 => Some((Proto::IcmpEcho, inner.src_addr(), 0, inner.dst_addr(), id)),
                _ => None,
            };
        }
        _ => return None,
    };
    Some((proto, inner.src_addr(), a, inner.dst_addr(), b))
}

fn is_error(m: Icmpv4Message) -> bool {
    matches!(
        m,
        Icmpv4Message::DstUnreachable
            | Icmpv4Message::TimeExceeded
            | Icmpv4Message::ParamProblem
            | Icmpv4Message::Redirect
    )
}

/// Translates an ICMP error about a NATed connection: the outer addresses
/// as `outer` says (ports unused), the quoted packet's addresses and ports
/// as `quoted` says. The quoted IP header checksum and the ICMP checksum
/// are recomputed (errors are small and rare); a quoted UDP checksum is
/// updated incrementally, since the quote holds no payload to sum.
pub fn rewrite_icmp_error(packet: &mut [u8], outer: &Rewrite, quoted: &Rewrite) -> Result<(), RewriteError> {
    let mut ip = Ipv4Packet::new_checked(packet).map_err(|_| RewriteError::BadIpv4)?;
    if let Some((a, _)) = outer.src {
        ip.set_src_addr(a);
    }
    if let Some((a, _)) = outer.dst {
        ip.set_dst_addr(a);
    }
    ip.fill_checksum();
    let mut icmp = Icmpv4Packet::new_checked(ip.payload_mut()).map_err(|_| RewriteError::BadTransport)?;
    {
        let quote = icmp.data_mut();
        let ihl = usize::from(quote.first().ok_or(RewriteError::BadTransport)? & 0x0f) * 4;
        if ihl < 20 || quote.len() < ihl + 4 {
            return Err(RewriteError::BadTransport);
        }
        let (old_src, old_dst, proto) = {
            let inner = Ipv4Packet::new_unchecked(&quote[..ihl]);
            (inner.src_addr(), inner.dst_addr(), inner.next_header())
        };
        let new_src = quoted.src.map_or(old_src, |(a, _)| a);
        let new_dst = quoted.dst.map_or(old_dst, |(a, _)| a);
        {
            let mut inner = Ipv4Packet::new_unchecked(&mut quote[..ihl]);
            inner.set_src_addr(new_src);
            inner.set_dst_addr(new_dst);
            inner.fill_checksum();
        }
        let l4 = &mut quote[ihl..];
        match proto {
            IpProtocol::Tcp | IpProtocol::Udp => {
                let (old_sp, old_dp) = (u16::from_be_bytes([l4[0], l4[1]]), u16::from_be_bytes([l4[2], l4[3]]));
                let sp = quoted.src.map_or(old_sp, |(_, p)| p);
                let dp = quoted.dst.map_or(old_dp, |(_, p)| p);
                l4[0..2].copy_from_slice(&sp.to_be_bytes());
                l4[2..4].copy_from_slice(&dp.to_be_bytes());
                if proto == IpProtocol::Udp && l4.len() >= 8 && l4[6..8] != [0, 0] {
                    let mut sum = u16::from_be_bytes([l4[6], l4[7]]);
                    sum = update_checksum(sum, &old_src.octets(), &new_src.octets());
                    sum = update_checksum(sum, &old_dst.octets(), &new_dst.octets());
                    sum = update_checksum(sum, &old_sp.to_be_bytes(), &sp.to_be_bytes());
                    sum = update_checksum(sum, &old_dp.to_be_bytes(), &dp.to_be_bytes());
                    l4[6..8].copy_from_slice(&sum.to_be_bytes());
                }
            }
            IpProtocol::Icmp if l4.len() >= 6 => {
                let id = match l4[0] {
                    8 => quoted.src.map(|(_, p)| p),
                    _ => quoted.dst.map(|(_, p)| p),
                };
                if let Some(id) = id {
                    l4[4..6].copy_from_slice(&id.to_be_bytes());
                }
            }
            _ => {}
        }
    }
    icmp.fill_checksum();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{
        checksum::Sum16BitWords, Icmpv4Slice, Ipv4HeaderSlice, PacketBuilder, TcpHeaderSlice, UdpHeaderSlice,
    };

    const C: [u8; 4] = [10, 20, 0, 5];
    const OUT: [u8; 4] = [192, 0, 2, 80];
    const UPLINK: [u8; 4] = [198, 51, 100, 2];

    fn ip_part(frame: Vec<u8>) -> Vec<u8> {
        frame[14..].to_vec()
    }

    fn tcp(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4(C, OUT, 64)
            .tcp(40000, 80, 7, 1000)
            .ack(9)
            .psh();
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        ip_part(out)
    }

    fn udp(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([2; 6], [4; 6]).ipv4(C, OUT, 64).udp(5353, 53);
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        ip_part(out)
    }

    /// Checks every checksum of an IPv4 TCP/UDP/ICMP packet from scratch,
    /// with etherparse.
    fn assert_checksums_valid(p: &[u8]) {
        let ip = Ipv4HeaderSlice::from_slice(p).unwrap().to_header();
        assert_eq!(ip.header_checksum, ip.calc_header_checksum(), "IPv4 header");
        let l4 = &p[ip.header_len()..usize::from(ip.total_len)];
        match ip.protocol {
            etherparse::IpNumber::TCP => {
                let h = TcpHeaderSlice::from_slice(l4).unwrap().to_header();
                let payload = &l4[h.header_len()..];
                assert_eq!(h.checksum, h.calc_checksum_ipv4(&ip, payload).unwrap(), "TCP");
            }
            etherparse::IpNumber::UDP => {
                let h = UdpHeaderSlice::from_slice(l4).unwrap().to_header();
                assert_eq!(h.checksum, h.calc_checksum_ipv4(&ip, &l4[8..]).unwrap(), "UDP");
            }
            etherparse::IpNumber::ICMP => {
                let icmp = Icmpv4Slice::from_slice(l4).unwrap();
                let h = icmp.header();
                assert_eq!(h.checksum, h.icmp_type.calc_checksum(icmp.payload()), "ICMP");
            }
            other => panic!("unexpected protocol {other:?}"),
        }
    }

    #[test]
    fn snat_and_dnat_of_tcp_keep_every_checksum_valid() {
        let mut p = tcp(b"GET / HTTP/1.1\r\n\r\n");
        assert_checksums_valid(&p);
        rewrite_ipv4(
            &mut p,
            &Rewrite {
                src: Some((UPLINK.into(), 61001)),
                dst: None,
            },
            L4Checksum::Complete,
        )
        .unwrap();
        assert_checksums_valid(&p);
        let h = TcpHeaderSlice::from_slice(&p[20..]).unwrap();
        assert_eq!((&p[12..16], h.source_port()), (&UPLINK[..], 61001));
        rewrite_ipv4(
            &mut p,
            &Rewrite {
                src: None,
                dst: Some(([10, 20, 0, 9].into(), 8080)),
            },
            L4Checksum::Complete,
        )
        .unwrap();
        assert_checksums_valid(&p);
        assert_eq!(TcpHeaderSlice::from_slice(&p[20..]).unwrap().destination_port(), 8080);
    }

    #[test]
    fn udp_rewrites_and_the_zero_checksum_stays_zero() {
        let mut p = udp(b"query");
        rewrite_ipv4(
            &mut p,
            &Rewrite {
                src: Some((UPLINK.into(), 62000)),
                dst: None,
            },
            L4Checksum::Complete,
        )
        .unwrap();
        assert_checksums_valid(&p);
        let mut none = udp(b"query");
        none[26..28].copy_from_slice(&[0, 0]);
        rewrite_ipv4(
            &mut none,
            &Rewrite {
                src: Some((UPLINK.into(), 62000)),
                dst: None,
            },
            L4Checksum::Complete,
        )
        .unwrap();
        assert_eq!(&none[26..28], &[0, 0], "no checksum stays no checksum");
        assert_eq!(UdpHeaderSlice::from_slice(&none[20..]).unwrap().source_port(), 62000);
    }

    #[test]
    fn a_seed_follows_the_addresses_and_not_the_ports() {
        // As an offloading sender leaves it: the pseudo-header sum.
        let mut p = tcp(&[7u8; 3000]);
        let seed = |p: &[u8]| {
            let len = (p.len() - 20) as u16;
            !Sum16BitWords::new()
                .add_4bytes(p[12..16].try_into().unwrap())
                .add_4bytes(p[16..20].try_into().unwrap())
                .add_2bytes([0, 6])
                .add_2bytes(len.to_be_bytes())
                .ones_complement()
        };
        let s = seed(&p);
        p[36..38].copy_from_slice(&s.to_ne_bytes());
        let rw = Rewrite {
            src: Some((UPLINK.into(), 61002)),
            dst: Some(([10, 20, 0, 9].into(), 8080)),
        };
        rewrite_ipv4(&mut p, &rw, L4Checksum::Seed).unwrap();
        assert_eq!(
            &p[36..38],
            &seed(&p).to_ne_bytes(),
            "the seed is the new pseudo-header's sum"
        );
        // Finishing it, as the device would, gives the right checksum.
        let sum = Sum16BitWords::new()
            .add_slice(&p[20..])
            .to_ones_complement_with_no_zero();
        p[36..38].copy_from_slice(&sum.to_ne_bytes());
        assert_checksums_valid(&p);
    }

    #[test]
    fn icmp_echo_identifiers_are_the_ports() {
        let b = PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4(C, OUT, 64)
            .icmpv4_echo_request(0x1234, 1);
        let mut out = Vec::new();
        b.write(&mut out, b"ping").unwrap();
        let mut p = ip_part(out);
        rewrite_ipv4(
            &mut p,
            &Rewrite {
                src: Some((UPLINK.into(), 0x4321)),
                dst: None,
            },
            L4Checksum::Complete,
        )
        .unwrap();
        assert_checksums_valid(&p);
        assert_eq!(
            &p[24..26],
            &[0x43, 0x21],
            "the request's identifier is its 'source port'"
        );
    }

    #[test]
    fn later_fragments_only_change_addresses_and_bad_input_is_refused() {
        let mut p = udp(b"fragment payload");
        let flags_before = [p[6], p[7]];
        p[6..8].copy_from_slice(&[0x00, 0x10]); // fragment offset 128 bytes
        let csum = u16::from_be_bytes([p[10], p[11]]);
        let fixed = update_checksum(csum, &flags_before, &[0x00, 0x10]);
        p[10..12].copy_from_slice(&fixed.to_be_bytes());
        let l4_before = p[20..].to_vec();
        rewrite_ipv4(
            &mut p,
            &Rewrite {
                src: Some((UPLINK.into(), 62000)),
                dst: None,
            },
            L4Checksum::Complete,
        )
        .unwrap();
        assert_eq!(&p[20..], &l4_before[..], "no L4 header in a later fragment");
        let ip = Ipv4HeaderSlice::from_slice(&p).unwrap().to_header();
        assert_eq!(ip.header_checksum, ip.calc_header_checksum());

        assert_eq!(
            rewrite_ipv4(&mut [0u8; 10], &Rewrite::default(), L4Checksum::Complete),
            Err(RewriteError::BadIpv4)
        );
        let mut cut = tcp(b"");
        cut.truncate(30);
        cut[2..4].copy_from_slice(&30u16.to_be_bytes());
        assert!(rewrite_ipv4(&mut cut, &Rewrite::default(), L4Checksum::Complete).is_err());
    }
}

#[cfg(test)]
mod icmp_error_tests {
    use super::*;
    use etherparse::{Icmpv4Slice, Ipv4HeaderSlice, PacketBuilder};

    /// A port unreachable from the outside about a masqueraded UDP packet.
    fn port_unreachable() -> Vec<u8> {
        let sent = {
            let b = PacketBuilder::ipv4([198, 51, 100, 2], [192, 0, 2, 53], 63).udp(61000, 53);
            let mut out = Vec::new();
            b.write(&mut out, b"query").unwrap();
            out
        };
        let b = PacketBuilder::ipv4([192, 0, 2, 53], [198, 51, 100, 2], 64).icmpv4(
            etherparse::Icmpv4Type::DestinationUnreachable(etherparse::icmpv4::DestUnreachableHeader::Port),
        );
        let mut out = Vec::new();
        b.write(&mut out, &sent[..28]).unwrap();
        out
    }

    #[test]
    fn errors_are_read_and_translated_back_to_the_container() {
        let mut p = port_unreachable();
        let quote = icmp_error_quote(&p).expect("an error quoting UDP");
        assert_eq!(
            quote,
            (Proto::Udp, [198, 51, 100, 2].into(), 61000, [192, 0, 2, 53].into(), 53)
        );
        let container = Ipv4Addr::new(10, 20, 0, 5);
        let outer = Rewrite {
            src: None,
            dst: Some((container, 0)),
        };
        let quoted = Rewrite {
            src: Some((container, 5353)),
            dst: None,
        };
        rewrite_icmp_error(&mut p, &outer, &quoted).unwrap();

        let ip = Ipv4HeaderSlice::from_slice(&p).unwrap().to_header();
        assert_eq!(ip.header_checksum, ip.calc_header_checksum());
        assert_eq!(ip.destination, container.octets());
        let icmp = Icmpv4Slice::from_slice(&p[20..]).unwrap();
        assert_eq!(
            icmp.header().checksum,
            icmp.header().icmp_type.calc_checksum(icmp.payload()),
            "ICMP checksum"
        );
        let inner = Ipv4HeaderSlice::from_slice(icmp.payload()).unwrap().to_header();
        assert_eq!(
            inner.header_checksum,
            inner.calc_header_checksum(),
            "quoted IP header checksum"
        );
        assert_eq!(inner.source, container.octets());
        assert_eq!(&icmp.payload()[20..22], &5353u16.to_be_bytes(), "quoted source port");
        // The quoted UDP checksum matches the translated quoted packet.
        let udp = etherparse::UdpHeaderSlice::from_slice(&icmp.payload()[20..])
            .unwrap()
            .to_header();
        assert_eq!(udp.checksum, udp.calc_checksum_ipv4(&inner, b"query").unwrap());
    }

    #[test]
    fn non_errors_and_short_quotes_are_not_errors() {
        let b = PacketBuilder::ipv4([1, 1, 1, 1], [2, 2, 2, 2], 64).icmpv4_echo_request(1, 1);
        let mut echo = Vec::new();
        b.write(&mut echo, b"x").unwrap();
        assert_eq!(icmp_error_quote(&echo), None);
        let mut short = port_unreachable();
        short.truncate(20 + 8 + 20 + 2);
        let len = short.len() as u16;
        short[2..4].copy_from_slice(&len.to_be_bytes());
        assert_eq!(icmp_error_quote(&short), None);
    }
}

#[cfg(test)]
mod robustness {
    use super::*;

    use crate::fuzzing::Rng;

    /// Arbitrary bytes, and valid headers with arbitrary tails, never make
    /// the parsers or rewriters panic.
    #[test]
    fn arbitrary_packets_never_panic() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let rw = Rewrite {
            src: Some(([1, 2, 3, 4].into(), 5)),
            dst: Some(([6, 7, 8, 9].into(), 10)),
        };
        for round in 0..200_000u32 {
            let len = (rng.next() % 120) as usize;
            let mut p: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if round % 2 == 0 && p.len() >= 20 {
                // Mostly-valid IPv4 headers reach deeper code.
                p[0] = 0x45;
                let total = p.len() as u16;
                p[2..4].copy_from_slice(&total.to_be_bytes());
                p[6] = 0;
                p[9] = [1u8, 6, 17][(rng.next() % 3) as usize];
            }
            let _ = icmp_error_quote(&p);
            let _ = rewrite_icmp_error(&mut p.clone(), &rw, &rw);
            let _ = rewrite_ipv4(&mut p.clone(), &rw, L4Checksum::Complete);
            let _ = rewrite_ipv4(&mut p, &rw, L4Checksum::Seed);
        }
    }
}
