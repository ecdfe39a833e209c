//! Ethernet MAC addresses as they appear on the command line and in JSON.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A 48-bit Ethernet address, written `02:00:5e:10:00:01`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct MacAddr(pub [u8; 6]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MacParseError {
    #[error("invalid MAC address '{0}': expected six hex bytes like 02:00:00:00:00:01")]
    Syntax(String),
    #[error("invalid MAC address '{0}': a port address must be unicast (lowest bit of the first byte clear)")]
    Multicast(String),
    #[error("invalid MAC address '{0}': the all-zero address cannot be used")]
    Zero(String),
}

impl MacAddr {
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }

    /// Parses an address that may be assigned to a port: unicast and not zero.
    pub fn parse_unicast(text: &str) -> Result<MacAddr, MacParseError> {
        let mac: MacAddr = text.parse()?;
        if mac.is_multicast() {
            return Err(MacParseError::Multicast(text.to_string()));
        }
        if mac.is_zero() {
            return Err(MacParseError::Zero(text.to_string()));
        }
        Ok(mac)
    }
}

impl FromStr for MacAddr {
    type Err = MacParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let syntax = || MacParseError::Syntax(text.to_string());
        let mut bytes = [0u8; 6];
        let mut parts = text.split([':', '-']);
        for byte in bytes.iter_mut() {
            let part = parts.next().ok_or_else(syntax)?;
            if part.is_empty() || part.len() > 2 {
                return Err(syntax());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| syntax())?;
        }
        if parts.next().is_some() {
            return Err(syntax());
        }
        Ok(MacAddr(bytes))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let mac: MacAddr = "02:0A:00:00:00:ff".parse().unwrap();
        assert_eq!(mac.0, [0x02, 0x0a, 0, 0, 0, 0xff]);
        assert_eq!(mac.to_string(), "02:0a:00:00:00:ff");
        assert_eq!("2-a-0-0-0-ff".parse::<MacAddr>().unwrap(), mac);
    }

    #[test]
    fn rejects_bad_syntax() {
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:00:00",
            "zz:00:00:00:00:01",
            "002:00:00:00:00:01",
            "02::00:00:00:01",
        ] {
            assert!(matches!(bad.parse::<MacAddr>(), Err(MacParseError::Syntax(_))), "{bad}");
        }
    }

    #[test]
    fn port_addresses_must_be_unicast_and_nonzero() {
        assert!(matches!(
            MacAddr::parse_unicast("01:00:5e:00:00:01"),
            Err(MacParseError::Multicast(_))
        ));
        assert!(matches!(
            MacAddr::parse_unicast("00:00:00:00:00:00"),
            Err(MacParseError::Zero(_))
        ));
        assert!(MacAddr::parse_unicast("02:00:00:00:00:01").is_ok());
    }
}
