//! The commands: ADD, DEL, CHECK, GC and STATUS, as control requests to
//! vswitchd (the plugin never touches the switch's devices itself).
//!
//! - ADD: the bridge is made if it does not exist yet (with its subnet, an
//!   internal port so the host reaches the containers, masquerade and the
//!   way out when configured), then `attach` with the container's
//!   namespace as CNI_IFNAME: vswitchd creates the port, gives the address
//!   (its own lease, or IP= from CNI_ARGS) and the default route (unless
//!   the namespace has one: a second network); port mappings are published.
//! - DEL: the attachment of this container on this bridge is detached
//!   (which unpublishes its ports), found by its owner, so it works when
//!   the namespace is gone; nothing there is success.
//! - GC: every attachment of this bridge owned by a container not listed
//!   in `cni.dev/valid-attachments` is detached.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde_json::Value;
use vswitch_ctl::client::{call, ClientError};
use vswitch_ctl::network::RuntimeNetwork;
use vswitch_ctl::{
    parse_subnet, req, AttachmentInfo, BridgeInfo, Ipv4Net, MacAddr, NatProto, PortType, PublishRule, Reply, Request,
};

use vswitch_policy::model::{check_label, check_name, Labels};

use crate::env::{Env, LABELS_ARG};
use crate::inside;
use crate::spec::{Added, CniError, Code, NetConf, SUPPORTED};

/// A container's identity for policies (see [`Net::pod`]).
struct Pod {
    namespace: Option<String>,
    name: Option<String>,
    labels: Labels,
}

const DEFAULT_SUBNET: &str = "10.88.0.0/16";
const MAX_BRIDGE_NAME: usize = 32;

/// A configuration checked and with its defaults filled in.
pub struct Net {
    pub conf: NetConf,
    pub bridge: String,
    socket: PathBuf,
    port_type: PortType,
}

