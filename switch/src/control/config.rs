//! Desired state: what the user configured, persisted on every change and
//! restored at start-up.
//!
//! In the switch's own types: the control protocol's enums and records
//! (`PortType`, `PublishRule`, ...) are converted at the boundary
//! (`control::wire`), so the protocol can change without touching the file.
//! Addresses (`Ipv4Net`, `MacAddr`) are plain values both ends share, like
//! `Ipv4Addr`. The JSON is the same as the earlier versions wrote.
//!
//! Saved atomically: written to a temporary file, fsynced, renamed over the
//! old one, and the directory fsynced, so a crash at any point leaves either
//! the old or the new state, never a torn one. Live objects (devices, FDB,
//! counters) are not part of it; vswitchd rebuilds them from it.

use std::fs::{self, File};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vswitch_ctl::{Ipv4Net, MacAddr};
use vswitch_nat::tuple::Proto;

pub const STATE_FILE: &str = "state.json";
const STATE_VERSION: u32 = 1;
pub const DEFAULT_AGING_SECS: u64 = 300;
pub const DEFAULT_MAX_MACS: usize = 8192;

/// The kinds of port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortKind {
    Tap,
    Afxdp,
    /// A TAP in the host namespace wearing the gateway's MAC and address.
    Internal,
}

impl PortKind {
    pub fn name(self) -> &'static str {
        match self {
            PortKind::Tap => "tap",
            PortKind::Afxdp => "afxdp",
            PortKind::Internal => "internal",
        }
    }
}

impl std::fmt::Display for PortKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where an AF_XDP port's XDP program runs: native if the driver has it
/// (`Auto`), or as asked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpChoice {
    #[default]
    Auto,
    Native,
    Generic,
}

/// The transport protocols a port can be published for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum L4Proto {
    Tcp,
    Udp,
}

impl std::fmt::Display for L4Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            L4Proto::Tcp => "tcp",
            L4Proto::Udp => "udp",
        })
    }
}

impl From<L4Proto> for Proto {
    fn from(p: L4Proto) -> Proto {
        match p {
            L4Proto::Tcp => Proto::Tcp,
            L4Proto::Udp => Proto::Udp,
        }
    }
}

/// Connections to the uplink address's `proto`/`port` go to
/// `to_ip`:`to_port`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Published {
    pub proto: L4Proto,
    pub port: u16,
    pub to_ip: Ipv4Addr,
    pub to_port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredState {
    pub version: u32,
    pub bridges: Vec<BridgeConfig>,
    /// Pairs of bridges routed to each other (`vsctl link-br`).
    #[serde(default)]
    pub links: Vec<(String, String)>,
}

