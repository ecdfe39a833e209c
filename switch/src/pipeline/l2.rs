//! L2: learn the source, choose the output by destination.
//!
//! Decides only; the runner in `pipeline` moves the frames. Learning happens
//! on every valid frame, including the ones flooded or dropped for their
//! destination, as a bridge does.

use std::net::Ipv4Addr;

use smoltcp::wire::{EthernetAddress, EthernetFrame, EthernetProtocol};

use super::ingress::Ingress;
use super::memo::Memo;
use crate::packet::{Batch, Frame};
use crate::snapshot::{BridgeSlot, Snapshot};
use crate::stats::DropReason;
use crate::tables::fdb::{Dest, PortHandle};
use crate::verdict::{FloodFrom, Verdict};

/// 01:80:c2:00:00:00 - 01:80:c2:00:00:0f: link-local groups (STP, pause,
/// LACP, 802.1X, LLDP) that IEEE 802.1D bridges never forward.
fn is_reserved_group(mac: &EthernetAddress) -> bool {
    let b = mac.as_bytes();
    b[..5] == [0x01, 0x80, 0xc2, 0x00, 0x00] && b[5] & 0xf0 == 0
}

/// Where a frame entered the bridge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A local port.
    Port(PortHandle),
    /// The tunnel, from remote VTEP `vtep`; `learn`: record the source MAC
    /// behind it.
    Tunnel { vtep: Ipv4Addr, learn: bool },
}

/// The stage: every frame of a member port that classify and the guard
/// let through (`Verdict::L2`) is learned and forwarded. True when some
/// frame goes on to the router.
#[inline]
pub fn pass(batch: &Batch, at: &Ingress<'_>, verdicts: &mut [Verdict]) -> bool {
    let Some(bridge) = at.snap.bridge(at.bridge) else {
        return false;
    };
    let mut routed = false;
    let from = Source::Port(PortHandle {
        slot: at.in_slot,
        uid: at.input.port.uid,
    });
    for (frame, out) in batch.frames().iter().zip(verdicts.iter_mut()) {
        if matches!(out, Verdict::L2) {
            *out = decide(at.snap, at.bridge, bridge, from, frame, at.now_ms, &at.memo);
            routed |= matches!(out, Verdict::L3);
        }
    }
    routed
}

/// Learns the source and decides where the frame goes. On a routed bridge,
/// frames from local ports for the gateway MAC, and their broadcast ARP, go
/// to L3; from the tunnel they do not (each host's gateway answers its own
/// containers: gateway traffic never crosses the tunnel). A destination
/// behind a remote VTEP (learned, or `fdb-add`) goes to the tunnel; the
/// tunnel never sends back into itself (split horizon). `memo`: what the
/// frames ahead in the batch learned and looked up on this bridge.
///
/// Inlined: its verdict, returned through memory, came back as a copy
/// whose wide load waited for the narrow stores that built it (a store-
/// forwarding stall on every frame; criterion and perf annotate).
#[inline(always)]
pub fn decide(
    snap: &Snapshot,
    bridge_slot: u32,
    bridge: &BridgeSlot,
    from: Source,
    frame: &Frame,
    now_ms: u64,
    memo: &Memo,
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
    let in_port = match from {
        Source::Port(handle) => Some(Dest::Port(handle)),
        Source::Tunnel { vtep, learn } => learn.then_some(Dest::Vtep(vtep)),
    };
    if let Some(handle) = in_port {
        memo.learn(&bridge.fdb, src.0, handle, now_ms);
    }
    if let Some(l3) = &bridge.l3 {
        let arp_broadcast = dst.is_broadcast() && ethertype == EthernetProtocol::Arp;
        match from {
            Source::Port(_) if dst.0 == l3.gateway_mac || arp_broadcast => return Verdict::L3,
            Source::Tunnel { .. } if dst.0 == l3.gateway_mac => return Verdict::Drop(DropReason::ToGateway),
            _ => {}
        }
    }
    let flood = Verdict::Flood {
        bridge: bridge_slot,
        from: match from {
            Source::Port(handle) => FloodFrom::Port(handle.slot),
            Source::Tunnel { .. } => FloodFrom::Tunnel,
        },
    };
    if dst.is_multicast() {
        if is_reserved_group(&dst) {
            return Verdict::Drop(DropReason::ReservedGroup);
        }
        return flood;
    }
    let remote = bridge.tunnel.as_ref().and_then(|t| t.statics.get(&dst.0).copied());
    match (remote, from) {
        (Some(_), Source::Tunnel { .. }) => return Verdict::Drop(DropReason::TunnelToTunnel),
        (Some(vtep), Source::Port(_)) => {
            return Verdict::Tunnel {
                bridge: bridge_slot,
                vtep,
            }
        }
        (None, _) => {}
    }
    let Some(out) = memo.lookup(&bridge.fdb, dst.0, now_ms) else {
        return flood;
    };
    match (out, from) {
        (Dest::Port(out), Source::Port(p)) if out == p => Verdict::Drop(DropReason::SameInPort),
        (Dest::Port(out), _) if snap.is_usable(out) => Verdict::Forward(out.slot),
        (Dest::Vtep(_), Source::Tunnel { .. }) => Verdict::Drop(DropReason::TunnelToTunnel),
        (Dest::Vtep(vtep), Source::Port(_)) if bridge.tunnel.is_some() => Verdict::Tunnel {
            bridge: bridge_slot,
            vtep,
        },
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
