//! Tunnel in: a frame on an uplink that is VXLAN for one of the tunnels it
//! carries is checked and decapsulated (`vswitch_vxlan::decapsulate`), and
//! its inner frame is switched in the tunnel's bridge as if it came in on a
//! port (`l2::Source::Tunnel`: its source learned behind the remote VTEP);
//! a malformed one is dropped with its reason, counted on the uplink. The
//! uplink's other traffic goes on to the router (`Verdict::L3`).
//!
//! The way out is the encapsulate stage (`encap`).

use smoltcp::wire::{EthernetFrame, EthernetProtocol};
use vswitch_vxlan::{decapsulate, Expect, Malformed, ETH_HDR_LEN};

use super::ingress::Ingress;
use super::l2::{self, Source};
use super::memo::Memo;
use super::{classify, l4sum};
use crate::packet::{Batch, Frame, GsoType, VnetHdr, VNET_HDR_LEN};
use crate::stats::DropReason;
use crate::verdict::Verdict;

impl From<Malformed> for DropReason {
    fn from(m: Malformed) -> DropReason {
        match m {
            Malformed::Truncated => DropReason::VxlanTruncated,
            Malformed::BadIpv4 => DropReason::VxlanBadIpv4,
            Malformed::Fragment => DropReason::VxlanFragment,
            Malformed::BadUdpLength => DropReason::VxlanBadUdpLength,
            Malformed::BadChecksum => DropReason::VxlanBadChecksum,
            Malformed::BadFlags => DropReason::VxlanBadFlags,
            Malformed::UnknownVni(_) => DropReason::VxlanUnknownVni,
            Malformed::InnerTooShort => DropReason::VxlanInnerTooShort,
        }
    }
}

/// The stage: every frame classified on an uplink is opened when it is a
/// tunnel's, or settled and handed to the router when it is not. True when
/// some frame goes on to the router.
#[inline]
pub fn pass(batch: &mut Batch, at: &Ingress<'_>, verdicts: &mut [Verdict]) -> bool {
    if !at.uplink() {
        return false;
    }
    let mut routed = false;
    let vnet_hdr = at.input.vnet_hdr;
    for (frame, out) in batch.frames_mut().iter_mut().zip(verdicts.iter_mut()) {
        if !matches!(out, Verdict::Underlay) {
            continue;
        }
        *out = from_underlay(frame, at).unwrap_or_else(|| {
            // A device that sent the frame whole vouched for its checksums.
            let settled = if vnet_hdr { Ok(()) } else { l4sum::settle_frame(frame) };
            settled.map_or_else(Verdict::Drop, |()| Verdict::L3)
        });
        routed |= matches!(out, Verdict::L3);
    }
    routed
}

/// A frame received on an uplink: the verdict for its inner frame when it
/// is VXLAN for a tunnel the uplink carries, None when it is not (the
/// uplink's other traffic, routed as before).
pub fn from_underlay(frame: &mut Frame, at: &Ingress<'_>) -> Option<Verdict> {
    let tunnel_gso = matches!(frame.meta.gso, Some(GsoType::UdpTunnel { .. }));
    match decap(frame, at) {
        // A tunnel super-frame for no tunnel of ours: nobody else can take it.
        None if tunnel_gso => Some(Verdict::Drop(DropReason::BadVnetHdr)),
        verdict => verdict,
    }
}

