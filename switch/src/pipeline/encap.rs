//! Tunnel out: frames for a MAC behind a remote VTEP leave inside VXLAN.
//!
//! Three steps, because a frame's outer headers are known before its last
//! hop is, and a port's abilities only at the end:
//! - [`pass`] (a stage of the batch): a frame for a remote VTEP
//!   (`Verdict::Tunnel`) gets its outer headers decided (`meta.encap`: the
//!   VTEP's address, the uplink's address and MAC, a source port from the
//!   inner flow's hash) and goes to the underlay's uplink, or waits for the
//!   next hop's MAC like a routed frame. A flood from a local port is
//!   copied to every remote VTEP (head-end replication); a flood from the
//!   tunnel, or one the router sends, stays local.
//! - [`seal_batch`] (the tx step, once next hops are known): the outer
//!   headers are written in front of the frame, in its headroom, and its
//!   virtio-net header moved in front of them with its offsets shifted: a
//!   checksum left to the device stays left to it; a TCP super-frame goes
//!   whole to a TAP that takes UDP-tunnel GSO (`GsoType::UdpTunnel`). An
//!   outer UDP checksum covers the finished inner frame, so with one the
//!   inner checksum is finished here first.
//! - [`cut`] (the tx step, per port): a super-frame no port can take whole
//!   is cut to the sender's segment size, each piece finished and
//!   encapsulated in a frame of the thread's pool and sent a burst at a
//!   time, in order with the port's other frames.
//!
//! Ports see only frames ready for the wire; none of them knows VXLAN.

use std::net::Ipv4Addr;

use smoltcp::wire::{EthernetProtocol, Ipv4Packet};
use vswitch_vxlan::flow::SOURCE_PORTS;
use vswitch_vxlan::{encapsulate, source_port, Outer, OuterCsum, ETH_HDR_LEN, OVERHEAD};

use super::ingress::Ingress;
use super::l3;
use crate::offload::{finish_checksum, OffloadRequest, Segmenter};
use crate::packet::{Batch, Frame, GsoType, Meta, PacketPool, VnetHdr, BATCH_SIZE, VNET_HDR_LEN};
use crate::snapshot::Snapshot;
use crate::stats::{DropReason, PortCounters};
use crate::verdict::{FloodFrom, NextHop, Verdict};

/// The outer TTL of tunnel packets.
const TUNNEL_TTL: u8 = 64;
/// Largest IPv4 packet: an outer packet must fit, headers included.
const IPV4_MAX_LEN: usize = u16::MAX as usize;

