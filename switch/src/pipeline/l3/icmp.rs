//! The ICMP messages the router writes itself: echo replies from its own
//! addresses, and errors (net unreachable, time exceeded) about frames it
//! cannot route, quoting them as RFC 792 asks.

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, Icmpv4Message, Icmpv4Packet, IpProtocol, Ipv4Packet, Ipv4Repr,
};

use super::{strip_to_ethernet, Me, ETH_HDR_LEN, IPV4_HDR_LEN, REPLY_TTL};
use crate::packet::{Frame, Meta};
use crate::pipeline::ingress::Ingress;
use crate::stats::DropReason;
use crate::verdict::Verdict;

const ICMP_HDR_LEN: usize = 8;
/// What an ICMP error quotes of the offending packet: its IP header (up to
/// 60 bytes) and the first 8 bytes of its payload (RFC 792).
const ICMP_QUOTE_MAX: usize = 60 + 8;
/// ICMP codes (RFC 792).
pub(super) const CODE_NET_UNREACHABLE: u8 = 0;
pub(super) const CODE_TTL_EXCEEDED: u8 = 0;
const CODE_FRAG_NEEDED: u8 = 4;

/// Turns an echo request to `me` into its reply, sent back where it came from.
pub(super) fn echo_reply(frame: &mut Frame, offset: usize, me: Me, at: &Ingress<'_>) -> Verdict {
    if !at.counters.slow_path(at.now_ms) {
        return Verdict::Drop(DropReason::SlowPathLimit);
    }
    strip_to_ethernet(frame, offset, EthernetProtocol::Ipv4);
    let data = frame.data_mut();
    {
        let mut eth = EthernetFrame::new_unchecked(&mut *data);
        let sender = eth.src_addr();
        eth.set_dst_addr(sender);
        eth.set_src_addr(EthernetAddress(me.mac));
    }
    let (header_len, total) = {
        let mut ip = Ipv4Packet::new_unchecked(&mut data[ETH_HDR_LEN..]);
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        ip.set_src_addr(dst);
        ip.set_dst_addr(src);
        ip.set_hop_limit(REPLY_TTL);
        ip.fill_checksum();
        (usize::from(ip.header_len()), usize::from(ip.total_len()))
    };
    let ip_bytes = &mut data[ETH_HDR_LEN..];
    let end = total.min(ip_bytes.len());
    let mut icmp = Icmpv4Packet::new_unchecked(&mut ip_bytes[header_len..end]);
    icmp.set_msg_type(Icmpv4Message::EchoReply);
    icmp.fill_checksum();
    Verdict::Forward(at.in_slot)
}

/// Turns the frame into an ICMP error about itself, from `me`, sent back to
/// its sender. Not for ICMP errors, fragments after the first, or senders
/// that are no single host (RFC 1812, 4.3.2.7): those are only dropped.
pub(super) fn error(
    frame: &mut Frame,
    offset: usize,
    me: Me,
    message: Icmpv4Message,
    code: u8,
    at: &Ingress<'_>,
) -> Verdict {
    error_with(frame, offset, me, message, code, 0, at)
}

/// "Fragmentation needed and DF set" (RFC 1191) about a frame too large
/// for the next link, carrying that link's MTU so the sender's path MTU
/// discovery shrinks its packets.
pub fn frag_needed(frame: &mut Frame, offset: usize, me: Me, mtu: u16, at: &Ingress<'_>) -> Verdict {
    error_with(
        frame,
        offset,
        me,
        Icmpv4Message::DstUnreachable,
        CODE_FRAG_NEEDED,
        mtu,
        at,
    )
}

/// [`error`], with `low_word` in the second half of the ICMP header's
/// otherwise unused word (the next-hop MTU of "fragmentation needed").
fn error_with(
    frame: &mut Frame,
    offset: usize,
    me: Me,
    message: Icmpv4Message,
    code: u8,
    low_word: u16,
    at: &Ingress<'_>,
) -> Verdict {
    if !at.counters.slow_path(at.now_ms) {
        return Verdict::Drop(DropReason::SlowPathLimit);
    }
    let data = &frame.data()[offset..];
    let sender_mac = EthernetFrame::new_unchecked(data).src_addr();
    let ip = Ipv4Packet::new_unchecked(&data[ETH_HDR_LEN..]);
    let sender = ip.src_addr();
    let is_error = ip.next_header() == IpProtocol::Icmp
        && Icmpv4Packet::new_checked(ip.payload())
            .is_ok_and(|i| !matches!(i.msg_type(), Icmpv4Message::EchoRequest | Icmpv4Message::EchoReply));
    let no_single_host =
        sender.is_unspecified() || sender.is_broadcast() || sender.is_multicast() || sender.is_loopback();
    if is_error || ip.frag_offset() != 0 || no_single_host {
        return Verdict::Drop(DropReason::NotRoutable);
    }
    let ip_bytes = &data[ETH_HDR_LEN..];
    let quote_len = (usize::from(ip.header_len()) + 8)
        .min(usize::from(ip.total_len()))
        .min(ip_bytes.len())
        .min(ICMP_QUOTE_MAX);
    let mut out = [0u8; ETH_HDR_LEN + IPV4_HDR_LEN + ICMP_HDR_LEN + ICMP_QUOTE_MAX];
    let len = ETH_HDR_LEN + IPV4_HDR_LEN + ICMP_HDR_LEN + quote_len;
    {
        let mut eth = EthernetFrame::new_unchecked(&mut out[..]);
        eth.set_dst_addr(sender_mac);
        eth.set_src_addr(EthernetAddress(me.mac));
        eth.set_ethertype(EthernetProtocol::Ipv4);
    }
    let repr = Ipv4Repr {
        src_addr: me.ip,
        dst_addr: sender,
        next_header: IpProtocol::Icmp,
        payload_len: ICMP_HDR_LEN + quote_len,
        hop_limit: REPLY_TTL,
    };
    repr.emit(
        &mut Ipv4Packet::new_unchecked(&mut out[ETH_HDR_LEN..]),
        &ChecksumCapabilities::default(),
    );
    {
        let mut icmp = Icmpv4Packet::new_unchecked(&mut out[ETH_HDR_LEN + IPV4_HDR_LEN..len]);
        icmp.set_msg_type(message);
        icmp.set_msg_code(code);
        // The "unused" word of error messages, but for the next-hop MTU.
        icmp.set_echo_ident(0);
        icmp.set_echo_seq_no(low_word);
        icmp.data_mut()[..quote_len].copy_from_slice(&ip_bytes[..quote_len]);
        icmp.fill_checksum();
    }
    frame.fill(&out[..len]);
    frame.meta = Meta::generated(EthernetProtocol::Ipv4);
    Verdict::Forward(at.in_slot)
}
