//! L3: the gateway of a bridge with a subnet, and the router legs it has.
//!
//! Frames reach this stage when they are addressed to the gateway MAC, or
//! are broadcast ARP on a routed bridge, or arrive on a bridge's uplink. The
//! work is split by what it does:
//! - `route`: routing between linked bridges and the uplink, TTL, next hops;
//! - `arp`: answering and learning ARP, asking for next hops;
//! - `icmp`: the messages the gateway writes itself (echo replies, errors).
//!
//! NAT is its own stage (`pipeline::nat`), called by `route`.
//!
//! Replies (ARP, echo, ICMP errors) are written over the frame that asked,
//! in place: no allocation, and the virtio-net header is dropped from the
//! front since the reply's checksums are complete.
//!
//! Reads the snapshot and the tables; never the control plane or a device.

mod arp;
mod icmp;
mod route;

use std::net::Ipv4Addr;

use smoltcp::wire::{EthernetAddress, EthernetFrame, EthernetProtocol};

use super::ingress::Ingress;
use crate::packet::{Batch, Frame, Meta};
use crate::snapshot::{BridgeL3, Snapshot, UplinkL3};
use crate::stats::DropReason;
use crate::tables::neigh::NeighTable;
use crate::verdict::{NextHop, Verdict};

pub use arp::arp_request;
pub use icmp::frag_needed;
pub use route::{decrement_ttl, deliver_via, from_uplink, process};

const ETH_HDR_LEN: usize = 14;
const IPV4_HDR_LEN: usize = 20;
/// The TTL of packets the gateway writes itself.
const REPLY_TTL: u8 = 64;

/// The stage: every frame for the router (`Verdict::L3`): from a bridge
/// member to its gateway, or from the outside on an uplink.
#[inline]
pub fn pass(batch: &mut Batch, at: &Ingress<'_>, verdicts: &mut [Verdict]) {
    for (frame, out) in batch.frames_mut().iter_mut().zip(verdicts.iter_mut()) {
        if matches!(out, Verdict::L3) {
            *out = if at.uplink() {
                from_uplink(frame, at)
            } else {
                process(frame, at)
            };
        }
    }
}

/// Who answers: the gateway, or the uplink's outside address.
#[derive(Clone, Copy)]
pub struct Me {
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
}

impl BridgeL3 {
    pub fn me(&self) -> Me {
        Me {
            ip: self.gateway,
            mac: self.gateway_mac,
        }
    }
}

impl UplinkL3 {
    pub fn me(&self) -> Me {
        Me {
            ip: self.ip,
            mac: self.mac,
        }
    }
}

/// The side of the router a next hop is on: its neighbour table and the
/// address frames leave it from.
pub struct Leg<'a> {
    pub neigh: &'a NeighTable,
    pub me: Me,
}

pub fn leg(snap: &Snapshot, hop: NextHop) -> Option<Leg<'_>> {
    match hop {
        NextHop::Bridge(b) => {
            let l3 = snap.bridge(b)?.l3.as_ref()?;
            Some(Leg {
                neigh: &l3.neigh,
                me: l3.me(),
            })
        }
        NextHop::Uplink(b) => {
            let up = snap.bridge(b)?.l3.as_ref()?.uplink.as_ref()?;
            Some(Leg {
                neigh: &up.neigh,
                me: up.me(),
            })
        }
    }
}

/// The Ethernet header's offset and type, as classify recorded them.
fn ethernet(frame: &Frame) -> Result<(usize, EthernetProtocol), DropReason> {
    match (frame.meta.eth_offset, frame.meta.ethertype) {
        (Some(offset), Some(ethertype)) => Ok((usize::from(offset), ethertype)),
        _ => Err(DropReason::Malformed),
    }
}

/// Makes the frame start at its Ethernet header, for a reply we write over
/// it: the checksums we write are complete, nothing is segmented.
fn strip_to_ethernet(frame: &mut Frame, offset: usize, ethertype: EthernetProtocol) {
    frame.advance(offset);
    frame.meta = Meta::generated(ethertype);
}

/// Rewrites the Ethernet addresses of a routed frame.
pub fn set_macs(frame: &mut Frame, offset: usize, dst: [u8; 6], src: [u8; 6]) {
    let mut eth = EthernetFrame::new_unchecked(&mut frame.data_mut()[offset..]);
    eth.set_dst_addr(EthernetAddress(dst));
    eth.set_src_addr(EthernetAddress(src));
}

#[cfg(test)]
mod tests;
