//! The identity of a connection: protocol, addresses and ports, and the
//! zone (one per bridge) it lives in, so that two bridges with overlapping
//! subnets never share a connection.
//!
//! ICMP echo has no ports; its identifier stands in for both (as the kernel
//! does), so a request and its reply have reversed tuples like TCP and UDP.
//! IPv4 only for now: the addresses are an enum-ready `Ipv4Addr` pair and
//! nothing else assumes the family.

use std::net::Ipv4Addr;

/// Transport protocols tracked. Others are data, not errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Proto {
    Tcp,
    Udp,
    /// ICMP echo (request and reply); the identifier is the "port".
    IcmpEcho,
}

/// One direction of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Tuple {
    pub zone: u16,
    pub proto: Proto,
    pub src: Ipv4Addr,
    pub src_port: u16,
    pub dst: Ipv4Addr,
    pub dst_port: u16,
}

impl Tuple {
    /// The tuple the other direction's packets carry.
    pub fn reversed(&self) -> Tuple {
        Tuple {
            src: self.dst,
            src_port: self.dst_port,
            dst: self.src,
            dst_port: self.src_port,
            ..*self
        }
    }

    /// The same tuple with its source rewritten (what SNAT does).
    pub fn with_src(&self, src: Ipv4Addr, src_port: u16) -> Tuple {
        Tuple { src, src_port, ..*self }
    }

    /// The same tuple with its destination rewritten (what DNAT does).
    pub fn with_dst(&self, dst: Ipv4Addr, dst_port: u16) -> Tuple {
        Tuple { dst, dst_port, ..*self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reversal_and_rewrites() {
        let t = Tuple {
            zone: 1,
            proto: Proto::Tcp,
            src: [10, 0, 0, 2].into(),
            src_port: 40000,
            dst: [192, 0, 2, 1].into(),
            dst_port: 80,
        };
        assert_eq!(t.reversed().reversed(), t);
        assert_eq!(t.reversed().src_port, 80);
        let snat = t.with_src([198, 51, 100, 1].into(), 61000);
        assert_eq!(
            (snat.src, snat.src_port, snat.dst),
            ([198, 51, 100, 1].into(), 61000, t.dst)
        );
        // The reply to a masqueraded connection: what the table must map back.
        assert_eq!(snat.reversed().dst_port, 61000);
    }
}
