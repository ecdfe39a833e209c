//! Networks as vswitch uses them: `ipnet`'s types (dual stack, the
//! ecosystem's), plus what a bridge's subnet must be and the few questions
//! the control plane asks of one.
//!
//! `ipnet` accepts any prefix and keeps host bits (`10.20.0.5/24` is a
//! valid `Ipv4Net` there); a bridge's subnet is stricter: a network with
//! its host bits clear and room for a gateway and hosts. [`parse_subnet`]
//! (the CLI and the runtimes' configuration) and [`check_subnet`] (what
//! arrives as JSON) say so with one message. On the wire and in the saved
//! state a network is spelled as before, `10.20.0.0/24`.

use std::net::Ipv4Addr;

pub use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// The prefix lengths a bridge's subnet may have: at least a /30 (a
/// gateway and one host), at most a /8.
pub const SUBNET_PREFIXES: std::ops::RangeInclusive<u8> = 8..=30;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetParseError {
    #[error("invalid subnet '{0}': expected an IPv4 network like 10.20.0.0/24")]
    Syntax(String),
    #[error("invalid subnet '{0}': the prefix must be between 8 and 30")]
    Prefix(String),
    #[error("invalid subnet '{text}': host bits are set (did you mean {network}?)")]
    HostBits { text: String, network: String },
}

/// A bridge's subnet from its text: an IPv4 network, host bits clear, a
/// prefix in [`SUBNET_PREFIXES`].
pub fn parse_subnet(text: &str) -> Result<Ipv4Net, NetParseError> {
    let net: Ipv4Net = text.parse().map_err(|_| NetParseError::Syntax(text.to_string()))?;
    check_subnet(&net).map(|()| net)
}

/// Whether `net` may be a bridge's subnet (see [`parse_subnet`]).
pub fn check_subnet(net: &Ipv4Net) -> Result<(), NetParseError> {
    if !SUBNET_PREFIXES.contains(&net.prefix_len()) {
        return Err(NetParseError::Prefix(net.to_string()));
    }
    if net.trunc() != *net {
        return Err(NetParseError::HostBits {
            text: net.to_string(),
            network: net.trunc().to_string(),
        });
    }
    Ok(())
}

/// What the control plane asks of a subnet beyond `ipnet`'s own methods.
pub trait SubnetExt {
    /// An address a host may have: in the network, neither its network
    /// nor its broadcast address.
    fn is_host(&self, ip: Ipv4Addr) -> bool;
    /// Every address of the network, its network and broadcast ones too.
    fn addresses(&self) -> impl Iterator<Item = Ipv4Addr>;
    /// The network's first host address (a gateway's default).
    fn first_host(&self) -> Ipv4Addr;
}

impl SubnetExt for Ipv4Net {
    fn is_host(&self, ip: Ipv4Addr) -> bool {
        self.contains(&ip) && ip != self.network() && ip != self.broadcast()
    }

    fn addresses(&self) -> impl Iterator<Item = Ipv4Addr> {
        (u32::from(self.network())..=u32::from(self.broadcast())).map(Ipv4Addr::from)
    }

    fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network()).saturating_add(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_query() {
        let net = parse_subnet("10.20.0.0/24").unwrap();
        assert_eq!(net.to_string(), "10.20.0.0/24");
        assert!(net.contains(&"10.20.0.77".parse::<Ipv4Addr>().unwrap()));
        assert!(!net.contains(&"10.20.1.1".parse::<Ipv4Addr>().unwrap()));
        assert_eq!(net.broadcast(), "10.20.0.255".parse::<Ipv4Addr>().unwrap());
        assert_eq!(net.hosts().count(), 254);
        assert_eq!(net.addresses().count(), 256);
        assert_eq!(net.hosts().next(), Some(net.first_host()));
        assert_eq!(net.first_host(), "10.20.0.1".parse::<Ipv4Addr>().unwrap());
        assert!(!net.is_host(net.network()) && !net.is_host(net.broadcast()));
        assert!(net.is_host("10.20.0.254".parse().unwrap()));
    }

    #[test]
    fn bad_subnets() {
        assert!(matches!(parse_subnet("10.20.0.0"), Err(NetParseError::Syntax(_))));
        assert!(matches!(parse_subnet("10.20.0.0/31"), Err(NetParseError::Prefix(_))));
        assert!(matches!(parse_subnet("10.0.0.0/7"), Err(NetParseError::Prefix(_))));
        let err = parse_subnet("10.20.0.1/24").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid subnet '10.20.0.1/24': host bits are set (did you mean 10.20.0.0/24?)"
        );
        assert!(matches!(parse_subnet("10.300.0.0/24"), Err(NetParseError::Syntax(_))));
        assert!(matches!(parse_subnet("fd00::/64"), Err(NetParseError::Syntax(_))));
    }

    /// The saved state and the JSON protocol keep their spelling.
    #[test]
    fn a_network_is_spelled_as_before_in_json() {
        let net = parse_subnet("10.20.0.0/24").unwrap();
        assert_eq!(serde_json::to_string(&net).unwrap(), r#""10.20.0.0/24""#);
        let back: Ipv4Net = serde_json::from_str(r#""10.20.0.0/24""#).unwrap();
        assert_eq!(back, net);
    }
}
