//! Argument types and parsers of vsctl's command line.

use std::net::Ipv4Addr;

use vswitch_ctl::{CaptureDirection, NatProto, PortType, XdpModeRequest};

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum CliDirection {
    Rx,
    Tx,
    Both,
}

impl From<CliDirection> for CaptureDirection {
    fn from(d: CliDirection) -> Self {
        match d {
            CliDirection::Rx => CaptureDirection::Rx,
            CliDirection::Tx => CaptureDirection::Tx,
            CliDirection::Both => CaptureDirection::Both,
        }
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum NatMode {
    Masquerade,
    Off,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum CliNatProto {
    Tcp,
    Udp,
}

impl From<CliNatProto> for NatProto {
    fn from(p: CliNatProto) -> Self {
        match p {
            CliNatProto::Tcp => NatProto::Tcp,
            CliNatProto::Udp => NatProto::Udp,
        }
    }
}

pub fn parse_target(text: &str) -> Result<(Ipv4Addr, u16), String> {
    let bad = || format!("'{text}' is not an address and port like 10.20.0.5:80");
    let (ip, port) = text.rsplit_once(':').ok_or_else(bad)?;
    Ok((ip.parse().map_err(|_| bad())?, port.parse().map_err(|_| bad())?))
}

pub fn parse_cidr(text: &str) -> Result<(Ipv4Addr, u8), String> {
    let bad = || format!("'{text}' is not an address with a prefix length, like 192.0.2.10/24");
    let (ip, prefix) = text.split_once('/').ok_or_else(bad)?;
    let prefix: u8 = prefix.parse().map_err(|_| bad())?;
    if !(1..=30).contains(&prefix) {
        return Err(bad());
    }
    Ok((ip.parse().map_err(|_| bad())?, prefix))
}

#[derive(Clone, Copy)]
pub enum IpChoice {
    Auto,
    Fixed(Ipv4Addr),
}

pub fn parse_ip_choice(text: &str) -> Result<IpChoice, String> {
    if text == "auto" {
        return Ok(IpChoice::Auto);
    }
    text.parse()
        .map(IpChoice::Fixed)
        .map_err(|_| format!("'{text}' is neither 'auto' nor an IPv4 address"))
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum CliPortType {
    Tap,
    Afxdp,
    Internal,
}

impl From<CliPortType> for PortType {
    fn from(t: CliPortType) -> Self {
        match t {
            CliPortType::Tap => PortType::Tap,
            CliPortType::Afxdp => PortType::Afxdp,
            CliPortType::Internal => PortType::Internal,
        }
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum CliXdpMode {
    Auto,
    Native,
    Generic,
}

impl From<CliXdpMode> for XdpModeRequest {
    fn from(m: CliXdpMode) -> Self {
        match m {
            CliXdpMode::Auto => XdpModeRequest::Auto,
            CliXdpMode::Native => XdpModeRequest::Native,
            CliXdpMode::Generic => XdpModeRequest::Generic,
        }
    }
}

/// What `set` and `get` act on.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Table {
    #[value(alias = "br")]
    Bridge,
}

/// One `KEY=VALUE` of `set bridge`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting {
    Aging(u64),
    MaxMacs(usize),
    Icc(bool),
}

/// The keys `set bridge` takes, as they are spelled.
pub const SETTABLE: &str = "aging=SECS, max-macs=N, icc=true|false";

pub fn parse_setting(text: &str) -> Result<Setting, String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("'{text}' is not KEY=VALUE ({SETTABLE})"))?;
    let number = |what: &str| {
        value
            .parse::<u64>()
            .map_err(|_| format!("{what} must be a whole number, not '{value}'"))
    };
    match key {
        "aging" | "aging-secs" => number("aging").map(Setting::Aging),
        "max-macs" | "max_macs" => number("max-macs").map(|n| Setting::MaxMacs(n as usize)),
        "icc" => match value {
            "true" | "yes" | "on" | "1" => Ok(Setting::Icc(true)),
            "false" | "no" | "off" | "0" => Ok(Setting::Icc(false)),
            _ => Err(format!("icc is true or false, not '{value}'")),
        },
        other => Err(format!("bridges have no setting '{other}' ({SETTABLE})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_and_name_what_is_wrong() {
        assert_eq!(parse_setting("aging=600"), Ok(Setting::Aging(600)));
        assert_eq!(parse_setting("max-macs=10"), Ok(Setting::MaxMacs(10)));
        assert!(parse_setting("aging").unwrap_err().contains("KEY=VALUE"));
        assert!(parse_setting("aging=soon").unwrap_err().contains("whole number"));
        assert_eq!(parse_setting("icc=false"), Ok(Setting::Icc(false)));
        assert!(parse_setting("icc=maybe").unwrap_err().contains("true or false"));
        assert!(parse_setting("colour=red").unwrap_err().contains("no setting 'colour'"));
    }
}
