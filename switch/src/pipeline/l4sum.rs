//! TCP and UDP checksums of frames from ports that do not say whether they
//! are finished (AF_XDP, or the inner frame of a tunnel packet that came
//! that way).
//!
//! A sender with transmit checksum offload on (a container's veth, a kernel
//! VTEP) leaves in the checksum field only the pseudo-header sum, for "the
//! hardware" to finish; through a veth into AF_XDP nothing says so, and
//! the next kernel to look drops the segment (DESIGN.md). So every such
//! TCP/UDP packet is looked at once here:
//! - the field holds the pseudo-header sum: the checksum is finished;
//! - the checksum is right: the frame goes on as it is;
//! - anything else: dropped (`bad-l4-checksum`), rather than handed to a
//!   container whose kernel would drop it without a word.
//!
//! Finishing a frame whose complete checksum happens to equal the
//! pseudo-header sum rewrites the same value, so the first test needs no
//! second one. Fragments are left alone: their checksum covers the whole
//! datagram.

use etherparse::checksum::Sum16BitWords;
use smoltcp::wire::{EthernetProtocol, IpProtocol, Ipv4Packet, Ipv6Packet};

use super::ingress::Ingress;
use crate::offload::finish_checksum;
use crate::packet::{Batch, Frame};
use crate::stats::DropReason;
use crate::verdict::Verdict;
use vswitch_vxlan::ETH_HDR_LEN;

/// The stage: the frames of a bridge member without a virtio-net header
/// (AF_XDP) settled. An uplink's are settled once the tunnel stage knows
/// whether they are a tunnel's (whose checksums are settled when opened),
/// and a TAP's header says what it left undone.
#[inline]
pub fn pass(batch: &mut Batch, at: &Ingress<'_>, verdicts: &mut [Verdict]) {
    if at.input.vnet_hdr || at.uplink() {
        return;
    }
    for (frame, out) in batch.frames_mut().iter_mut().zip(verdicts.iter_mut()) {
        if matches!(out, Verdict::L2) {
            if let Err(reason) = settle_frame(frame) {
                *out = Verdict::Drop(reason);
            }
        }
    }
}

/// [`settle`] for a classified frame's own IP packet; `csum_valid` is set
/// when the checksum is known good now.
pub fn settle_frame(frame: &mut Frame) -> Result<(), DropReason> {
    let (Some(eth_at), Some(ethertype)) = (frame.meta.eth_offset, frame.meta.ethertype) else {
        return Ok(());
    };
    if settle(frame, usize::from(eth_at) + ETH_HDR_LEN, ethertype)? != L4Sum::NotChecked {
        frame.meta.csum_valid = true;
    }
    Ok(())
}

/// What was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4Sum {
    /// Not TCP/UDP over IPv4/IPv6 unfragmented, or a UDP packet without a
    /// checksum: nothing to check.
    NotChecked,
    Valid,
    /// It held the pseudo-header sum and is complete now.
    Finished,
}

/// Checks (and if need be finishes) the L4 checksum of the IP packet at
/// `ip_at`, an Ethernet payload of type `ethertype`.
pub fn settle(frame: &mut Frame, ip_at: usize, ethertype: EthernetProtocol) -> Result<L4Sum, DropReason> {
    let Some(found) = locate(frame.data().get(ip_at..).unwrap_or(&[]), ethertype) else {
        return Ok(L4Sum::NotChecked);
    };
    let data = frame.data();
    let Some(l4) = data.get(ip_at + found.l4_at..ip_at + found.l4_at + found.l4_len) else {
        return Ok(L4Sum::NotChecked);
    };
    let field = u16::from_ne_bytes([l4[found.field], l4[found.field + 1]]);
    if found.udp && field == 0 && !found.v6 {
        return Ok(L4Sum::NotChecked);
    }
    // Sum16BitWords adds native-endian words: its sums compare with the
    // field as it lies in memory.
    let seed = !found.pseudo.ones_complement();
    if field == seed {
        finish_checksum(&mut frame.data_mut()[ip_at..], found.l4_at, found.field);
        return Ok(L4Sum::Finished);
    }
    let total = found.pseudo.add_slice(l4);
    if total.ones_complement() == 0 {
        Ok(L4Sum::Valid)
    } else {
        Err(DropReason::BadL4Checksum)
    }
}

/// Where a TCP/UDP header sits in an IP packet, and its pseudo-header sum.
struct Found {
    l4_at: usize,
    l4_len: usize,
    /// Offset of the checksum field in the L4 header.
    field: usize,
    udp: bool,
    v6: bool,
    pseudo: Sum16BitWords,
}

