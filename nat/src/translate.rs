//! From a tracked connection to the change its packets need: the rewrite
//! of a packet of the connection itself, and the translation of an ICMP
//! error that quotes one.

use smoltcp::wire::Ipv4Packet;

use crate::rewrite::{icmp_error_quote, rewrite_icmp_error, Rewrite, RewriteError};
use crate::table::{ConnTable, Tracked};
use crate::tcp::Dir;
use crate::tuple::Tuple;

/// What a packet that now carries `now` must change to leave with the tuple
/// its connection gives its direction; the default (nothing) when it
/// already does.
pub fn rewrite_for(tracked: &Tracked, now: &Tuple) -> Rewrite {
    let out = tracked.conn.translated(tracked.dir);
    Rewrite {
        src: (out.src != now.src || out.src_port != now.src_port).then_some((out.src, out.src_port)),
        dst: (out.dst != now.dst || out.dst_port != now.dst_port).then_some((out.dst, out.dst_port)),
    }
}

/// Translates `packet` (from its IPv4 header on) if it is an ICMP error
/// (unreachable, time exceeded...) about a tracked connection of `zone`, so
/// that path MTU discovery and error reporting work through NAT. Ok(true)
/// when it was such an error and was rewritten.
///
/// The error arrives on the side its quoted packet left from, already
/// translated: the quote reversed is what an answer on this side looks
/// like, which finds the connection and the direction `d` the error
/// travels. The outer header is translated as a packet of `d`; the quoted
/// one goes back to what it was before translation.
pub fn icmp_error(packet: &mut [u8], zone: u16, ct: &ConnTable, now_ms: u64) -> Result<bool, RewriteError> {
    let Some((proto, src, src_port, dst, dst_port)) = icmp_error_quote(packet) else {
        return Ok(false);
    };
    let quoted_now = Tuple {
        zone,
        proto,
        src,
        src_port,
        dst,
        dst_port,
    };
    let Some((conn, dir)) = ct.lookup(&quoted_now.reversed(), now_ms) else {
        return Ok(false);
    };
    let out = conn.translated(dir);
    let before = match dir.other() {
        Dir::Original => conn.orig,
        Dir::Reply => conn.reply,
    };
    let outer_src = Ipv4Packet::new_checked(&*packet)
        .map_err(|_| RewriteError::BadIpv4)?
        .src_addr();
    let outer = Rewrite {
        // Sent by the quoted packet's destination itself: that address moves too.
        src: (outer_src == quoted_now.dst && out.src != outer_src).then_some((out.src, 0)),
        dst: Some((out.dst, 0)),
    };
    let quoted = Rewrite {
        src: (before.src != src || before.src_port != src_port).then_some((before.src, before.src_port)),
        dst: (before.dst != dst || before.dst_port != dst_port).then_some((before.dst, before.dst_port)),
    };
    rewrite_icmp_error(packet, &outer, &quoted)?;
    Ok(true)
}