impl Default for DesiredState {
    fn default() -> Self {
        DesiredState {
            version: STATE_VERSION,
            bridges: Vec::new(),
            links: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeConfig {
    pub name: String,
    pub aging_secs: u64,
    pub max_macs: usize,
    pub ports: Vec<PortConfig>,
    /// The bridge's IPv4 subnet; vswitchd is its gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<Ipv4Net>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv4Addr>,
    /// The part of the subnet `attach` hands addresses out of (all of it
    /// when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<Ipv4Net>,
    /// Addresses handed out by `vsctl attach`, one per namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leases: Vec<Lease>,
    /// The interface toward the outside world (`vsctl add-uplink`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uplink: Option<UplinkConfig>,
    /// Connections leaving through the uplink take its address (`set-nat`).
    #[serde(default)]
    pub masquerade: bool,
    /// Ports of the uplink address forwarded to containers (`publish`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub published: Vec<Published>,
    /// The bridge stretched over VXLAN (`add-vxlan`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan: Option<TunnelConfig>,
    /// The bridge whose uplink is this one's way out (`add-br --uplink-via`):
    /// its address masquerades and publishes for this bridge too, in its
    /// conntrack zone. Implies routing between the two.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uplink_via: Option<String>,
}

/// A bridge's VXLAN tunnel: a member of the bridge whose far side is every
/// remote VTEP.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelConfig {
    pub vni: u32,
    pub port: u16,
    /// The bridge whose uplink carries the tunnel; None: the bridge's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub underlay: Option<String>,
    /// Remote VTEPs that floods reach.
    #[serde(default)]
    pub remotes: Vec<Ipv4Addr>,
    /// Learn remote MACs from what arrives.
    pub learn: bool,
    /// Compute the outer UDP checksum on send (zero otherwise).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub udp_csum: bool,
    /// Remote MACs given by `fdb-add`, with their VTEP.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub static_macs: Vec<(MacAddr, Ipv4Addr)>,
}

impl BridgeConfig {
    /// The bridge whose uplink is this bridge's way out, and whose
    /// conntrack zone its NAT uses: the one named by `uplink_via`, or itself.
    pub fn way_out(&self) -> &str {
        self.uplink_via.as_deref().unwrap_or(&self.name)
    }

    /// The bridge whose uplink carries this bridge's tunnel.
    pub fn underlay(&self) -> Option<&str> {
        let tunnel = self.vxlan.as_ref()?;
        Some(tunnel.underlay.as_deref().unwrap_or(&self.name))
    }
}

/// The gateway's leg on the outside: a port on `iface` (its name is the
/// port's name too) with the switch's outside address and next hop.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UplinkConfig {
    pub iface: String,
    pub port_type: PortKind,
    #[serde(default)]
    pub mode: XdpChoice,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gw: Ipv4Addr,
    /// The MAC the uplink's frames carry: an AF_XDP interface's own, as
    /// found when the uplink was added; for a TAP, vswitchd's side of it.
    pub mac: Option<MacAddr>,
    /// A TAP uplink moved into this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// An AF_XDP interface shared with the host's stack: the uplink has a
    /// MAC of its own (`mac`) and gets only what is sent to it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shared: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub ip: Ipv4Addr,
    pub netns: String,
    /// The port attached for this lease.
    pub port: String,
    /// Who asked for it: a container runtime's ID for the attachment (a
    /// Docker endpoint, a CNI container), so a runtime finds what it left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The namespace's default route is not via this bridge's gateway.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_default_route: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortConfig {
    pub name: String,
    pub port_type: PortKind,
    pub netns: Option<String>,
    pub ifname: String,
    /// Given by the user, or the kernel's choice at creation, kept so that a
    /// restart gives the container the same address.
    pub mac: Option<MacAddr>,
    /// AF_XDP settings, for `afxdp` ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub afxdp: Option<AfxdpConfig>,
    /// Made in vswitchd's namespace for a runtime to move into this one
    /// itself (Docker's Join); once it is seen there, `netns` and `ifname`
    /// say where it went and this is cleared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moves_to: Option<String>,
    /// An attached port that may send from any address (a router, VMs
    /// behind it): no source guard.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_any_src: bool,
}

/// How an AF_XDP port attaches. With `iface` set it binds to that existing
/// interface; otherwise it owns a veth pair whose host end is named after
/// the port and whose other end is `ifname` in `netns`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AfxdpConfig {
    pub mode: XdpChoice,
    pub queue: u32,
    #[serde(default)]
    pub iface: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read state file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("state file {path} is not valid ({way_out}; vswitchd will not guess)")]
    Parse {
        path: PathBuf,
        way_out: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("state file {path} breaks a rule ({way_out})")]
    Invalid {
        path: PathBuf,
        way_out: String,
        #[source]
        source: super::validate::Invalid,
    },
    #[error("state file {path} has version {found}; this vswitchd reads version {STATE_VERSION}")]
    Version { path: PathBuf, found: u32 },
    #[error("cannot write state file {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn prev_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".prev");
    PathBuf::from(name)
}

/// What a user can do about a damaged state file.
fn way_out(path: &Path) -> String {
    let prev = prev_path(path);
    if prev.exists() {
        format!(
            "the configuration before the last change is in {}: move it over {} to start from it, or move {} away to start empty",
            prev.display(),
            path.display(),
            path.display()
        )
    } else {
        format!("fix it, or move {} away to start empty", path.display())
    }
}

impl DesiredState {
    /// Reads the state in `dir`; no file means nothing configured yet.
    pub fn load(dir: &Path) -> Result<DesiredState, StateError> {
        let path = dir.join(STATE_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(DesiredState::default()),
            Err(source) => return Err(StateError::Read { path, source }),
        };
        let state: DesiredState = serde_json::from_str(&text).map_err(|source| StateError::Parse {
            path: path.clone(),
            way_out: way_out(&path),
            source,
        })?;
        if state.version != STATE_VERSION {
            return Err(StateError::Version {
                path,
                found: state.version,
            });
        }
        state.validate().map_err(|source| StateError::Invalid {
            way_out: way_out(&path),
            path,
            source,
        })?;
        Ok(state)
    }

