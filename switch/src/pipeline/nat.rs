//! The NAT stage: between routing decisions, a routed IPv4 packet is looked
//! up in the connection table and rewritten the way its connection says.
//!
//! Called from `l3` only for bridges with NAT configured (masquerade or
//! published ports), and only for packets that cross the uplink or are
//! addressed to it (hairpin). New connections are created only when a
//! policy applies; other routed traffic is not tracked.

use smoltcp::wire::{Icmpv4Message, Icmpv4Packet, IpProtocol, Ipv4Packet, TcpPacket, UdpPacket};
use vswitch_nat::rewrite::{icmp_error_quote, rewrite_icmp_error, rewrite_ipv4, L4Checksum, Rewrite};
use vswitch_nat::table::{ConnTable, CtDrop, Seen, Tracked};
use vswitch_nat::tcp::{Dir, Segment};
use vswitch_nat::tuple::{Proto, Tuple};

use crate::packet::{Frame, VnetHdr, VNET_HDR_LEN};
use crate::stats::DropReason;

impl From<CtDrop> for DropReason {
    fn from(d: CtDrop) -> DropReason {
        match d {
            CtDrop::Invalid => DropReason::CtInvalid,
            CtDrop::TableFull => DropReason::CtTableFull,
            CtDrop::PortsExhausted => DropReason::NatPortsExhausted,
        }
    }
}

/// The connection tuple of the IPv4 packet at `ip_at` in zone `zone`, or
/// None for packets NAT cannot translate (no ports, ICMP other than echo).
pub fn seen(frame: &Frame, ip_at: usize, zone: u16) -> Result<Option<Seen>, DropReason> {
    let ip = Ipv4Packet::new_checked(&frame.data()[ip_at..]).map_err(|_| DropReason::Malformed)?;
    if ip.frag_offset() != 0 || ip.more_frags() {
        // Fragments carry ports only in the first one; not translated.
        return Ok(None);
    }
    let base = |proto, src_port, dst_port| Tuple {
        zone,
        proto,
        src: ip.src_addr(),
        src_port,
        dst: ip.dst_addr(),
        dst_port,
    };
    let seen = match ip.next_header() {
        IpProtocol::Tcp => {
            let tcp = TcpPacket::new_checked(ip.payload()).map_err(|_| DropReason::Malformed)?;
            let segment = Segment::from_flags(tcp.syn(), tcp.ack(), tcp.fin(), tcp.rst());
            Seen {
                tuple: base(Proto::Tcp, tcp.src_port(), tcp.dst_port()),
                segment: Some(segment),
            }
        }
        IpProtocol::Udp => {
            let udp = UdpPacket::new_checked(ip.payload()).map_err(|_| DropReason::Malformed)?;
            Seen {
                tuple: base(Proto::Udp, udp.src_port(), udp.dst_port()),
                segment: None,
            }
        }
        IpProtocol::Icmp => {
            let icmp = Icmpv4Packet::new_checked(ip.payload()).map_err(|_| DropReason::Malformed)?;
            // The identifier is the request's source and the reply's
            // destination "port", so both directions reverse like TCP's.
            let tuple = match icmp.msg_type() {
                Icmpv4Message::EchoRequest => base(Proto::IcmpEcho, icmp.echo_ident(), 0),
                Icmpv4Message::EchoReply => base(Proto::IcmpEcho, 0, icmp.echo_ident()),
                _ => return Ok(None),
            };
            Seen { tuple, segment: None }
        }
        _ => return Ok(None),
    };
    Ok(Some(seen))
}

/// Rewrites the packet as its connection says for its direction.
pub fn apply(frame: &mut Frame, ip_at: usize, seen: &Seen, tracked: &Tracked) -> Result<(), DropReason> {
    let out = tracked.conn.translated(tracked.dir);
    let now = seen.tuple;
    let rw = Rewrite {
        src: (out.src != now.src || out.src_port != now.src_port).then_some((out.src, out.src_port)),
        dst: (out.dst != now.dst || out.dst_port != now.dst_port).then_some((out.dst, out.dst_port)),
    };
    if rw == Rewrite::default() {
        return Ok(());
    }
    // Offloaded frames (virtio-net "needs checksum", GSO) carry a seed.
    let seed = ip_at >= VNET_HDR_LEN
        && frame.meta.eth_offset == Some(VNET_HDR_LEN as u16)
        && VnetHdr::new_checked(frame.data()).is_some_and(|h| h.flags() & VnetHdr::F_NEEDS_CSUM != 0);
    let mode = if seed { L4Checksum::Seed } else { L4Checksum::Complete };
    rewrite_ipv4(&mut frame.data_mut()[ip_at..], &rw, mode).map_err(|_| DropReason::Malformed)
}

/// Translates an ICMP error (unreachable, time exceeded...) about a tracked
/// connection, so that path MTU discovery and error reporting work through
/// NAT. Ok(true) when the packet was such an error and was rewritten.
///
/// The error arrives on the side its quoted packet left from, already
/// translated: the quote reversed is what an answer on this side looks
/// like, which finds the connection and the direction `d` the error
/// travels. The outer header is translated as a packet of `d`; the quoted
/// one goes back to what it was before translation.
pub fn icmp_error(frame: &mut Frame, ip_at: usize, zone: u16, ct: &ConnTable, now_ms: u64) -> Result<bool, DropReason> {
    let Some((proto, src, src_port, dst, dst_port)) = icmp_error_quote(&frame.data()[ip_at..]) else {
        return Ok(false);
    };
    let quoted_now = Tuple {
        zone,
        proto,
        src,
        src_port,
        dst,
        dst_port,
    };
    let Some((conn, dir)) = ct.lookup(&quoted_now.reversed(), now_ms) else {
        return Ok(false);
    };
    let out = conn.translated(dir);
    let before = match dir.other() {
        Dir::Original => conn.orig,
        Dir::Reply => conn.reply,
    };
    let outer_src = Ipv4Packet::new_unchecked(&frame.data()[ip_at..]).src_addr();
    let outer = Rewrite {
        // Sent by the quoted packet's destination itself: that address moves too.
        src: (outer_src == quoted_now.dst && out.src != outer_src).then_some((out.src, 0)),
        dst: Some((out.dst, 0)),
    };
    let quoted = Rewrite {
        src: (before.src != src || before.src_port != src_port).then_some((before.src, before.src_port)),
        dst: (before.dst != dst || before.dst_port != dst_port).then_some((before.dst, before.dst_port)),
    };
    rewrite_icmp_error(&mut frame.data_mut()[ip_at..], &outer, &quoted).map_err(|_| DropReason::Malformed)?;
    frame.meta.gso = None;
    Ok(true)
}
