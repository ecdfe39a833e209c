//! The CNI specification's side: versions, error codes, the network
//! configuration this plugin reads, and the result it prints.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Spec versions this plugin speaks, oldest first.
pub const SUPPORTED: [&str; 3] = ["0.4.0", "1.0.0", "1.1.0"];

/// The spec's error codes (1-99), and this plugin's (100+).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    IncompatibleVersion = 1,
    BadEnvironment = 4,
    Io = 5,
    Undecodable = 6,
    InvalidConfig = 7,
    TryAgainLater = 11,
    /// STATUS: the plugin cannot serve ADD now.
    NotAvailable = 50,
    /// CHECK found the container's interface not as the result said.
    CheckFailed = 100,
    /// vswitchd refused a request (its message says why).
    Refused = 101,
}

#[derive(Debug, thiserror::Error)]
#[error("{msg}")]
pub struct CniError {
    pub code: Code,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: Code, msg: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn details(mut self, details: impl Into<String>) -> CniError {
        self.details = details.into();
        self
    }

    /// The spec's error object.
    pub fn to_json(&self, version: &str) -> Value {
        json!({
            "cniVersion": version,
            "code": self.code as u32,
            "msg": self.msg,
            "details": self.details,
        })
    }
}

/// The network configuration on stdin (unknown fields are ignored, as
/// runtimes add their own).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    pub cni_version: String,
    pub name: String,
    /// The vswitch bridge (default: `cni-` and the network's name).
    #[serde(default)]
    pub bridge: Option<String>,
    /// The bridge's subnet when this plugin creates it (default 10.88.0.0/16).
    #[serde(default)]
    pub subnet: Option<String>,
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
    /// vswitchd's control socket.
    #[serde(default)]
    pub socket: Option<PathBuf>,
    /// "tap" (default) or "afxdp".
    #[serde(default)]
    pub port_type: Option<String>,
    #[serde(default)]
    pub masquerade: Option<bool>,
    /// The vswitch bridge whose uplink is the way out (`add-br --uplink-via`).
    #[serde(default)]
    pub uplink: Option<String>,
    /// Returned as is in the result.
    #[serde(default)]
    pub dns: Option<Value>,
    #[serde(default)]
    pub runtime_config: RuntimeConfig,
    /// Optional data from the runtime (CNI conventions: `args.cni.labels`).
    #[serde(default)]
    pub args: Args,
    #[serde(default)]
    pub prev_result: Option<Value>,
    #[serde(rename = "cni.dev/valid-attachments", default)]
    pub valid_attachments: Option<Vec<GcAttachment>>,
    /// The name some runtimes used before the spec settled.
    #[serde(rename = "cni.dev/attachments", default)]
    pub attachments: Option<Vec<GcAttachment>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeConfig {
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
}

/// `args` in the configuration: only the conventions' `cni` part is read
/// (runtimes put their own keys beside it).
#[derive(Debug, Default, Deserialize)]
pub struct Args {
    #[serde(default)]
    pub cni: CniArgs,
}

#[derive(Debug, Default, Deserialize)]
pub struct CniArgs {
    /// `[{"key": "app", "value": "web"}]`.
    #[serde(default)]
    pub labels: Vec<KeyValue>,
}

#[derive(Debug, Deserialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

/// `runtimeConfig.portMappings` (the `portMappings` capability).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(rename = "hostIP", default)]
    pub host_ip: Option<String>,
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
pub struct GcAttachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// What ADD reports.
pub struct Added {
    pub ifname: String,
    pub mac: String,
    pub sandbox: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub default_route: bool,
}

#[derive(Serialize)]
struct Interface<'a> {
    name: &'a str,
    mac: &'a str,
    sandbox: &'a str,
}

impl Added {
    /// The result in the configuration's spec version (0.4.0 writes
    /// `version` on each address).
    pub fn to_json(&self, version: &str, dns: Option<&Value>) -> Value {
        let mut ip = json!({
            "address": format!("{}/{}", self.ip, self.prefix),
            "gateway": self.gateway.to_string(),
            "interface": 0,
        });
        if version == "0.4.0" {
            ip["version"] = json!("4");
        }
        let routes = match self.default_route {
            true => json!([{ "dst": "0.0.0.0/0", "gw": self.gateway.to_string() }]),
            false => json!([]),
        };
        json!({
            "cniVersion": version,
            "interfaces": [Interface { name: &self.ifname, mac: &self.mac, sandbox: &self.sandbox }],
            "ips": [ip],
            "routes": routes,
            "dns": dns.cloned().unwrap_or_else(|| json!({})),
        })
    }
}
