//! The control plane's errors: what a request can fail with, each naming
//! what failed, and the one-line form vsctl prints.

use std::net::Ipv4Addr;

use vswitch_ctl::Ipv4Net;

use super::config::{L4Proto, PortKind};
use super::store::StateError;
use super::validate::Invalid;
use crate::port::PortError;
use crate::sys::netns::NetnsError;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("this vswitchd is not in a cluster (start it with --cluster http://IP:2379 --node NAME)")]
    NoCluster,
    #[error("command {index} of the transaction: {why}")]
    NotTransactional { index: usize, why: &'static str },
    #[error("command {index} of the transaction failed; nothing was changed")]
    InTransaction {
        index: usize,
        #[source]
        source: Box<ControlError>,
    },
    #[error("bridge name '{0}' is not valid (1-32 characters: letters, digits, '.', '-', '_')")]
    BadBridgeName(String),
    #[error("port name '{0}' is not valid (1-15 characters: letters, digits, '.', '-', '_')")]
    BadPortName(String),
    #[error("interface name '{0}' is not valid (1-15 characters, no '/', ':' or spaces)")]
    BadIfname(String),
    #[error("bridge '{0}' does not exist")]
    NoBridge(String),
    #[error("port '{0}' does not exist")]
    NoPort(String),
    #[error("port '{port}' is on bridge '{actual}', not '{asked}'")]
    WrongBridge {
        port: String,
        actual: String,
        asked: String,
    },
    #[error("{what} must be between {min} and {max}, not {value}")]
    OutOfRange {
        what: &'static str,
        value: u64,
        min: u64,
        max: u64,
    },
    #[error("cannot create port '{port}'")]
    CreatePort {
        port: String,
        #[source]
        source: PortError,
    },
    #[error("{0}")]
    Option(&'static str),
    #[error("bad filter '{expr}'")]
    BadFilter {
        expr: String,
        #[source]
        source: pcap::Error,
    },
    #[error("bridge '{0}' has no subnet (add-br --subnet)")]
    NoSubnet(String),
    #[error(transparent)]
    BadSubnet(#[from] vswitch_ctl::NetParseError),
    #[error("gateway {gateway} is not a host address of {subnet}")]
    BadGateway { gateway: Ipv4Addr, subnet: Ipv4Net },
    #[error("address range {range} is not part of {subnet}, or holds no host address but the gateway")]
    BadIpRange { range: Ipv4Net, subnet: Ipv4Net },
    #[error("{ip} is not a free host address of {subnet} (the gateway is {gateway})")]
    BadAddress {
        ip: Ipv4Addr,
        subnet: Ipv4Net,
        gateway: Ipv4Addr,
    },
    #[error("{ip} is already leased to network namespace '{netns}'")]
    AddressTaken { ip: Ipv4Addr, netns: String },
    #[error("network namespace '{netns}' holds {ip} on bridge '{bridge}'; detach it first to change address")]
    LeaseMismatch {
        netns: String,
        ip: Ipv4Addr,
        bridge: String,
    },
    #[error("no free address left in {0}")]
    SubnetFull(Ipv4Net),
    #[error("network namespace '{netns}' is already attached to bridge '{bridge}' (port '{port}')")]
    AlreadyAttached {
        netns: String,
        bridge: String,
        port: String,
    },
    #[error("network namespace '{netns}' is not attached to bridge '{bridge}'")]
    NotAttached { netns: String, bridge: String },
    #[error("cannot give the internal port the gateway address")]
    InternalAddress(#[source] std::io::Error),
    #[error("bridge '{bridge}' already has an internal port ('{port}')")]
    InternalExists { bridge: String, port: String },
    #[error("bridge '{bridge}' already has an uplink ({iface})")]
    UplinkExists { bridge: String, iface: String },
    #[error("bridge '{0}' has no uplink")]
    NoUplink(String),
    #[error("uplink address {ip}/{prefix} with next hop {gw}: the next hop must be another host of that network")]
    BadUplinkAddress { ip: Ipv4Addr, prefix: u8, gw: Ipv4Addr },
    #[error("port {proto}/{port} is not published on bridge '{bridge}'")]
    NotPublished { bridge: String, proto: L4Proto, port: u16 },
    #[error("{ip} is not a host of bridge '{bridge}' ({subnet}): published ports lead to its containers")]
    PublishOutside {
        ip: Ipv4Addr,
        bridge: String,
        subnet: Ipv4Net,
    },
    #[error("port 0 cannot be published or published to")]
    PortZero,
    #[error("a bridge cannot be linked to itself")]
    SelfLink,
    #[error("cannot give the attached interface its address")]
    Address(#[source] NetnsError),
    #[error("bridge '{bridge}' already has a tunnel (vni {vni}); del-vxlan first")]
    TunnelExists { bridge: String, vni: u32 },
    #[error("bridge '{0}' has no tunnel (add-vxlan)")]
    NoTunnel(String),
    #[error("{ip} is not a remote VTEP of bridge '{bridge}'")]
    NoVtep { bridge: String, ip: Ipv4Addr },
    #[error("{mac} is not a static MAC of bridge '{bridge}'")]
    NoStaticMac { bridge: String, mac: vswitch_ctl::MacAddr },
    #[error("{0} cannot be a remote VTEP (one unicast host address)")]
    BadVtep(Ipv4Addr),
    #[error("cannot save the configuration; nothing was changed")]
    Persist(#[source] StateError),
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("an uplink is an afxdp or a tap port, not {0}")]
    UplinkType(PortKind),
    #[error("port '{port}' is not up ({reason}): nothing to capture or trace")]
    PortDown { port: String, reason: String },
    #[error("a trace is already running on port '{0}'")]
    TraceRunning(String),
    #[error("no trace runs on port '{0}' (it stopped: its count was reached, or nobody read it for 10 s)")]
    NoTrace(String),
    #[error("a capture is already running on port '{0}'")]
    CaptureRunning(String),
    #[error("no capture runs on port '{0}' (it stopped: its count was reached, or nobody read it for 10 s)")]
    NoCapture(String),
    #[error("{0}")]
    BadLabel(String),
    #[error("{0}")]
    BadName(String),
    #[error("no attachment is named {namespace}/{name} (list-attachments shows who is attached)")]
    NoAttachment { namespace: String, name: String },
    #[error("{namespace}/{name} is already the name of the attachment of netns '{netns}' (give --name)")]
    NameTaken {
        namespace: String,
        name: String,
        netns: String,
    },
    #[error("network policy {0} does not exist (list-policies shows them)")]
    NoPolicy(String),
    #[error("network policy {key}: {why}")]
    BadPolicy { key: String, why: String },
    #[error("cannot save the connection table to {path}")]
    CtSave {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// An error and its causes on one line: "cannot create port 'p1': interface
/// 'eth0' already exists in network namespace 'c1'".
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_chain_joins_causes() {
        let err = ControlError::Persist(StateError::Write {
            path: "/x".into(),
            source: std::io::Error::from_raw_os_error(libc::ENOSPC),
        });
        let text = error_chain(&err);
        assert!(
            text.starts_with("cannot save the configuration; nothing was changed: cannot write state file /x: "),
            "{text}"
        );
    }
}
