//! The NAT stage: before the routing decision, a routed IPv4 packet is
//! looked up in the connection table and rewritten the way its connection
//! says; a new connection is tracked only when the bridge's policy
//! ([`policy`]) gives it a translation, and other routed traffic is not
//! tracked at all.
//!
//! Called from `l3::route` only for bridges with NAT configured (masquerade
//! or published ports). The policy and the translation live in `nat/`; this
//! file binds them to frames and to the snapshot's view of a bridge.

use std::net::Ipv4Addr;

use smoltcp::wire::Ipv4Packet;
use vswitch_nat::frag::{FragKey, FragNat};
use vswitch_nat::rewrite::{rewrite_ipv4, L4Checksum, Rewrite};
use vswitch_nat::table::{ConnTable, CtDrop, Nat, Seen, Tracked};
use vswitch_nat::translate;

use super::memo::Memo;
use crate::packet::Frame;
use crate::snapshot::{BridgeL3, NatL3};
use crate::stats::DropReason;

/// Which side of the router a packet came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// From a container of the bridge; `leaves`: it is routed out of the
    /// uplink (no linked bridge holds its destination, nor is it the uplink
    /// address itself).
    Bridge { leaves: bool },
    /// From the outside, through the uplink.
    Uplink,
}

/// The translation a new connection gets, if any:
/// - to a published port of the uplink address: DNAT to the container;
///   from a container (hairpin), also SNAT to the gateway, so the answer
///   comes back through the switch;
/// - leaving through the uplink of a masquerading bridge: SNAT to the
///   uplink address.
pub fn policy(l3: &BridgeL3, nat: &NatL3, side: Side, seen: &Seen, dst: Ipv4Addr) -> Option<Nat> {
    let up = l3.uplink.as_ref()?;
    if dst == up.ip {
        let (proto, port) = (seen.tuple.proto, seen.tuple.dst_port);
        let target = nat.published.iter().find_map(|t| t.get(proto, port))?;
        let snat = matches!(side, Side::Bridge { .. }).then_some(l3.gateway);
        return Some(Nat {
            dnat: Some(target),
            snat,
        });
    }
    match side {
        Side::Bridge { leaves: true } if nat.masquerade => Some(Nat {
            snat: Some(up.ip),
            dnat: None,
        }),
        _ => None,
    }
}

/// Where a routed packet goes: from which side, to which address.
#[derive(Clone, Copy, Debug)]
pub struct To {
    pub side: Side,
    pub dst: Ipv4Addr,
}

/// Translates a routed packet to `to.dst` from `to.side`: its connection's
/// rewrite, a new connection's if [`policy`] gives one, or an ICMP error's
/// about a tracked connection. Ok(true) when the packet was rewritten. A
/// packet NAT cannot translate (a TCP fragment, say) that would leave a
/// masquerading bridge untranslated is dropped instead. The fragments of
/// a datagram are translated as its first one was. `memo`: the batch's
/// last connection, found again without a lookup.
pub fn translate(
    frame: &mut Frame,
    ip_at: usize,
    l3: &BridgeL3,
    nat: &NatL3,
    to: To,
    now_ms: u64,
    memo: &Memo,
) -> Result<bool, DropReason> {
    let fragment = fragment_of(frame, ip_at, nat.zone);
    match fragment {
        Some((key, true)) => later_fragment(frame, ip_at, nat, &key, now_ms),
        Some((key, false)) => {
            let translated = translate_packet(frame, ip_at, l3, nat, to, now_ms, memo)?;
            // Its later fragments go where it goes, translated or not.
            let ip = Ipv4Packet::new_unchecked(&frame.data()[ip_at..]);
            let to = FragNat {
                src: ip.src_addr(),
                dst: ip.dst_addr(),
            };
            nat.ct
                .frags
                .remember(key, to, now_ms)
                .map_err(|_| DropReason::FragTableFull)?;
            Ok(translated)
        }
        None => translate_packet(frame, ip_at, l3, nat, to, now_ms, memo),
    }
}

/// The datagram a fragment belongs to, and whether it is a later fragment
/// (not the first); None for a whole packet.
fn fragment_of(frame: &Frame, ip_at: usize, zone: u16) -> Option<(FragKey, bool)> {
    let ip = Ipv4Packet::new_checked(frame.data().get(ip_at..)?).ok()?;
    let later = ip.frag_offset() != 0;
    (later || ip.more_frags()).then(|| {
        let key = FragKey {
            zone,
            src: ip.src_addr(),
            dst: ip.dst_addr(),
            proto: u8::from(ip.next_header()),
            id: ip.ident(),
        };
        (key, later)
    })
}

/// A later fragment gets the addresses its datagram's first fragment got
/// (its ports and L4 checksum were in that one). Before the first
/// fragment: `frag-no-first`, which the pipeline holds for a while.
fn later_fragment(
    frame: &mut Frame,
    ip_at: usize,
    nat: &NatL3,
    key: &FragKey,
    now_ms: u64,
) -> Result<bool, DropReason> {
    let to = nat.ct.frags.lookup(key, now_ms).ok_or(DropReason::FragNoFirst)?;
    if to.src == key.src && to.dst == key.dst {
        return Ok(false);
    }
    let rw = Rewrite {
        src: Some((to.src, 0)),
        dst: Some((to.dst, 0)),
    };
    rewrite_ipv4(&mut frame.data_mut()[ip_at..], &rw, L4Checksum::Complete).map_err(|_| DropReason::Malformed)?;
    Ok(true)
}

/// [`translate`] for a whole packet or a first fragment.
fn translate_packet(
    frame: &mut Frame,
    ip_at: usize,
    l3: &BridgeL3,
    nat: &NatL3,
    to: To,
    now_ms: u64,
    memo: &Memo,
) -> Result<bool, DropReason> {
    let Some(seen) = seen(frame, ip_at, nat.zone)? else {
        if icmp_error(frame, ip_at, nat.zone, &nat.ct, now_ms)? {
            return Ok(true);
        }
        return match to.side {
            Side::Bridge { leaves: true } if nat.masquerade => Err(DropReason::NatUnsupported),
            _ => Ok(false),
        };
    };
    let remembered = memo.connection(&seen.tuple);
    let known = remembered.is_some();
    let existing = match remembered {
        Some(found) => nat.ct.advance(found, seen, now_ms),
        None => nat.ct.track_existing(seen, now_ms),
    };
    if known && existing.is_none() {
        // Expired under the batch (and taken out of the table).
        memo.forget_connection();
    }
    // Remembered unless it came from the memo (a connection that expired
    // under the batch is replaced by the new one).
    let (tracked, news) = match existing {
        Some(found) => (found?, !known),
        None => match policy(l3, nat, to.side, &seen, to.dst) {
            Some(policy) => (nat.ct.track(seen, now_ms, |_| policy)?, true),
            None => return Ok(false),
        },
    };
    if news {
        memo.remember_connection(seen.tuple, &tracked);
    }
    apply(frame, ip_at, &seen, &tracked)?;
    Ok(true)
}

impl From<CtDrop> for DropReason {
    fn from(d: CtDrop) -> DropReason {
        match d {
            CtDrop::Invalid => DropReason::CtInvalid,
            CtDrop::OutOfWindow => DropReason::CtOutOfWindow,
            CtDrop::TableFull => DropReason::CtTableFull,
            CtDrop::PortsExhausted => DropReason::NatPortsExhausted,
            CtDrop::HostLimit => DropReason::CtHostLimit,
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
    let mode = if frame.meta.csum_partial {
        L4Checksum::Seed
    } else {
        L4Checksum::Complete
    };
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
