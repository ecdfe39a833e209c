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
//!   `dk-` and the network ID's first 12 characters);
//! - `com.vswitch.namespace=NS`, `com.vswitch.label.KEY=VALUE`: the
//!   namespace and labels network policies see on its containers.
//!
//! Docker's own `com.docker.network.bridge.enable_icc=false` keeps the
//! network's containers from reaching each other (the bridge's `icc`).
//!
//! Per container, `docker run --network name=NET,driver-opt=KEY=VALUE` and
//! `docker network connect --driver-opt KEY=VALUE` (the endpoint's
//! driver options, which dockerd sends at CreateEndpoint beside its own
//! keys) take `com.vswitch.namespace`, `com.vswitch.name` and
//! `com.vswitch.label.KEY=VALUE`, over the network's.
//!
//! An unknown `com.vswitch.` key is refused (a typo must not pass
//! silently); other keys are Docker's or another tool's and are left alone.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use vswitch_ctl::{NatProto, PortType};
use vswitch_policy::model::{check_label, check_name, Labels};

use crate::api::{PortBinding, GENERIC, PORTMAP};

const PREFIX: &str = "com.vswitch.";
/// Docker's flag for `docker network create --internal`.
const INTERNAL: &str = "com.docker.network.internal";
/// Docker's bridge driver's inter-container communication switch.
const ICC: &str = "com.docker.network.bridge.enable_icc";
const LABEL: &str = "label.";
const KNOWN: [&str; 6] = ["masquerade", "uplink", "port-type", "bridge", "namespace", "label.KEY"];
/// What an endpoint's options may carry.
const KNOWN_ENDPOINT: [&str; 3] = ["namespace", "name", "label.KEY"];

/// Who a container is for network policies: its namespace, name and
/// labels (each None / empty: vswitchd's defaults).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
}

impl Identity {
    /// Reads `com.vswitch.namespace`, `name` (when `named`) and `label.*`
    /// from `key`=`text`; false when the key is none of them.
    fn read(&mut self, key: &str, name: &str, text: &str, named: bool) -> Result<bool, String> {
        if let Some(label) = name.strip_prefix(LABEL) {
            check_label(label, text).map_err(|e| format!("option {key}: {e}"))?;
            self.labels.insert(label.to_string(), text.to_string());
            return Ok(true);
        }
        match name {
            "namespace" => {
                check_name("namespace", text).map_err(|e| format!("option {key}: {e}"))?;
                self.namespace = Some(text.to_string());
            }
            "name" if named => {
                let ok = text.len() <= 253 && text.split('.').all(|p| check_name("name", p).is_ok());
                if !ok {
                    return Err(format!(
                        "option {key}: '{text}' is not a name (lowercase letters, digits, '-' and '.')"
                    ));
                }
                self.name = Some(text.to_string());
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// An endpoint's identity from its options (top-level keys, as
    /// dockerd sends driver options, or in the generic map), over the
    /// network's `base`. An unknown `com.vswitch.` key is refused.
    pub fn of_endpoint(base: &Identity, options: &BTreeMap<String, Value>) -> Result<Identity, String> {
        let mut id = base.clone();
        let generic = options.get(GENERIC).and_then(Value::as_object).into_iter().flatten();
        for (key, value) in options.iter().chain(generic) {
            let Some(name) = key.strip_prefix(PREFIX) else {
                continue;
            };
            let Some(text) = value.as_str() else {
                return Err(format!("option {key} must be a string"));
            };
            if !id.read(key, name, text, true)? {
                return Err(format!(
                    "unknown endpoint option {key} (known: {})",
                    KNOWN_ENDPOINT.map(|k| format!("{PREFIX}{k}")).join(", ")
                ));
            }
        }
        Ok(id)
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct NetworkOptions {
    pub masquerade: bool,
    pub uplink: Option<String>,
    pub port_type: PortType,
    pub bridge: Option<String>,
    /// Containers may reach each other (`enable_icc`, default true).
    pub icc: bool,
    /// The namespace and labels its containers have unless their own
    /// options say otherwise.
    pub identity: Identity,
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
            icc: true,
            identity: Identity::default(),
        };
        if let Some(value) = generic.get(ICC) {
            opts.icc = match value.as_str() {
                Some("true" | "1") => true,
                Some("false" | "0") => false,
                _ => return Err(format!("option {ICC}: {value} is not true or false")),
            };
        }
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
                _ if opts.identity.read(key, name, text, false)? => {}
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
                bridge: None,
                icc: true,
                identity: Identity::default(),
            }
        );
        let o = opts(json!({"com.docker.network.bridge.enable_icc": "false",
            "com.vswitch.namespace": "shop", "com.vswitch.label.tier": "back"}))
        .unwrap();
        assert!(!o.icc);
        assert_eq!(o.identity.namespace.as_deref(), Some("shop"));
        assert!(opts(json!({"com.docker.network.bridge.enable_icc": "nope"})).is_err());
        assert!(opts(json!({"com.vswitch.label.-x": "1"}))
            .unwrap_err()
            .contains("label key"));
        assert!(opts(json!({"com.vswitch.name": "x"}))
            .unwrap_err()
            .contains("unknown option"));
        // An endpoint's options over its network's.
        let ep: BTreeMap<String, Value> = [
            ("com.vswitch.label.app".to_string(), json!("web")),
            ("com.vswitch.label.tier".to_string(), json!("front")),
            ("com.vswitch.name".to_string(), json!("web-1")),
            ("com.docker.network.endpoint.exposedports".to_string(), json!([])),
        ]
        .into();
        let id = Identity::of_endpoint(&o.identity, &ep).unwrap();
        assert_eq!(id.namespace.as_deref(), Some("shop"));
        assert_eq!(id.name.as_deref(), Some("web-1"));
        assert_eq!(
            id.labels,
            [
                ("app".to_string(), "web".to_string()),
                ("tier".to_string(), "front".to_string())
            ]
            .into()
        );
        let typo: BTreeMap<String, Value> = [("com.vswitch.lable.app".to_string(), json!("web"))].into();
        assert!(Identity::of_endpoint(&o.identity, &typo)
            .unwrap_err()
            .contains("unknown endpoint option"));
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
