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

use super::memo::Memo;
use super::NextHop;
use crate::packet::{Frame, Meta};
use crate::snapshot::{BridgeL3, Snapshot, UplinkL3};
use crate::stats::{DropReason, PortCounters};
use crate::tables::neigh::NeighTable;

pub use arp::arp_request;
pub use icmp::frag_needed;
pub use route::{decrement_ttl, deliver_via, from_uplink, process};

const ETH_HDR_LEN: usize = 14;
const IPV4_HDR_LEN: usize = 20;
/// The TTL of packets the gateway writes itself.
const REPLY_TTL: u8 = 64;

/// Where the frame came from.
pub struct Ingress<'a> {
    pub snap: &'a Snapshot,
    pub bridge: u32,
    pub in_slot: u32,
    pub counters: &'a PortCounters,
    pub now_ms: u64,
    /// What the batch's frames already looked up.
    pub memo: Memo,
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
