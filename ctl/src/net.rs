//! IPv4 networks as they appear on the command line and in JSON: `10.20.0.0/24`.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An IPv4 network: address with the host bits clear, and prefix length.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Ipv4Net {
    addr: Ipv4Addr,
    prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetParseError {
    #[error("invalid subnet '{0}': expected an IPv4 network like 10.20.0.0/24")]
    Syntax(String),
    #[error("invalid subnet '{0}': the prefix must be between 8 and 30")]
    Prefix(String),
    #[error("invalid subnet '{text}': host bits are set (did you mean {network}?)")]
    HostBits { text: String, network: String },
}

impl Ipv4Net {
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Ipv4Net> {
        (prefix <= 32).then(|| Ipv4Net {
            addr: Ipv4Addr::from(u32::from(addr) & Self::mask_of(prefix)),
            prefix,
        })
    }

    fn mask_of(prefix: u8) -> u32 {
        if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(prefix))
        }
    }

    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn mask(&self) -> u32 {
        Self::mask_of(self.prefix)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr)
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }

    /// Addresses a host may have: all but the network and broadcast ones.
    pub fn hosts(&self) -> impl Iterator<Item = Ipv4Addr> {
        let first = u32::from(self.addr) + 1;
        let last = u32::from(self.broadcast());
        (first..last).map(Ipv4Addr::from)
    }

    /// Every address of the network, its network and broadcast ones too.
    pub fn addresses(&self) -> impl Iterator<Item = Ipv4Addr> {
        (u32::from(self.addr)..=u32::from(self.broadcast())).map(Ipv4Addr::from)
    }

    /// True when every address of `other` is one of ours.
    pub fn covers(&self, other: &Ipv4Net) -> bool {
        other.prefix >= self.prefix && self.contains(other.addr)
    }

    /// The same network as the `ipnet` type the datapath uses.
    pub fn to_ipnet(&self) -> ipnet::Ipv4Net {
        // `new` refuses only prefixes over 32, which this type never holds.
        ipnet::Ipv4Net::new(self.addr, self.prefix).unwrap_or_default()
    }

    pub fn is_host(&self, ip: Ipv4Addr) -> bool {
        self.contains(ip) && ip != self.addr && ip != self.broadcast()
    }
}

impl FromStr for Ipv4Net {
    type Err = NetParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let syntax = || NetParseError::Syntax(text.to_string());
        let (addr, prefix) = text.split_once('/').ok_or_else(syntax)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| syntax())?;
        let prefix: u8 = prefix.parse().map_err(|_| syntax())?;
        if !(8..=30).contains(&prefix) {
            return Err(NetParseError::Prefix(text.to_string()));
        }
        let net = Ipv4Net::new(addr, prefix).ok_or_else(syntax)?;
        if net.addr != addr {
            return Err(NetParseError::HostBits {
                text: text.to_string(),
                network: net.to_string(),
            });
        }
        Ok(net)
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Serialize for Ipv4Net {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ipv4Net {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_query() {
        let net: Ipv4Net = "10.20.0.0/24".parse().unwrap();
        assert_eq!(net.to_string(), "10.20.0.0/24");
        assert!(net.contains("10.20.0.77".parse().unwrap()));
        assert!(!net.contains("10.20.1.1".parse().unwrap()));
        assert_eq!(net.broadcast(), "10.20.0.255".parse::<Ipv4Addr>().unwrap());
        assert_eq!(net.hosts().count(), 254);
        assert_eq!(net.hosts().next(), Some("10.20.0.1".parse().unwrap()));
        assert!(!net.is_host(net.addr()) && !net.is_host(net.broadcast()));
    }

    #[test]
    fn bad_networks() {
        assert!(matches!("10.20.0.0".parse::<Ipv4Net>(), Err(NetParseError::Syntax(_))));
        assert!(matches!(
            "10.20.0.0/31".parse::<Ipv4Net>(),
            Err(NetParseError::Prefix(_))
        ));
        assert!(matches!(
            "10.20.0.1/24".parse::<Ipv4Net>(),
            Err(NetParseError::HostBits { .. })
        ));
        assert!(matches!(
            "10.300.0.0/24".parse::<Ipv4Net>(),
            Err(NetParseError::Syntax(_))
        ));
    }
}
