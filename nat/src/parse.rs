//! What conntrack needs to know of an IPv4 packet: its tuple and, for TCP,
//! its flags and sequence numbers.

use smoltcp::wire::{Icmpv4Message, Icmpv4Packet, IpProtocol, Ipv4Packet, TcpOption, TcpPacket, UdpPacket};

use crate::rewrite::RewriteError;
use crate::table::Seen;
use crate::tcp::{Segment, TcpSeg};
use crate::tuple::{Proto, Tuple};

/// The connection tuple and TCP segment of the IPv4 packet `packet` (which
/// starts at the IP header) in zone `zone`; None for packets NAT does not
/// translate (later fragments, TCP fragments, protocols without ports,
/// ICMP other than echo).
/// Errors for packets whose headers are cut short or inconsistent.
pub fn seen(packet: &[u8], zone: u16) -> Result<Option<Seen>, RewriteError> {
    let ip = Ipv4Packet::new_checked(packet).map_err(|_| RewriteError::BadIpv4)?;
    // smoltcp's check accepts a header length below the minimum of 20.
    if usize::from(ip.header_len()) < 20 {
        return Err(RewriteError::BadIpv4);
    }
    if ip.frag_offset() != 0 {
        // Only the first fragment carries ports; the later ones are
        // translated as it was ([`crate::frag`]).
        return Ok(None);
    }
    let first_fragment = ip.more_frags();
    let base = |proto, src_port, dst_port| Tuple {
        zone,
        proto,
        src: ip.src_addr(),
        src_port,
        dst: ip.dst_addr(),
        dst_port,
    };
    let bad = |_| RewriteError::BadTransport;
    let seen = match ip.next_header() {
        // Senders doing path MTU discovery do not fragment TCP, and its
        // window tracking needs the whole segment: not translated.
        IpProtocol::Tcp if first_fragment => return Ok(None),
        IpProtocol::Tcp => {
            let tcp = TcpPacket::new_checked(ip.payload()).map_err(bad)?;
            let kind = Segment::from_flags(tcp.syn(), tcp.ack(), tcp.fin(), tcp.rst());
            let seg = TcpSeg {
                kind,
                seq: tcp.seq_number().0 as u32,
                ack: tcp.ack().then(|| tcp.ack_number().0 as u32),
                window: tcp.window_len(),
                len: tcp.payload().len() as u32,
                wscale: if tcp.syn() { window_scale(tcp.options()) } else { None },
            };
            Seen {
                tuple: base(Proto::Tcp, tcp.src_port(), tcp.dst_port()),
                tcp: Some(seg),
            }
        }
        IpProtocol::Udp => {
            let udp = match ip.payload() {
                // The header, and part of what its length field counts.
                p if first_fragment && p.len() >= 8 => UdpPacket::new_unchecked(p),
                p => UdpPacket::new_checked(p).map_err(bad)?,
            };
            Seen {
                tuple: base(Proto::Udp, udp.src_port(), udp.dst_port()),
                tcp: None,
            }
        }
        IpProtocol::Icmp => {
            let icmp = Icmpv4Packet::new_checked(ip.payload()).map_err(bad)?;
            // The identifier is the request's source and the reply's
            // destination "port", so both directions reverse like TCP's.
            let tuple = match icmp.msg_type() {
                Icmpv4Message::EchoRequest => base(Proto::IcmpEcho, icmp.echo_ident(), 0),
                Icmpv4Message::EchoReply => base(Proto::IcmpEcho, 0, icmp.echo_ident()),
                _ => return Ok(None),
            };
            Seen { tuple, tcp: None }
        }
        _ => return Ok(None),
    };
    Ok(Some(seen))
}

/// The window-scale option among `options`; malformed options end the search.
fn window_scale(mut options: &[u8]) -> Option<u8> {
    while !options.is_empty() {
        match TcpOption::parse(options) {
            Ok((_, TcpOption::EndOfList)) | Err(_) => return None,
            Ok((_, TcpOption::WindowScale(shift))) => return Some(shift),
            Ok((rest, _)) => options = rest,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn syn_with_scale(scale: Option<u8>) -> Vec<u8> {
        use etherparse::TcpOptionElement::{MaximumSegmentSize, Noop, WindowScale};
        let mut options = vec![MaximumSegmentSize(1460), Noop];
        options.extend(scale.map(WindowScale));
        let b = PacketBuilder::ipv4([10, 0, 0, 2], [192, 0, 2, 1], 64)
            .tcp(40000, 80, 123_456, 64_240)
            .syn()
            .options(&options)
            .expect("options fit");
        let mut p = Vec::new();
        b.write(&mut p, &[]).expect("writes");
        p
    }

    #[test]
    fn tcp_segments_are_read_with_their_sequence_numbers_and_scale() {
        let s = seen(&syn_with_scale(Some(7)), 3).unwrap().unwrap();
        assert_eq!((s.tuple.zone, s.tuple.src_port, s.tuple.dst_port), (3, 40000, 80));
        let seg = s.tcp.unwrap();
        assert_eq!(
            (seg.kind, seg.seq, seg.ack, seg.window, seg.len, seg.wscale),
            (Segment::Syn, 123_456, None, 64_240, 0, Some(7))
        );
        assert_eq!(
            seen(&syn_with_scale(None), 3).unwrap().unwrap().tcp.unwrap().wscale,
            None
        );

        let b = PacketBuilder::ipv4([192, 0, 2, 1], [10, 0, 0, 2], 64)
            .tcp(80, 40000, 9, 510)
            .ack(123_457);
        let mut p = Vec::new();
        b.write(&mut p, b"hello").unwrap();
        let seg = seen(&p, 3).unwrap().unwrap().tcp.unwrap();
        assert_eq!((seg.kind, seg.ack, seg.len), (Segment::Ack, Some(123_457), 5));
    }

    #[test]
    fn fragments_and_bad_headers_are_told_apart() {
        let mut p = syn_with_scale(None);
        p[6] = 0x20; // more fragments
        assert_eq!(seen(&p, 0), Ok(None), "TCP fragments are not translated");
        let mut later = syn_with_scale(None);
        later[7] = 0x10; // fragment offset 16 * 8
        assert_eq!(seen(&later, 0), Ok(None), "later fragments: by the fragment table");

        // A UDP datagram's first fragment: its ports, though its length
        // field counts more than the fragment holds.
        let b = PacketBuilder::ipv4([10, 0, 0, 2], [192, 0, 2, 1], 64).udp(5353, 53);
        let mut first = Vec::new();
        b.write(&mut first, &[7; 3000]).unwrap();
        first.truncate(1500);
        first[2..4].copy_from_slice(&1500u16.to_be_bytes());
        first[6] = 0x20;
        let s = seen(&first, 0).unwrap().unwrap();
        assert_eq!(
            (s.tuple.proto, s.tuple.src_port, s.tuple.dst_port),
            (Proto::Udp, 5353, 53)
        );
        let mut short_ihl = syn_with_scale(None);
        short_ihl[0] = 0x44;
        assert_eq!(seen(&short_ihl, 0), Err(RewriteError::BadIpv4));
        let mut cut = syn_with_scale(None);
        cut.truncate(30);
        cut[2..4].copy_from_slice(&30u16.to_be_bytes());
        assert_eq!(seen(&cut, 0), Err(RewriteError::BadTransport));
        assert_eq!(window_scale(&[3, 1]), None, "a truncated option");
        assert_eq!(window_scale(&[1, 1, 3, 3, 9]), Some(9));
    }
}
