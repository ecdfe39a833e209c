//! L2: learn the source, choose the output by destination.
//!
//! Decides only; the runner in `pipeline` moves the frames. Learning happens
//! on every valid frame, including the ones flooded or dropped for their
//! destination, as a bridge does.

use smoltcp::wire::{EthernetAddress, EthernetFrame, EthernetProtocol};

use super::Verdict;
use crate::packet::Frame;
use crate::snapshot::{BridgeSlot, Snapshot};
use crate::stats::DropReason;
use crate::tables::fdb::PortHandle;

/// 01:80:c2:00:00:00 - 01:80:c2:00:00:0f: link-local groups (STP, pause,
/// LACP, 802.1X, LLDP) that IEEE 802.1D bridges never forward.
fn is_reserved_group(mac: &EthernetAddress) -> bool {
    let b = mac.as_bytes();
    b[..5] == [0x01, 0x80, 0xc2, 0x00, 0x00] && b[5] & 0xf0 == 0
}

/// Learns the source and decides where the frame goes. On a routed bridge,
/// frames for the gateway MAC and broadcast ARP go to L3.
pub fn decide(
    snap: &Snapshot,
    bridge_slot: u32,
    bridge: &BridgeSlot,
    in_port: PortHandle,
    frame: &Frame,
    now_ms: u64,
) -> Verdict {
    // Classify checked the header's length and recorded its type.
    let (Some(offset), Some(ethertype)) = (frame.meta.eth_offset, frame.meta.ethertype) else {
        return Verdict::Drop(DropReason::Malformed);
    };
    let eth = EthernetFrame::new_unchecked(&frame.data()[usize::from(offset)..]);
    let src = eth.src_addr();
    let dst = eth.dst_addr();
    if !src.is_unicast() || src.as_bytes() == [0u8; 6] {
        return Verdict::Drop(DropReason::BadSrcMac);
    }
    bridge.fdb.learn(src.0, in_port, now_ms);
    if let Some(l3) = &bridge.l3 {
        let arp_broadcast = dst.is_broadcast() && ethertype == EthernetProtocol::Arp;
        if dst.0 == l3.gateway_mac || arp_broadcast {
            return Verdict::L3;
        }
    }
    let flood = Verdict::Flood {
        bridge: bridge_slot,
        except: Some(in_port.slot),
    };
    if dst.is_multicast() {
        if is_reserved_group(&dst) {
            return Verdict::Drop(DropReason::ReservedGroup);
        }
        return flood;
    }
    match bridge.fdb.lookup(dst.0, now_ms) {
        Some(out) if out.slot == in_port.slot && out.uid == in_port.uid => Verdict::Drop(DropReason::SameInPort),
        Some(out) if snap.is_usable(out) => Verdict::Forward(out.slot),
        _ => flood,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_groups() {
        assert!(is_reserved_group(&EthernetAddress([0x01, 0x80, 0xc2, 0, 0, 0])));
        assert!(is_reserved_group(&EthernetAddress([0x01, 0x80, 0xc2, 0, 0, 0x0e])));
        assert!(!is_reserved_group(&EthernetAddress([0x01, 0x80, 0xc2, 0, 0, 0x10])));
        assert!(!is_reserved_group(&EthernetAddress([0x01, 0, 0x5e, 0, 0, 1])));
    }
}
