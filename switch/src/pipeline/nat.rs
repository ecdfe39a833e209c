//! The NAT stage: between routing decisions, a routed IPv4 packet is looked
//! up in the connection table and rewritten the way its connection says.
//!
//! Called from `l3` only for bridges with NAT configured (masquerade or
//! published ports), and only for packets that cross the uplink or are
//! addressed to it (hairpin). New connections are created only when a
//! policy applies; other routed traffic is not tracked.

use vswitch_nat::rewrite::{rewrite_ipv4, L4Checksum, Rewrite};
use vswitch_nat::table::{ConnTable, CtDrop, Seen, Tracked};
use vswitch_nat::translate;

use crate::packet::{Frame, VnetHdr, VNET_HDR_LEN};
use crate::stats::DropReason;

impl From<CtDrop> for DropReason {
    fn from(d: CtDrop) -> DropReason {
        match d {
            CtDrop::Invalid => DropReason::CtInvalid,
            CtDrop::OutOfWindow => DropReason::CtOutOfWindow,
            CtDrop::TableFull => DropReason::CtTableFull,
            CtDrop::PortsExhausted => DropReason::NatPortsExhausted,
        }
    }
}

/// The connection tuple of the IPv4 packet at `ip_at` in zone `zone`, or
/// None for packets NAT cannot translate (fragments, no ports, ICMP other
/// than echo).
pub fn seen(frame: &Frame, ip_at: usize, zone: u16) -> Result<Option<Seen>, DropReason> {
    let packet = frame.data().get(ip_at..).ok_or(DropReason::Malformed)?;
    vswitch_nat::parse::seen(packet, zone).map_err(|_| DropReason::Malformed)
}

/// Rewrites the packet as its connection says for its direction.
pub fn apply(frame: &mut Frame, ip_at: usize, seen: &Seen, tracked: &Tracked) -> Result<(), DropReason> {
    let rw = translate::rewrite_for(tracked, &seen.tuple);
    if rw == Rewrite::default() {
        return Ok(());
    }
    // Offloaded frames (virtio-net "needs checksum", GSO) carry a seed.
    let seed = ip_at >= VNET_HDR_LEN
        && frame.meta.eth_offset == Some(VNET_HDR_LEN as u16)
        && VnetHdr::new_checked(frame.data()).is_some_and(|h| h.flags() & VnetHdr::F_NEEDS_CSUM != 0);
    let mode = if seed { L4Checksum::Seed } else { L4Checksum::Complete };
    rewrite_ipv4(&mut frame.data_mut()[ip_at..], &rw, mode).map_err(|_| DropReason::Malformed)
}

/// Translates an ICMP error about a tracked connection (see
/// [`translate::icmp_error`]). Ok(true) when the packet was such an error
/// and was rewritten.
pub fn icmp_error(frame: &mut Frame, ip_at: usize, zone: u16, ct: &ConnTable, now_ms: u64) -> Result<bool, DropReason> {
    let packet = frame.data_mut().get_mut(ip_at..).ok_or(DropReason::Malformed)?;
    let rewritten = translate::icmp_error(packet, zone, ct, now_ms).map_err(|_| DropReason::Malformed)?;
    if rewritten {
        frame.meta.gso = None;
    }
    Ok(rewritten)
}