fn locate(packet: &[u8], ethertype: EthernetProtocol) -> Option<Found> {
    let (l4_at, l4_len, proto, v6, pseudo) = match ethertype {
        EthernetProtocol::Ipv4 => {
            let ip = Ipv4Packet::new_checked(packet).ok()?;
            if ip.more_frags() || ip.frag_offset() != 0 {
                return None;
            }
            let hl = usize::from(ip.header_len());
            let len = usize::from(ip.total_len()).checked_sub(hl)?;
            let proto = ip.next_header();
            let pseudo = Sum16BitWords::new()
                .add_4bytes(ip.src_addr().octets())
                .add_4bytes(ip.dst_addr().octets())
                .add_2bytes([0, u8::from(proto)])
                .add_2bytes((len as u16).to_be_bytes());
            (hl, len, proto, false, pseudo)
        }
        EthernetProtocol::Ipv6 => {
            let ip = Ipv6Packet::new_checked(packet).ok()?;
            let len = usize::from(ip.payload_len());
            let proto = ip.next_header();
            let pseudo = Sum16BitWords::new()
                .add_16bytes(ip.src_addr().octets())
                .add_16bytes(ip.dst_addr().octets())
                .add_4bytes((len as u32).to_be_bytes())
                .add_4bytes([0, 0, 0, u8::from(proto)]);
            (40, len, proto, true, pseudo)
        }
        _ => return None,
    };
    let (field, min_len, udp) = match proto {
        IpProtocol::Tcp => (16, 20, false),
        IpProtocol::Udp => (6, 8, true),
        _ => return None,
    };
    (l4_len >= min_len && l4_at + l4_len <= packet.len()).then_some(Found {
        l4_at,
        l4_len,
        field,
        udp,
        v6,
        pseudo,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::PacketPool;
    use etherparse::PacketBuilder;

    fn tcp_frame() -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 80, 7, 1000)
            .write(&mut out, &[0x5a; 333])
            .expect("frame");
        out
    }

    fn udp_v6_frame() -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv6([0xfd; 16], [0xfe; 16], 64)
            .udp(5353, 53)
            .write(&mut out, &[7; 101])
            .expect("frame");
        out
    }

    fn settle_bytes(bytes: &[u8], ethertype: EthernetProtocol) -> (Result<L4Sum, DropReason>, Vec<u8>) {
        let mut pool = PacketPool::new(1);
        let mut f = pool.alloc().expect("frame");
        f.fill(bytes);
        let r = settle(&mut f, 14, ethertype);
        (r, f.data().to_vec())
    }

    /// The checksum field replaced by the pseudo-header sum, as a sender
    /// with offload on leaves it.
    fn seeded(frame: &[u8], field_at: usize, pseudo: &[u8]) -> Vec<u8> {
        let mut v = frame.to_vec();
        let seed = !Sum16BitWords::new().add_slice(pseudo).ones_complement();
        v[field_at..field_at + 2].copy_from_slice(&seed.to_ne_bytes());
        v
    }

    #[test]
    fn complete_checksums_pass_untouched() {
        let f = tcp_frame();
        assert_eq!(settle_bytes(&f, EthernetProtocol::Ipv4), (Ok(L4Sum::Valid), f.clone()));
        let f6 = udp_v6_frame();
        assert_eq!(
            settle_bytes(&f6, EthernetProtocol::Ipv6),
            (Ok(L4Sum::Valid), f6.clone())
        );
    }

    #[test]
    fn pseudo_header_seeds_are_finished() {
        let f = tcp_frame();
        let len = (f.len() - 34) as u16;
        let mut pseudo = vec![10, 0, 0, 1, 10, 0, 0, 2, 0, 6];
        pseudo.extend_from_slice(&len.to_be_bytes());
        let partial = seeded(&f, 34 + 16, &pseudo);
        assert_ne!(partial, f);
        assert_eq!(settle_bytes(&partial, EthernetProtocol::Ipv4), (Ok(L4Sum::Finished), f));

        let f6 = udp_v6_frame();
        let len6 = (f6.len() - 54) as u32;
        let mut pseudo6 = vec![0xfd; 16];
        pseudo6.extend_from_slice(&[0xfe; 16]);
        pseudo6.extend_from_slice(&len6.to_be_bytes());
        pseudo6.extend_from_slice(&[0, 0, 0, 17]);
        let partial6 = seeded(&f6, 54 + 6, &pseudo6);
        assert_eq!(
            settle_bytes(&partial6, EthernetProtocol::Ipv6),
            (Ok(L4Sum::Finished), f6)
        );
    }

    #[test]
    fn wrong_checksums_are_dropped() {
        let mut f = tcp_frame();
        f[60] ^= 0x10; // payload byte
        assert_eq!(
            settle_bytes(&f, EthernetProtocol::Ipv4).0,
            Err(DropReason::BadL4Checksum)
        );
    }

    #[test]
    fn what_cannot_be_checked_is_left_alone() {
        // UDP over IPv4 without a checksum.
        let mut out = Vec::new();
        PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(1, 2)
            .write(&mut out, &[1; 20])
            .expect("frame");
        out[34 + 6] = 0;
        out[34 + 7] = 0;
        assert_eq!(
            settle_bytes(&out, EthernetProtocol::Ipv4),
            (Ok(L4Sum::NotChecked), out.clone())
        );
        // A fragment: its checksum covers the whole datagram.
        let mut frag = tcp_frame();
        frag[14 + 6] |= 0x20;
        frag[60] ^= 0x10;
        assert_eq!(settle_bytes(&frag, EthernetProtocol::Ipv4).0, Ok(L4Sum::NotChecked));
        // Truncated: the IP length says more than there is.
        let f = tcp_frame();
        assert_eq!(settle_bytes(&f[..60], EthernetProtocol::Ipv4).0, Ok(L4Sum::NotChecked));
        // ARP.
        assert_eq!(settle_bytes(&f, EthernetProtocol::Arp).0, Ok(L4Sum::NotChecked));
    }
}