/// Turns the batch's tunnel verdicts into frames for the underlay, and
/// copies floods from local ports to every remote VTEP. Copies go to the
/// end of the batch; when it or the pool is full they are dropped and
/// counted on the ingress port.
#[inline]
pub fn pass(at: &Ingress<'_>, batch: &mut Batch, pool: &mut PacketPool, verdicts: &mut [Verdict]) {
    if !at.snap.tunnels {
        return;
    }
    let (snap, counters, now_ms) = (at.snap, at.counters, at.now_ms);
    for i in 0..batch.len() {
        match verdicts[i] {
            Verdict::Tunnel { bridge, vtep } => {
                let frame = &mut batch.frames_mut()[i];
                verdicts[i] = match decide(snap, bridge, vtep, frame, now_ms) {
                    Verdict::Drop(DropReason::TunnelTooBig) => too_big(frame, bridge, at),
                    verdict => verdict,
                };
            }
            Verdict::Flood {
                bridge,
                from: FloodFrom::Port(except),
            } => {
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
                    let verdict = decide(snap, bridge, vtep, &mut copy, now_ms);
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
fn decide(snap: &Snapshot, bridge: u32, vtep: Ipv4Addr, frame: &mut Frame, now_ms: u64) -> Verdict {
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

/// What the sender left to the device, from a frame's virtio-net header
/// (none for a frame without one), and the header's `hdr_len`.
fn offload_request(frame: &Frame, eth_at: usize) -> (OffloadRequest, u16) {
    match eth_at {
        VNET_HDR_LEN => VnetHdr::new_checked(frame.data())
            .map(|h| (OffloadRequest::from_vnet(&h), h.hdr_len()))
            .unwrap_or_default(),
        _ => (OffloadRequest::default(), 0),
    }
}

/// Seals every tunnel frame of the batch that is about to be sent and can
/// go whole (see [`seal`]); a failure drops the frame, counted on the
/// output port. What cannot go whole keeps `meta.encap` for [`cut`].
pub fn seal_batch(snap: &Snapshot, thread: usize, batch: &mut Batch, verdicts: &mut [Verdict]) {
    for (frame, verdict) in batch.frames_mut().iter_mut().zip(verdicts.iter_mut()) {
        let (Verdict::Forward(slot), Some(outer)) = (*verdict, frame.meta.encap) else {
            continue;
        };
        let Some(out) = snap.port(slot) else { continue };
        if let Err(reason) = seal(frame, &outer, out.port.io.tunnel_gso()) {
            out.port.stats.cell(thread).drop(reason);
            *verdict = Verdict::Consumed;
        }
    }
}

/// Writes `outer` in front of the frame, in its headroom: `Ok(true)`. A
/// TCP super-frame that the output cannot take whole (no UDP-tunnel GSO,
/// an outer checksum to compute, or too long once encapsulated) is left as
/// it is: `Ok(false)`.
pub fn seal(frame: &mut Frame, outer: &Outer, tunnel_gso: bool) -> Result<bool, DropReason> {
    let eth_at = match frame.meta.eth_offset.map(usize::from) {
        Some(at @ (0 | VNET_HDR_LEN)) => at,
        _ => return Err(DropReason::TxError),
    };
    let (request, hdr_len) = offload_request(frame, eth_at);
    let inner_len = frame.len() - eth_at;
    let zero_csum = outer.csum == OuterCsum::Zero;
    let shift = |at: u16| u16::try_from(usize::from(at) + OVERHEAD).map_err(|_| DropReason::TxOversize);
    let mut hdr = [0u8; VNET_HDR_LEN];
    let mut gso = None;
    match (request.gso, request.csum) {
        (None, None) => {}
        (None, Some((start, offset))) if zero_csum => VnetHdr::write_needs_csum(&mut hdr, shift(start)?, offset),
        (None, Some((start, offset))) => {
            finish_checksum(&mut frame.data_mut()[eth_at..], usize::from(start), usize::from(offset));
        }
        (Some(inner), Some((start, offset)))
            if tunnel_gso && zero_csum && inner_len + OVERHEAD - ETH_HDR_LEN <= IPV4_MAX_LEN =>
        {
            let Some(gso_type) = VnetHdr::tunnel_gso_type(inner) else {
                return Ok(false);
            };
            let csum = (shift(start)?, offset);
            VnetHdr::write_gso(&mut hdr, gso_type, shift(hdr_len)?, request.gso_size, csum);
            gso = Some(GsoType::UdpTunnel {
                inner_v6: inner == GsoType::TcpV6,
            });
        }
        (Some(_), _) => return Ok(false),
    }
    if !frame.push_front(OVERHEAD) {
        return Err(DropReason::TxError);
    }
    let data = frame.data_mut();
    if eth_at == VNET_HDR_LEN {
        data[..VNET_HDR_LEN].copy_from_slice(&hdr);
    }
    encapsulate(&mut data[eth_at..], outer).map_err(|_| DropReason::TxOversize)?;
    frame.meta = Meta {
        gso,
        csum_partial: hdr[0] & VnetHdr::F_NEEDS_CSUM != 0,
        ..Meta::generated(EthernetProtocol::Ipv4)
    };
    frame.meta.eth_offset = Some(eth_at as u16);
    Ok(true)
}

/// Cuts a tunnel super-frame into segments, each finished and sealed in a
/// frame of `pool`, gathered in `pieces` and handed to `send` a burst at a
/// time. What fails is dropped and counted on `counters`, the output
/// port's.
pub fn cut(
    frame: &Frame,
    outer: &Outer,
    pool: &mut PacketPool,
    pieces: &mut Batch,
    counters: &PortCounters,
    mut send: impl FnMut(&Batch),
) {
    let Some(eth_at) = frame.meta.eth_offset.map(usize::from) else {
        return counters.drop(DropReason::TxError);
    };
    let (request, _) = offload_request(frame, eth_at);
    let mut segments = match Segmenter::new(&frame.data()[eth_at..], request) {
        Ok(s) => s,
        Err(_) => return counters.drop(DropReason::TxSegmentError),
    };
    loop {
        let Some(mut piece) = pool.alloc() else {
            counters.drop(DropReason::NoBuffer);
            break;
        };
        let space = piece.rx_space();
        let written = match segments.next_into(&mut space[OVERHEAD..]) {
            None => {
                pool.free(piece);
                break;
            }
            Some(Err(_)) => Err(DropReason::TxSegmentError),
            Some(Ok(n)) => encapsulate(&mut space[..OVERHEAD + n], outer)
                .map(|()| OVERHEAD + n)
                .map_err(|_| DropReason::TxOversize),
        };
        let len = match written {
            Ok(len) => len,
            Err(reason) => {
                pool.free(piece);
                counters.drop(reason);
                break;
            }
        };
        piece.set_len(len);
        piece.meta = Meta::generated(EthernetProtocol::Ipv4);
        if let Err(piece) = pieces.push(piece) {
            pool.free(piece);
        }
        if pieces.len() == BATCH_SIZE {
            send(pieces);
            pieces.release(pool);
        }
    }
    if !pieces.is_empty() {
        send(pieces);
        pieces.release(pool);
    }
    if request.gso.is_some() {
        counters.tx_gso_packets.add(1);
    }
}
