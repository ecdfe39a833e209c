//! The driver's `-o` options and Docker's port bindings, read from the
//! option maps dockerd sends.
//!
//! `docker network create -d vswitch -o com.vswitch.KEY=VALUE`:
//! - `com.vswitch.masquerade=true|false`: containers leave with the
//!   uplink's address (needs an uplink);
//! - `com.vswitch.uplink=BR`: the vswitch bridge whose uplink is the way
//!   out (`vsctl add-br --uplink-via`); published ports use its address;
//! - `com.vswitch.port-type=tap|afxdp`: the kind of port containers get;
//! - `com.vswitch.bridge=NAME`: the vswitch bridge's name (default
//!   `dk-` and the network ID's first 12 characters).
//!
//! An unknown `com.vswitch.` key is refused (a typo must not pass
//! silently); other keys are Docker's or another tool's and are left alone.

use std::collections::BTreeMap;

use serde_json::Value;
use vswitch_ctl::{NatProto, PortType};

use crate::api::{PortBinding, GENERIC, PORTMAP};

const PREFIX: &str = "com.vswitch.";
/// Docker's flag for `docker network create --internal`.
const INTERNAL: &str = "com.docker.network.internal";
const KNOWN: [&str; 4] = ["masquerade", "uplink", "port-type", "bridge"];

#[derive(Debug, PartialEq, Eq)]
pub struct NetworkOptions {
    pub masquerade: bool,
    pub uplink: Option<String>,
    pub port_type: PortType,
    pub bridge: Option<String>,
}

impl NetworkOptions {
    pub fn from_docker(options: &BTreeMap<String, Value>) -> Result<NetworkOptions, String> {
        let generic = match options.get(GENERIC) {
            None | Some(Value::Null) => serde_json::Map::new(),
            Some(Value::Object(map)) => map.clone(),
            Some(other) => return Err(format!("{GENERIC} is not a map of options: {other}")),
        };
        let mut opts = NetworkOptions {
            masquerade: false,
            uplink: None,
            port_type: PortType::Tap,
            bridge: None,
        };
        for (key, value) in &generic {
            let Some(name) = key.strip_prefix(PREFIX) else {
                continue;
            };
            let Some(text) = value.as_str() else {
                return Err(format!("option {key} must be a string"));
            };
            match name {
                "masquerade" => {
                    opts.masquerade = match text {
                        "true" | "1" | "yes" | "on" => true,
                        "false" | "0" | "no" | "off" | "" => false,
                        _ => return Err(format!("option {key}: '{text}' is not true or false")),
                    }
                }
                "uplink" if !text.is_empty() => opts.uplink = Some(text.to_string()),
                "uplink" => return Err(format!("option {key} needs a bridge name")),
                "port-type" => {
                    opts.port_type = match text {
                        "tap" => PortType::Tap,
                        "afxdp" => PortType::Afxdp,
                        _ => return Err(format!("option {key}: '{text}' is not tap or afxdp")),
                    }
                }
                "bridge" if !text.is_empty() => opts.bridge = Some(text.to_string()),
                "bridge" => return Err(format!("option {key} needs a name")),
                _ => {
                    return Err(format!(
                        "unknown option {key} (known: {})",
                        KNOWN.map(|k| format!("{PREFIX}{k}")).join(", ")
                    ))
                }
            }
        }
        let internal = options.get(INTERNAL).is_some_and(|v| v == &Value::Bool(true));
        if internal && opts.uplink.is_some() {
            return Err(format!(
                "an --internal network has no way out: drop {PREFIX}uplink and {PREFIX}masquerade"
            ));
        }
        if opts.masquerade && opts.uplink.is_none() {
            return Err(format!(
                "{PREFIX}masquerade=true needs {PREFIX}uplink=BR: the vswitch bridge whose uplink is the way out"
            ));
        }
        Ok(opts)
    }
}

/// The `-p` bindings in an option map (none when absent).
pub fn portmap(options: &BTreeMap<String, Value>) -> Result<Vec<PortBinding>, String> {
    match options.get(PORTMAP) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(v) => {
            let list: Vec<PortBinding> = serde_json::from_value(v.clone())
                .map_err(|e| format!("{PORTMAP} is not a list of port bindings: {e}"))?;
            for b in &list {
                proto(b.proto)?;
                if b.port == 0 {
                    return Err("a port binding to container port 0".into());
                }
            }
            Ok(list)
        }
    }
}

/// Docker's protocol number as vswitch's.
pub fn proto(number: u8) -> Result<NatProto, String> {
    match number {
        6 => Ok(NatProto::Tcp),
        17 => Ok(NatProto::Udp),
        n => Err(format!("protocol {n} cannot be published (tcp and udp can)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn opts(generic: Value) -> Result<NetworkOptions, String> {
        let map: BTreeMap<String, Value> = [(GENERIC.to_string(), generic)].into();
        NetworkOptions::from_docker(&map)
    }

    #[test]
    fn network_options_are_read_and_typos_refused() {
        let o = opts(json!({"com.vswitch.masquerade": "true", "com.vswitch.uplink": "ul",
            "com.vswitch.port-type": "afxdp", "other.tool": "x"}))
        .unwrap();
        assert_eq!(
            o,
            NetworkOptions {
                masquerade: true,
                uplink: Some("ul".into()),
                port_type: PortType::Afxdp,
                bridge: None
            }
        );
        assert_eq!(opts(json!(null)).unwrap().port_type, PortType::Tap);
        let err = opts(json!({"com.vswitch.masqerade": "true"})).unwrap_err();
        assert!(err.contains("unknown option com.vswitch.masqerade"), "{err}");
        assert!(opts(json!({"com.vswitch.masquerade": "true"}))
            .unwrap_err()
            .contains("needs com.vswitch.uplink"));
        assert!(opts(json!({"com.vswitch.port-type": "veth"})).is_err());
        assert!(opts(json!("masquerade")).is_err());
        let internal: BTreeMap<String, Value> = [
            (GENERIC.to_string(), json!({"com.vswitch.uplink": "ul"})),
            (INTERNAL.to_string(), json!(true)),
        ]
        .into();
        assert!(NetworkOptions::from_docker(&internal)
            .unwrap_err()
            .contains("--internal"));
    }

    #[test]
    fn port_bindings_are_checked() {
        let map = |v: Value| -> BTreeMap<String, Value> { [(PORTMAP.to_string(), v)].into() };
        let list = portmap(&map(
            json!([{"Proto":6,"IP":"","Port":80,"HostIP":"","HostPort":8080,"HostPortEnd":8080},
            {"Proto":17,"Port":53}]),
        ))
        .unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!((list[0].port, list[0].host_port), (80, 8080));
        assert_eq!(list[1].host_port, 0);
        assert!(portmap(&map(json!([{"Proto":1,"Port":80}])))
            .unwrap_err()
            .contains("protocol 1"));
        assert!(portmap(&map(json!({"Proto":6}))).is_err());
        assert!(portmap(&BTreeMap::new()).unwrap().is_empty());
    }
}
