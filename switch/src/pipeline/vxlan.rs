//! The VXLAN stage: a bridge's tunnel as one more member of the bridge.
//!
//! In: a frame on an uplink that is VXLAN for one of the tunnels it carries
//! is checked and decapsulated (`vswitch_vxlan::decapsulate`), and its
//! inner frame is switched in the tunnel's bridge as if it came in on a
//! port (`l2::From::Tunnel`: its source learned behind the remote VTEP);
//! a malformed one is dropped with its reason, counted on the uplink.
//!
//! Out: a frame for a MAC behind a remote VTEP (`Verdict::Tunnel`) gets its
//! outer headers decided here (`meta.encap`: VTEP address, the uplink's
//! address and MAC, a source port from the inner flow's hash) and goes to
//! the underlay's uplink, or waits for the next hop's MAC like a routed
//! frame. The uplink's port writes the headers in front of the frame, or of
//! each segment when it has to cut a TCP super-frame. A flood from a local
//! port is copied to every remote VTEP (head-end replication); a flood from
//! the tunnel, or one the gateway sends, stays local.

use smoltcp::wire::{EthernetFrame, EthernetProtocol, Ipv4Packet};
use vswitch_vxlan::flow::SOURCE_PORTS;
use vswitch_vxlan::{decapsulate, source_port, Expect, Malformed, Outer, OuterCsum, ETH_HDR_LEN};

use super::l2::{self, Source};
use super::l3::{self, Ingress};
use super::memo::Memo;
use super::{classify, l4sum, NextHop, Verdict};
use crate::packet::{Batch, Frame, GsoType, PacketPool, VnetHdr, BATCH_CAPACITY, VNET_HDR_LEN};
use crate::snapshot::Snapshot;
use crate::stats::DropReason;
use crate::tables::fdb::TUNNEL_SLOT;

/// The outer TTL of tunnel packets.
const TUNNEL_TTL: u8 = 64;

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

/// Turns the batch's tunnel verdicts into frames for the underlay, and
/// copies floods from local ports to every remote VTEP. Copies go to the
/// end of the batch; when it or the pool is full they are dropped and
/// counted on the ingress port.
pub fn to_tunnels(
    at: &Ingress<'_>,
    batch: &mut Batch,
    pool: &mut PacketPool,
    verdicts: &mut [Verdict; BATCH_CAPACITY],
) {
    let (snap, counters, now_ms) = (at.snap, at.counters, at.now_ms);
    for i in 0..batch.len() {
        match verdicts[i] {
            Verdict::Tunnel { bridge, vtep } => {
                let frame = &mut batch.frames_mut()[i];
                verdicts[i] = match encap(snap, bridge, vtep, frame, now_ms) {
                    Verdict::Drop(DropReason::TunnelTooBig) => too_big(frame, bridge, at),
                    verdict => verdict,
                };
            }
            Verdict::Flood {
                bridge,
                except: Some(except),
            } if except != TUNNEL_SLOT => {
                let Some(br) = snap.bridge(bridge) else { continue };
                let Some(tunnel) = &br.tunnel else { continue };
                let mut sent = false;
                for &vtep in &tunnel.remotes {
                    let Some(mut copy) = pool.alloc() else {
                        counters.drop(DropReason::NoBuffer);
                        break;
                    };
                    let original = &batch.frames()[i];
                    copy.fill(original.data());
                    copy.meta = original.meta;
                    let verdict = encap(snap, bridge, vtep, &mut copy, now_ms);
                    match batch.push_generated(copy) {
                        Ok(()) => {
                            verdicts[batch.len() - 1] = verdict;
                            sent = true;
                        }
                        Err(copy) => {
                            pool.free(copy);
                            counters.drop(DropReason::NoBuffer);
                            break;
                        }
                    }
                }
                // Flooded to remotes only: not a frame without destination.
                if sent && br.ports.iter().all(|&p| p == except) {
                    verdicts[i] = Verdict::Consumed;
                }
            }
            _ => {}
        }
    }
}

/// A frame too large for the tunnel: dropped and counted, and when it is
/// IPv4 with DF set on a bridge with a gateway, answered with ICMP
/// "fragmentation needed" carrying the overlay's MTU, from the gateway.
fn too_big(frame: &mut Frame, bridge: u32, at: &Ingress<'_>) -> Verdict {
    let Some(br) = at.snap.bridge(bridge) else {
        return Verdict::Drop(DropReason::TunnelTooBig);
    };
    let (Some(l3), Some(tunnel), Some(offset)) = (&br.l3, &br.tunnel, frame.meta.eth_offset.map(usize::from)) else {
        return Verdict::Drop(DropReason::TunnelTooBig);
    };
    let dont_frag = frame.meta.ethertype == Some(EthernetProtocol::Ipv4)
        && frame
            .data()
            .get(offset + ETH_HDR_LEN..)
            .and_then(|ip| Ipv4Packet::new_checked(ip).ok())
            .is_some_and(|ip| ip.dont_frag());
    if !dont_frag {
        return Verdict::Drop(DropReason::TunnelTooBig);
    }
    at.counters.drop(DropReason::TunnelTooBig);
    let mtu = u16::try_from(tunnel.max_inner - ETH_HDR_LEN).unwrap_or(u16::MAX);
    l3::frag_needed(frame, offset, l3.me(), mtu, at)
}

/// Decides the outer headers of a frame for `vtep` through `bridge`'s
/// tunnel, and where the frame goes now: the underlay's uplink, or held
/// until the next hop toward the VTEP answers ARP.
fn encap(snap: &Snapshot, bridge: u32, vtep: std::net::Ipv4Addr, frame: &mut Frame, now_ms: u64) -> Verdict {
    let Some(tunnel) = snap.bridge(bridge).and_then(|b| b.tunnel.as_ref()) else {
        return Verdict::Drop(DropReason::NoRoute);
    };
    let uplink = snap
        .bridge(tunnel.underlay)
        .and_then(|b| b.l3.as_ref()?.uplink.as_ref());
    let Some(up) = uplink else {
        return Verdict::Drop(DropReason::NoRoute);
    };
    let Some(eth_at) = frame.meta.eth_offset.map(usize::from) else {
        return Verdict::Drop(DropReason::Malformed);
    };
    let inner = &frame.data()[eth_at..];
    // A TCP super-frame is cut to the segment size the sender chose.
    if frame.meta.gso.is_none() && inner.len() > tunnel.max_inner {
        return Verdict::Drop(DropReason::TunnelTooBig);
    }
    let hop = if up.net.contains(vtep) { vtep } else { up.gw };
    let mut outer = Outer {
        src_mac: up.mac,
        dst_mac: [0; 6],
        src_ip: up.ip,
        dst_ip: vtep,
        src_port: source_port(inner, SOURCE_PORTS),
        dst_port: tunnel.port,
        vni: tunnel.vni,
        ttl: TUNNEL_TTL,
        ident: 0,
        dont_frag: true,
        csum: if tunnel.udp_csum {
            OuterCsum::Full
        } else {
            OuterCsum::Zero
        },
    };
    let verdict = match up.neigh.lookup(hop, now_ms) {
        Some(mac) => {
            outer.dst_mac = mac;
            Verdict::Forward(up.slot)
        }
        None => Verdict::Hold {
            via: NextHop::Uplink(tunnel.underlay),
            ip: hop,
        },
    };
    frame.meta.encap = Some(outer);
    verdict
}
