//! Source guard: a port vswitchd addressed (an `attach` lease, a runtime's
//! endpoint) speaks only as itself. Its frames must carry its own MAC;
//! IPv4 from it must carry its leased address (or none: 0.0.0.0, as DHCP
//! and ARP probes do); ARP from it must name its own MAC and address as
//! the sender. Anything else is dropped and counted (`spoofed-src`,
//! `spoofed-arp`) before learning, so a container can neither take a
//! sibling's address nor poison the gateway's or a sibling's ARP table.
//! Other ethertypes (IPv6 link-local, LLDP) pass with the MAC check.
//!
//! Ports made with `add-port`, or attached with `--allow-any-src` (a router
//! or VMs behind the port), have no guard. Runs after classify, which
//! checked the Ethernet header's length.

use std::net::Ipv4Addr;

use smoltcp::wire::{ArpPacket, EthernetFrame, EthernetProtocol, Ipv4Packet};

use super::ingress::Ingress;
use crate::packet::{Batch, Frame};
use crate::snapshot::SourceGuard;
use crate::stats::DropReason;
use crate::verdict::Verdict;

/// The stage: every classified frame of a guarded port checked.
#[inline]
pub fn pass(batch: &Batch, at: &Ingress<'_>, verdicts: &mut [Verdict]) {
    let Some(guard) = &at.input.guard else {
        return;
    };
    for (frame, out) in batch.frames().iter().zip(verdicts.iter_mut()) {
        if matches!(out, Verdict::L2 | Verdict::Underlay) {
            if let Err(reason) = check(frame, guard) {
                *out = Verdict::Drop(reason);
            }
        }
    }
}

#[inline]
pub fn check(frame: &Frame, guard: &SourceGuard) -> Result<(), DropReason> {
    let offset = frame.meta.eth_offset.map_or(0, usize::from);
    let eth = EthernetFrame::new_checked(&frame.data()[offset..]).map_err(|_| DropReason::Malformed)?;
    if eth.src_addr().0 != guard.mac {
        return Err(DropReason::SpoofedSrc);
    }
    match eth.ethertype() {
        EthernetProtocol::Ipv4 => {
            let ip = Ipv4Packet::new_checked(eth.payload()).map_err(|_| DropReason::Malformed)?;
            let src = ip.src_addr();
            if src == guard.ip || src.is_unspecified() {
                Ok(())
            } else {
                Err(DropReason::SpoofedSrc)
            }
        }
        EthernetProtocol::Arp => {
            let arp = ArpPacket::new_checked(eth.payload()).map_err(|_| DropReason::Malformed)?;
            let sender_ip = <[u8; 4]>::try_from(arp.source_protocol_addr()).map(Ipv4Addr::from);
            let sender_ok = sender_ip.is_ok_and(|ip| ip == guard.ip || ip.is_unspecified());
            if arp.source_hardware_addr() == guard.mac && sender_ok {
                Ok(())
            } else {
                Err(DropReason::SpoofedArp)
            }
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::PacketPool;
    use etherparse::PacketBuilder;

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
    const GUARD: SourceGuard = SourceGuard {
        mac: MAC,
        ip: Ipv4Addr::new(10, 1, 0, 2),
    };

    fn frame(bytes: &[u8]) -> Frame {
        let mut pool = PacketPool::new(1);
        let mut f = pool.alloc().expect("a buffer");
        f.fill(bytes);
        f.meta.eth_offset = Some(0);
        f
    }

    fn udp(src_mac: [u8; 6], src: [u8; 4]) -> Frame {
        let mut out = Vec::new();
        PacketBuilder::ethernet2(src_mac, [2, 0, 0, 0, 0, 1])
            .ipv4(src, [10, 1, 0, 1], 64)
            .udp(1000, 53)
            .write(&mut out, b"hi")
            .expect("build");
        frame(&out)
    }

    fn arp(src_mac: [u8; 6], sender_mac: [u8; 6], sender_ip: [u8; 4]) -> Frame {
        let mut out = vec![0xff; 6];
        out.extend_from_slice(&src_mac);
        out.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 2]);
        out.extend_from_slice(&sender_mac);
        out.extend_from_slice(&sender_ip);
        out.extend_from_slice(&[0; 6]);
        out.extend_from_slice(&[10, 1, 0, 1]);
        frame(&out)
    }

    #[test]
    fn a_guarded_port_speaks_only_as_itself() {
        assert_eq!(check(&udp(MAC, [10, 1, 0, 2]), &GUARD), Ok(()));
        assert_eq!(
            check(&udp(MAC, [0, 0, 0, 0]), &GUARD),
            Ok(()),
            "DHCP-style unspecified source"
        );
        assert_eq!(
            check(&udp(MAC, [10, 1, 0, 3]), &GUARD),
            Err(DropReason::SpoofedSrc),
            "a sibling's address"
        );
        assert_eq!(
            check(&udp([2, 0, 0, 0, 0, 9], [10, 1, 0, 2]), &GUARD),
            Err(DropReason::SpoofedSrc),
            "another MAC"
        );
        assert_eq!(check(&arp(MAC, MAC, [10, 1, 0, 2]), &GUARD), Ok(()));
        assert_eq!(check(&arp(MAC, MAC, [0, 0, 0, 0]), &GUARD), Ok(()), "an ARP probe");
        assert_eq!(
            check(&arp(MAC, MAC, [10, 1, 0, 3]), &GUARD),
            Err(DropReason::SpoofedArp),
            "answers for a sibling"
        );
        assert_eq!(
            check(&arp(MAC, [2, 0, 0, 0, 0, 9], [10, 1, 0, 2]), &GUARD),
            Err(DropReason::SpoofedArp)
        );
        // Cut short after the Ethernet header: malformed, not waved through.
        let mut short = udp(MAC, [10, 1, 0, 2]);
        short.set_len(20);
        assert_eq!(check(&short, &GUARD), Err(DropReason::Malformed));
    }
}