    /// Replaces the state in `dir` atomically. The state it replaces stays
    /// beside it as `state.json.prev` (a second name for the old file, not
    /// a copy), the way back should the new one ever be damaged.
    pub fn save(&self, dir: &Path) -> Result<(), StateError> {
        let path = dir.join(STATE_FILE);
        let tmp = dir.join(format!("{STATE_FILE}.tmp"));
        let prev = prev_path(&path);
        let prev_tmp = dir.join(format!("{STATE_FILE}.prev.tmp"));
        let write = || -> io::Result<()> {
            let mut text = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
            text.push(b'\n');
            let mut file = File::create(&tmp)?;
            file.write_all(&text)?;
            file.sync_all()?;
            if path.exists() {
                let _ = fs::remove_file(&prev_tmp);
                fs::hard_link(&path, &prev_tmp)?;
                fs::rename(&prev_tmp, &prev)?;
            }
            fs::rename(&tmp, &path)?;
            File::open(dir)?.sync_all()
        };
        write().map_err(|source| StateError::Write { path, source })
    }

    /// True when `a` and `b` may route to each other.
    pub fn linked(&self, a: &str, b: &str) -> bool {
        self.links.iter().any(|(x, y)| (x == a && y == b) || (x == b && y == a))
    }

    pub fn bridge(&self, name: &str) -> Option<&BridgeConfig> {
        self.bridges.iter().find(|b| b.name == name)
    }

    pub fn bridge_mut(&mut self, name: &str) -> Option<&mut BridgeConfig> {
        self.bridges.iter_mut().find(|b| b.name == name)
    }

    /// The port named `name` and the bridge it is on.
    pub fn port(&self, name: &str) -> Option<(&BridgeConfig, &PortConfig)> {
        self.bridges
            .iter()
            .find_map(|b| b.ports.iter().find(|p| p.name == name).map(|p| (b, p)))
    }