impl Net {
    pub fn new(conf: NetConf) -> Result<Net, CniError> {
        if !SUPPORTED.contains(&conf.cni_version.as_str()) {
            return Err(CniError::new(
                Code::IncompatibleVersion,
                format!(
                    "CNI version {} is not supported (this plugin: {})",
                    conf.cni_version,
                    SUPPORTED.join(", ")
                ),
            ));
        }
        let invalid = |msg: String| CniError::new(Code::InvalidConfig, msg);
        if conf.name.is_empty() {
            return Err(invalid("the network has no name".into()));
        }
        let bridge = match &conf.bridge {
            Some(b) => b.clone(),
            None => {
                let clean: String = (conf.name.chars())
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || "._-".contains(c) {
                            c
                        } else {
                            '-'
                        }
                    })
                    .collect();
                format!("cni-{clean}").chars().take(MAX_BRIDGE_NAME).collect()
            }
        };
        let port_type = match conf.port_type.as_deref() {
            None | Some("tap") => PortType::Tap,
            Some("afxdp") => PortType::Afxdp,
            Some(other) => return Err(invalid(format!("portType '{other}' is not tap or afxdp"))),
        };
        if conf.masquerade == Some(true) && conf.uplink.is_none() {
            return Err(invalid(
                "masquerade needs \"uplink\": the vswitch bridge whose uplink is the way out".into(),
            ));
        }
        let socket = conf
            .socket
            .clone()
            .unwrap_or_else(|| PathBuf::from(vswitch_ctl::DEFAULT_SOCKET));
        Ok(Net {
            conf,
            bridge,
            socket,
            port_type,
        })
    }

    fn vs(&self, request: &Request) -> Result<Reply, CniError> {
        call(&self.socket, request).map_err(|e| match e {
            ClientError::Unreachable { .. } => CniError::new(Code::TryAgainLater, e.to_string()),
            ClientError::Refused(msg) => CniError::new(Code::Refused, format!("vswitchd: {msg}")),
            other => CniError::new(Code::Io, other.to_string()),
        })
    }

    fn show(&self) -> Result<Vec<BridgeInfo>, CniError> {
        match self.vs(&Request::Show)? {
            Reply::Show(b) => Ok(b),
            _ => Err(CniError::new(Code::Io, "vswitchd answered show with something else")),
        }
    }

    fn attachments(&self) -> Result<Vec<AttachmentInfo>, CniError> {
        match self.vs(&Request::ListAttachments)? {
            Reply::Attachments(list) => Ok(list.into_iter().filter(|a| a.bridge == self.bridge).collect()),
            _ => Err(CniError::new(
                Code::Io,
                "vswitchd answered list-attachments with something else",
            )),
        }
    }

    /// The bridge as configured; made when missing. Returns its subnet.
    fn ensure_bridge(&self) -> Result<Ipv4Net, CniError> {
        let invalid = |msg: String| CniError::new(Code::InvalidConfig, msg);
        let subnet: Option<Ipv4Net> = match &self.conf.subnet {
            Some(s) => Some(parse_subnet(s).map_err(|e| invalid(e.to_string()))?),
            None => None,
        };
        let existing = self.show()?.into_iter().find(|b| b.name == self.bridge);
        let br = match existing {
            Some(br) => br,
            None => {
                let subnet = subnet.unwrap_or_else(|| DEFAULT_SUBNET.parse().expect("the default subnet parses"));
                self.create_bridge(subnet)?;
                self.show()?
                    .into_iter()
                    .find(|b| b.name == self.bridge)
                    .ok_or_else(|| CniError::new(Code::Io, format!("bridge {} vanished", self.bridge)))?
            }
        };
        let Some(have) = br.subnet else {
            return Err(invalid(format!("bridge {} exists without a subnet", self.bridge)));
        };
        if subnet.is_some_and(|s| s != have) {
            return Err(invalid(format!(
                "bridge {} exists with subnet {have}, not {}",
                self.bridge,
                subnet.map(|s| s.to_string()).unwrap_or_default()
            )));
        }
        if let Some(m) = self.conf.masquerade.filter(|m| *m != br.masquerade) {
            self.vs(&Request::SetNat(req::SetNat {
                bridge: self.bridge.clone(),
                masquerade: m,
            }))?;
        }
        Ok(have)
    }

    /// Makes the bridge, its internal port and its masquerade in one
    /// transaction (`RuntimeNetwork`, as the Docker driver does).
    fn create_bridge(&self, subnet: Ipv4Net) -> Result<(), CniError> {
        let network = RuntimeNetwork {
            bridge: self.bridge.clone(),
            subnet,
            gateway: self.conf.gateway,
            uplink_via: self.conf.uplink.clone(),
            internal: format!("vsc{:08x}", fnv1a(self.bridge.as_bytes())),
            masquerade: self.conf.masquerade == Some(true),
            icc: true,
        };
        match self.vs(&network.create()) {
            Ok(_) => Ok(()),
            // Another ADD made it a moment ago (nothing of this one was made).
            Err(e) if e.code == Code::Refused && e.msg.contains("already exists") => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub fn add(&self, env: &Env) -> Result<Value, CniError> {
        let id = env.container_id()?;
        let netns = env.need(&env.netns, "CNI_NETNS")?;
        let ifname = env.ifname()?;
        let bad_env = |msg: String| CniError::new(Code::BadEnvironment, msg);
        let ip: Option<Ipv4Addr> = match env.arg("IP") {
            Some(t) => Some(
                t.parse()
                    .map_err(|_| bad_env(format!("CNI_ARGS IP='{t}' is not an IPv4 address")))?,
            ),
            None => None,
        };
        let mac: Option<MacAddr> = match env.arg("MAC") {
            Some(t) => Some(
                t.parse()
                    .map_err(|_| bad_env(format!("CNI_ARGS MAC='{t}' is not a MAC address")))?,
            ),
            None => None,
        };
        let pod = self.pod(env)?;
        let seen = inside::look(netns).map_err(|e| {
            CniError::new(
                Code::BadEnvironment,
                format!("CNI_NETNS {netns} cannot be entered: {e}"),
            )
        })?;
        if seen.links.contains_key(ifname) {
            return Err(CniError::new(
                Code::InvalidConfig,
                format!("{ifname} already exists in {netns}"),
            ));
        }
        self.ensure_bridge()?;
        // A second network of the container leaves its default route alone.
        let default_route = seen.default_routes.is_empty();
        let reply = self.vs(&Request::Attach(req::Attach {
            bridge: self.bridge.clone(),
            netns: netns.to_string(),
            port_type: self.port_type,
            ip,
            ifname: Some(ifname.to_string()),
            mac,
            owner: Some(id.to_string()),
            handoff: false,
            default_route: Some(default_route),
            allow_any_src: false,
            name: pod.name,
            namespace: pod.namespace,
            labels: pod.labels,
        }))?;
        let Reply::Attached(a) = reply else {
            return Err(CniError::new(Code::Io, "vswitchd answered attach with something else"));
        };
        if let Err(err) = self.publish(a.ip) {
            let _ = self.vs(&Request::Detach(req::Detach {
                if_exists: false,
                bridge: self.bridge.clone(),
                netns: netns.to_string(),
            }));
            return Err(err);
        }
        let added = Added {
            ifname: ifname.to_string(),
            mac: a.mac.map(|m| m.to_string()).unwrap_or_default(),
            sandbox: netns.to_string(),
            ip: a.ip,
            prefix: a.prefix,
            gateway: a.gateway,
            default_route,
        };
        Ok(added.to_json(&self.conf.cni_version, self.conf.dns.as_ref()))
    }

    /// Who the container is for policies: namespace and name from
    /// `K8S_POD_NAMESPACE` / `K8S_POD_NAME` in CNI_ARGS, labels from the
    /// configuration's `args.cni.labels` and then CNI_ARGS'
    /// `VSWITCH_LABELS=k=v,k=v` (which wins on a key both give).
    fn pod(&self, env: &Env) -> Result<Pod, CniError> {
        let mut labels = Labels::new();
        for kv in &self.conf.args.cni.labels {
            check_label(&kv.key, &kv.value)
                .map_err(|e| CniError::new(Code::InvalidConfig, format!("args.cni.labels: {e}")))?;
            labels.insert(kv.key.clone(), kv.value.clone());
        }
        if let Some(text) = env.arg(LABELS_ARG) {
            for pair in text.split(',').filter(|p| !p.is_empty()) {
                let bad = |e: String| CniError::new(Code::BadEnvironment, format!("CNI_ARGS {LABELS_ARG}: {e}"));
                let (k, v) = pair
                    .split_once('=')
                    .ok_or_else(|| bad(format!("'{pair}' is not KEY=VALUE")))?;
                check_label(k, v).map_err(bad)?;
                labels.insert(k.to_string(), v.to_string());
            }
        }
        let namespace = match env.arg("K8S_POD_NAMESPACE") {
            Some(ns) => {
                check_name("K8S_POD_NAMESPACE", ns).map_err(|e| CniError::new(Code::BadEnvironment, e))?;
                Some(ns.to_string())
            }
            None => None,
        };
        // Kubernetes' pod names are DNS subdomains; podman passes its
        // container's name, which may have capitals or '_': such a name is
        // not used (the attachment keeps its netns's name).
        let name = env
            .arg("K8S_POD_NAME")
            .filter(|n| n.len() <= 253 && n.split('.').all(|part| check_name("name", part).is_ok()))
            .map(str::to_string);
        Ok(Pod {
            namespace,
            name,
            labels,
        })
    }

    /// The `portMappings` capability: each mapping published on the way
    /// out's uplink address.
    fn publish(&self, ip: Ipv4Addr) -> Result<(), CniError> {
        for m in &self.conf.runtime_config.port_mappings {
            let proto = match m.protocol.as_deref().map(str::to_ascii_lowercase).as_deref() {
                None | Some("tcp") => NatProto::Tcp,
                Some("udp") => NatProto::Udp,
                Some(other) => {
                    return Err(CniError::new(
                        Code::InvalidConfig,
                        format!("port mapping protocol '{other}' (tcp and udp can be published)"),
                    ))
                }
            };
            if let Some(host_ip) = m.host_ip.as_deref().filter(|h| !h.is_empty() && *h != "0.0.0.0") {
                return Err(CniError::new(
                    Code::InvalidConfig,
                    format!(
                        "port mapping to host IP {host_ip}: ports are published on the way out's uplink address only"
                    ),
                ));
            }
            self.vs(&Request::Publish(req::Publish {
                may_exist: false,
                bridge: self.bridge.clone(),
                rule: PublishRule {
                    proto,
                    port: m.host_port,
                    to_ip: ip,
                    to_port: m.container_port,
                },
            }))?;
        }
        Ok(())
    }

    pub fn del(&self, env: &Env) -> Result<(), CniError> {
        let id = env.container_id()?;
        env.ifname()?;
        let attachments = match self.attachments() {
            Ok(list) => list,
            // The bridge is gone, or never was: nothing of ours is left.
            Err(e) if e.code == Code::Refused => return Ok(()),
            Err(e) => return Err(e),
        };
        for a in attachments.iter().filter(|a| a.owner.as_deref() == Some(id)) {
            self.detach(a)?;
        }
        Ok(())
    }

    fn detach(&self, a: &AttachmentInfo) -> Result<(), CniError> {
        match self.vs(&Request::Detach(req::Detach {
            if_exists: false,
            bridge: a.bridge.clone(),
            netns: a.netns.clone(),
        })) {
            Ok(_) => Ok(()),
            Err(e) if e.code == Code::Refused && e.msg.contains("is not attached") => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub fn check(&self, env: &Env) -> Result<(), CniError> {
        let id = env.container_id()?;
        let netns = env.need(&env.netns, "CNI_NETNS")?;
        let ifname = env.ifname()?;
        let failed = |msg: String| CniError::new(Code::CheckFailed, msg);
        let prev = self
            .conf
            .prev_result
            .as_ref()
            .ok_or_else(|| CniError::new(Code::InvalidConfig, "CHECK needs prevResult"))?;
        let att = self
            .attachments()?
            .into_iter()
            .find(|a| a.owner.as_deref() == Some(id))
            .ok_or_else(|| failed(format!("container {id} is not attached to bridge {}", self.bridge)))?;
        if att.state != "up" {
            return Err(failed(format!("port {} is {}", att.port, att.state)));
        }
        let seen = inside::look(netns).map_err(|e| failed(format!("{netns} cannot be entered: {e}")))?;
        let link = seen
            .links
            .get(ifname)
            .ok_or_else(|| failed(format!("{ifname} is missing in {netns}")))?;
        let ifaces = prev["interfaces"].as_array().cloned().unwrap_or_default();
        let want_mac = ifaces
            .iter()
            .find(|i| i["name"] == ifname)
            .and_then(|i| i["mac"].as_str());
        if let (Some(want), Some(have)) = (want_mac, &link.mac) {
            if !want.eq_ignore_ascii_case(have) {
                return Err(failed(format!("{ifname} has MAC {have}, not {want}")));
            }
        }
        for ip in prev["ips"].as_array().into_iter().flatten() {
            let Some((addr, prefix)) = ip["address"].as_str().and_then(|a| a.split_once('/')) else {
                continue;
            };
            let want = (addr.parse::<Ipv4Addr>().ok(), prefix.parse::<u8>().ok());
            if !link.addrs.iter().any(|(a, p)| (Some(*a), Some(*p)) == want) {
                return Err(failed(format!("{ifname} lacks {addr}/{prefix}")));
            }
        }
        for route in prev["routes"].as_array().into_iter().flatten() {
            if route["dst"] != "0.0.0.0/0" {
                continue;
            }
            let gw: Option<Ipv4Addr> = route["gw"].as_str().and_then(|g| g.parse().ok());
            if !seen
                .default_routes
                .iter()
                .any(|(dev, g)| dev == ifname && Some(*g) == gw)
            {
                return Err(failed(format!("no default route via {} on {ifname}", route["gw"])));
            }
        }
        Ok(())
    }

    pub fn gc(&self) -> Result<(), CniError> {
        let valid = (self.conf.valid_attachments.as_ref())
            .or(self.conf.attachments.as_ref())
            .ok_or_else(|| CniError::new(Code::InvalidConfig, "GC needs cni.dev/valid-attachments"))?;
        let attachments = match self.attachments() {
            Ok(list) => list,
            Err(e) if e.code == Code::Refused => return Ok(()),
            Err(e) => return Err(e),
        };
        for a in &attachments {
            let Some(owner) = &a.owner else { continue }; // Not a runtime's.
            let listed = valid
                .iter()
                .any(|v| &v.container_id == owner && a.ifname.as_deref() == Some(v.ifname.as_str()));
            if !listed {
                self.detach(a)?;
            }
        }
        Ok(())
    }

    /// STATUS: ready when vswitchd answers.
    pub fn status(&self) -> Result<(), CniError> {
        self.show()
            .map(|_| ())
            .map_err(|e| CniError::new(Code::NotAvailable, e.msg))
    }
}

fn fnv1a(bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .fold(0x811c_9dc5u32, |h, &b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}
