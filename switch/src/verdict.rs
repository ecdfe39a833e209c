//! The pipeline's vocabulary: what a stage decides for a frame. Outside
//! `pipeline/` so that what records verdicts (`trace`, held by every
//! port) stays below the pipeline.
//!
//! Every stage reads and writes one [`Verdict`] per frame of the batch; the
//! runner moves frames between stages by these verdicts and the tx step
//! sends or counts them. The variants `L2`, `Underlay` and `L3` name the
//! stage a frame goes to next; the others are final (tunnel frames become
//! final in the encapsulate stage). This module imports nothing of the
//! stages, so they, the runner, the trace and the control plane's trace
//! words can all share it.

use std::net::Ipv4Addr;

use crate::stats::DropReason;

/// Where a frame goes next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Drop(DropReason),
    /// To one port, by slot (the ingress port too, for replies).
    Forward(u32),
    /// To every port of `bridge` but the one it came from (see [`FloodFrom`]).
    Flood {
        bridge: u32,
        from: FloodFrom,
    },
    /// Classified on a bridge member: to the switching stage (l2).
    L2,
    /// Classified on an uplink: to the tunnel's receive side, then routing.
    Underlay,
    /// To the L3 stage (the gateway, or the uplink's router leg).
    L3,
    /// Handled here; nothing to send (an ARP answer to the gateway).
    Consumed,
    /// Routed out `via`, waiting for the MAC of next hop `ip`.
    Hold {
        via: NextHop,
        ip: Ipv4Addr,
    },
    /// Into `bridge`'s tunnel, to the remote VTEP `vtep` (the encapsulate
    /// stage turns it into a frame for the underlay's uplink).
    Tunnel {
        bridge: u32,
        vtep: Ipv4Addr,
    },
}

/// Who a flood comes from, which decides where it goes besides the
/// bridge's ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FloodFrom {
    /// A local port (by slot): every other port, and every remote VTEP of
    /// the bridge's tunnel (head-end replication).
    Port(u32),
    /// The tunnel: local ports only (split horizon).
    Tunnel,
    /// The router (a routed frame to an unknown MAC, an ARP request the
    /// gateway asks): local ports only; gateway traffic never crosses a
    /// tunnel.
    Router,
}

impl FloodFrom {
    /// The port the flood must not go back to.
    #[inline]
    pub fn except(self) -> Option<u32> {
        match self {
            FloodFrom::Port(slot) => Some(slot),
            FloodFrom::Tunnel | FloodFrom::Router => None,
        }
    }
}

/// The router leg a next hop is on; both name the bridge by slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextHop {
    Bridge(u32),
    Uplink(u32),
}