    pub fn ports(&self) -> impl Iterator<Item = (&BridgeConfig, &PortConfig)> {
        self.bridges.iter().flat_map(|b| b.ports.iter().map(move |p| (b, p)))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vswitch-config-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    pub(in crate::control) fn sample() -> DesiredState {
        DesiredState {
            version: STATE_VERSION,
            links: vec![("br0".into(), "br1".into())],
            bridges: vec![BridgeConfig {
                name: "br0".into(),
                aging_secs: 300,
                max_macs: 10,
                subnet: Some("10.20.0.0/24".parse().unwrap()),
                gateway: Some("10.20.0.1".parse().unwrap()),
                ip_range: Some("10.20.0.128/25".parse().unwrap()),
                leases: vec![Lease {
                    ip: "10.20.0.2".parse().unwrap(),
                    netns: "c1".into(),
                    port: "p1".into(),
                    owner: None,
                    no_default_route: false,
                }],
                uplink: Some(UplinkConfig {
                    iface: "up0".into(),
                    port_type: PortKind::Afxdp,
                    mode: XdpChoice::Generic,
                    ip: "192.0.2.2".parse().unwrap(),
                    prefix: 24,
                    gw: "192.0.2.1".parse().unwrap(),
                    mac: Some(MacAddr([2, 0x76, 0x74, 1, 2, 3])),
                    netns: None,
                    shared: true,
                }),
                masquerade: true,
                published: vec![Published {
                    proto: L4Proto::Tcp,
                    port: 8080,
                    to_ip: "10.20.0.2".parse().unwrap(),
                    to_port: 80,
                }],
                vxlan: Some(TunnelConfig {
                    vni: 42,
                    port: 4789,
                    underlay: None,
                    remotes: vec!["192.0.2.9".parse().unwrap()],
                    learn: true,
                    udp_csum: true,
                    static_macs: vec![("02:00:00:00:00:09".parse().unwrap(), "192.0.2.9".parse().unwrap())],
                }),
                ports: vec![PortConfig {
                    name: "p1".into(),
                    port_type: PortKind::Tap,
                    netns: Some("c1".into()),
                    ifname: "eth0".into(),
                    mac: Some("02:00:00:00:00:01".parse().unwrap()),
                    afxdp: None,
                    moves_to: None,
                    allow_any_src: false,
                }],
                uplink_via: None,
            }],
        }
    }

    #[test]
    fn a_damaged_state_names_the_way_back() {
        let dir = temp_dir("damaged");
        let first = DesiredState::default();
        first.save(&dir).unwrap();
        let err = |dir: &Path| crate::control::error_chain(&DesiredState::load(dir).unwrap_err());
        fs::write(dir.join(STATE_FILE), "{\"version\":1,\"bridges\":[{").unwrap();
        let text = err(&dir);
        assert!(text.contains("fix it, or move"), "no previous state yet: {text}");
        fs::remove_dir_all(&dir).unwrap();

        let dir = temp_dir("damaged2");
        first.save(&dir).unwrap();
        let mut second = first.clone();
        second.links.clear();
        second.bridges.push(sample().bridges[0].clone());
        second.bridges[0].vxlan = None;
        second.save(&dir).unwrap();
        assert_eq!(DesiredState::load(&dir).unwrap(), second);
        // The state before the last save is kept beside it.
        let prev: DesiredState = serde_json::from_slice(&fs::read(dir.join("state.json.prev")).unwrap()).unwrap();
        assert_eq!(prev, first);
        fs::write(dir.join(STATE_FILE), b"\0\0\0").unwrap();
        let text = err(&dir);
        assert!(
            text.starts_with(&format!(
                "state file {}/state.json is not valid (the configuration before the last change is in",
                dir.display()
            )),
            "{text}"
        );
        // A file that parses but breaks a rule is refused too.
        let mut broken = second.clone();
        broken.bridges.push(second.bridges[0].clone());
        fs::write(dir.join(STATE_FILE), serde_json::to_vec(&broken).unwrap()).unwrap();
        let text = err(&dir);
        assert!(
            text.contains("breaks a rule") && text.contains("already exists"),
            "{text}"
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn save_then_load_round_trips() {
        let dir = temp_dir("rt");
        assert_eq!(
            DesiredState::load(&dir).unwrap(),
            DesiredState::default(),
            "no file, nothing configured"
        );
        // The sample, with the bridge its link names, is a valid state.
        let mut state = sample();
        let mut br1 = BridgeConfig {
            name: "br1".into(),
            subnet: Some("10.21.0.0/24".parse().unwrap()),
            gateway: Some("10.21.0.1".parse().unwrap()),
            ..sample().bridges[0].clone()
        };
        (br1.ports, br1.leases, br1.uplink, br1.vxlan, br1.ip_range) = (vec![], vec![], None, None, None);
        br1.published.clear();
        state.bridges.push(br1);
        state.save(&dir).unwrap();
        assert_eq!(DesiredState::load(&dir).unwrap(), state);
        assert!(!dir.join("state.json.tmp").exists());
        let (br, port) = sample()
            .port("p1")
            .map(|(b, p)| (b.name.clone(), p.ifname.clone()))
            .unwrap();
        assert_eq!((br.as_str(), port.as_str()), ("br0", "eth0"));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_corrupt_file_is_an_error_not_an_empty_config() {
        let dir = temp_dir("bad");
        fs::write(dir.join(STATE_FILE), "{ not json").unwrap();
        assert!(matches!(DesiredState::load(&dir), Err(StateError::Parse { .. })));
        fs::write(dir.join(STATE_FILE), r#"{"version": 99, "bridges": []}"#).unwrap();
        assert!(matches!(
            DesiredState::load(&dir),
            Err(StateError::Version { found: 99, .. })
        ));
        fs::remove_dir_all(dir).unwrap();
    }

    /// A file as earlier versions wrote it, with the protocol's spelling.
    #[test]
    fn an_earlier_file_still_loads() {
        let dir = temp_dir("old");
        let text = r#"{"version":1,"bridges":[{"name":"br0","aging_secs":300,"max_macs":8192,
            "ports":[{"name":"p1","port_type":"afxdp","netns":"c1","ifname":"eth0","mac":null,
            "afxdp":{"mode":"generic","queue":0,"iface":null}}],
            "subnet":"10.20.0.0/24","gateway":"10.20.0.1",
            "uplink":{"iface":"up0","port_type":"tap","mode":"auto","ip":"192.0.2.2","prefix":24,"gw":"192.0.2.1","mac":null},
            "masquerade":true,"published":[{"proto":"udp","port":53,"to_ip":"10.20.0.2","to_port":5353}]}],
            "links":[]}"#;
        fs::write(dir.join(STATE_FILE), text).unwrap();
        let state = DesiredState::load(&dir).unwrap();
        let br = &state.bridges[0];
        assert_eq!(br.ports[0].port_type, PortKind::Afxdp);
        assert_eq!(br.ports[0].afxdp.as_ref().unwrap().mode, XdpChoice::Generic);
        assert_eq!(br.uplink.as_ref().unwrap().port_type, PortKind::Tap);
        assert_eq!(br.published[0].proto, L4Proto::Udp);
        fs::remove_dir_all(dir).unwrap();
    }
}