fn decap(frame: &mut Frame, at: &Ingress<'_>) -> Option<Verdict> {
    let up = at.snap.bridge(at.bridge)?.l3.as_ref()?.uplink.as_ref()?;
    if up.tunnels.is_empty() || frame.meta.ethertype != Some(EthernetProtocol::Ipv4) {
        return None;
    }
    let eth_at = usize::from(frame.meta.eth_offset?);
    // A device that vouched for the outer checksum saves us the check.
    let vouched = frame.meta.csum_partial || frame.meta.csum_valid;
    for (i, t) in up.tunnels.iter().enumerate() {
        // One look per port, whatever the number of VNIs on it.
        if up.tunnels[..i].iter().any(|o| o.port == t.port) {
            continue;
        }
        // Checksums are checked below, once we know what they cover.
        let expect = Expect {
            local_ip: up.ip,
            port: t.port,
            verify_csum: false,
        };
        let on_port = |vni| up.tunnels.iter().find(|o| o.port == t.port && o.vni == vni);
        let found = decapsulate(&frame.data()[eth_at..], &expect, |vni| on_port(vni).is_some());
        let d = match found {
            Ok(None) => continue,
            Ok(Some(d)) => d,
            Err(m) => return Some(Verdict::Drop(m.into())),
        };
        if !vouched {
            // Nothing said which checksum, if any, the sender left to the
            // device: the outer UDP one (the inner packet has none), or the
            // inner one, the outer computed over the finished inner packet
            // (Linux's local checksum offload). Inner first, then outer.
            if let Err(reason) = settle_inner(frame, eth_at + d.inner_at) {
                return Some(Verdict::Drop(reason));
            }
            let outer = l4sum::settle(frame, eth_at + ETH_HDR_LEN, EthernetProtocol::Ipv4);
            if outer == Err(DropReason::BadL4Checksum) {
                return Some(Verdict::Drop(DropReason::VxlanBadChecksum));
            }
        }
        let tunnel = on_port(d.vni)?;
        let Some(bridge) = at.snap.bridge(tunnel.bridge) else {
            return Some(Verdict::Drop(DropReason::VxlanUnknownVni));
        };
        if let Err(reason) = strip_outer(frame, eth_at, d.inner_at, d.inner_len) {
            return Some(Verdict::Drop(reason));
        }
        let from = Source::Tunnel {
            vtep: d.vtep,
            learn: tunnel.learn,
        };
        // Another bridge than the batch's, and another source per VTEP:
        // nothing to share with the other frames, but a MAC it learned
        // may be one a routed frame of the batch was sent to.
        let memo = Memo::default();
        let verdict = l2::decide(at.snap, tunnel.bridge, bridge, from, frame, at.now_ms, &memo);
        if memo.changed() {
            at.memo.forget_tables();
        }
        return Some(verdict);
    }
    None
}

/// Checks, and finishes if it was left to the device, the L4 checksum of
/// the inner frame at `inner_eth`.
fn settle_inner(frame: &mut Frame, inner_eth: usize) -> Result<(), DropReason> {
    let ethertype = match frame.data().get(inner_eth..).map(EthernetFrame::new_checked) {
        Some(Ok(eth)) => eth.ethertype(),
        _ => return Ok(()),
    };
    l4sum::settle(frame, inner_eth + ETH_HDR_LEN, ethertype).map(|_| ())
}

/// Makes the frame its inner frame (`inner_len` bytes at `inner_at` from the
/// outer Ethernet header at `eth_at`) and classifies it. What the sender
/// left to the device (a TAP underlay's virtio-net header) goes with the
/// inner frame when it is about it, in a header of its own written over the
/// end of the outer headers: an inner checksum to finish, and a TCP
/// super-frame that crossed the tunnel whole (UDP-tunnel GSO). An outer
/// checksum left to the device is done with.
fn strip_outer(frame: &mut Frame, eth_at: usize, inner_at: usize, inner_len: usize) -> Result<(), DropReason> {
    let vnet = VnetHdr::new_checked(frame.data()).filter(|_| frame.meta.csum_partial);
    let inner_csum = vnet
        .as_ref()
        .map(|h| (usize::from(h.csum_start()), h.csum_offset()))
        .filter(|&(start, _)| start >= inner_at);
    let gso = match frame.meta.gso {
        None => None,
        Some(GsoType::UdpTunnel { inner_v6 }) => {
            let h = vnet.as_ref().ok_or(DropReason::BadVnetHdr)?;
            let hdr_len = usize::from(h.hdr_len()).saturating_sub(inner_at);
            Some((VnetHdr::tcp_gso_type(inner_v6), hdr_len, h.gso_size()))
        }
        // Any other super-frame cannot be a tunnel packet.
        Some(_) => return Err(DropReason::BadVnetHdr),
    };
    let Some((start, offset)) = inner_csum else {
        if gso.is_some() {
            return Err(DropReason::BadVnetHdr);
        }
        frame.advance(eth_at + inner_at);
        frame.set_len(inner_len);
        return classify::classify(frame, false);
    };
    let hdr_at = eth_at + inner_at - VNET_HDR_LEN;
    let mut hdr = [0u8; VNET_HDR_LEN];
    let start = u16::try_from(start - inner_at).map_err(|_| DropReason::BadVnetHdr)?;
    match gso {
        Some((gso_type, hdr_len, gso_size)) => {
            let hdr_len = u16::try_from(hdr_len).map_err(|_| DropReason::BadVnetHdr)?;
            VnetHdr::write_gso(&mut hdr, gso_type, hdr_len, gso_size, (start, offset));
        }
        None => VnetHdr::write_needs_csum(&mut hdr, start, offset),
    }
    frame.data_mut()[hdr_at..eth_at + inner_at].copy_from_slice(&hdr);
    frame.advance(hdr_at);
    frame.set_len(VNET_HDR_LEN + inner_len);
    classify::classify(frame, true)
}
