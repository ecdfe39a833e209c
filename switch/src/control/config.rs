//! Desired state: what the user configured, persisted on every change and
//! restored at start-up.
//!
//! In the switch's own types: the control protocol's enums and records
//! (`PortType`, `PublishRule`, ...) are converted at the boundary
//! (`control::wire`), so the protocol can change without touching the file.
//! Addresses (`Ipv4Net`, `MacAddr`) are plain values both ends share, like
//! `Ipv4Addr`. The JSON is the same as the earlier versions wrote.
//!
//! Saved by `store` (a state file and a journal of changes). Live objects
//! (devices, FDB, counters) are not part of it; vswitchd rebuilds them from
//! it.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use vswitch_ctl::{Ipv4Net, MacAddr, RemoteMember};
use vswitch_nat::tuple::Proto;
use vswitch_policy::model::{Labels, Policy, DEFAULT_NAMESPACE};

pub(super) const STATE_VERSION: u32 = 1;
pub const DEFAULT_AGING_SECS: u64 = 300;
pub const DEFAULT_MAX_MACS: usize = 8192;

/// A list of a bridge's, shared by the copies of the desired state until
/// one of them changes it (copy on write, through `DerefMut`). Every change
/// copies the desired state to have the old one to go back to; with 2000
/// ports, copying and then dropping every port and lease was a third of a
/// publish's time in vswitchd, for lists the publish does not touch. Equal
/// lists that are the same allocation compare in one step.
#[derive(Debug)]
pub struct Shared<T>(Arc<Vec<T>>);

/// Written and read as the plain list.
impl<T: Serialize> Serialize for Shared<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Shared<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::deserialize(d).map(Shared::from)
    }
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared(self.0.clone())
    }
}

impl<T> Default for Shared<T> {
    fn default() -> Self {
        Shared(Arc::new(Vec::new()))
    }
}

impl<T: PartialEq> PartialEq for Shared<T> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

impl<T: Eq> Eq for Shared<T> {}

impl<T> From<Vec<T>> for Shared<T> {
    fn from(list: Vec<T>) -> Self {
        Shared(Arc::new(list))
    }
}

impl<'a, T> IntoIterator for &'a Shared<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<T> Deref for Shared<T> {
    type Target = Vec<T>;
    fn deref(&self) -> &Vec<T> {
        &self.0
    }
}

impl<T: Clone> DerefMut for Shared<T> {
    /// The list to change: this copy's own (copied first if shared).
    fn deref_mut(&mut self) -> &mut Vec<T> {
        Arc::make_mut(&mut self.0)
    }
}

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
    /// Network policies, in the order applied (`vsctl apply -f`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<Policy>,
    /// Labels users gave namespaces (`label-namespace`, `apply -f` of a
    /// Namespace); a namespace not here has only its name label.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub namespaces: BTreeMap<String, Labels>,
    /// Attachments of other hosts on cluster networks, as etcd last said
    /// (kept, so that policies hold with etcd away and across restarts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remote_members: Vec<RemoteMember>,
}

impl Default for DesiredState {
    fn default() -> Self {
        DesiredState {
            version: STATE_VERSION,
            bridges: Vec::new(),
            links: Vec::new(),
            policies: Vec::new(),
            namespaces: BTreeMap::new(),
            remote_members: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeConfig {
    pub name: String,
    pub aging_secs: u64,
    pub max_macs: usize,
    pub ports: Shared<PortConfig>,
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
    pub leases: Shared<Lease>,
    /// The interface toward the outside world (`vsctl add-uplink`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uplink: Option<UplinkConfig>,
    /// Connections leaving through the uplink take its address (`set-nat`).
    #[serde(default)]
    pub masquerade: bool,
    /// Ports of the uplink address forwarded to containers (`publish`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub published: Shared<Published>,
    /// The bridge stretched over VXLAN (`add-vxlan`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan: Option<TunnelConfig>,
    /// The bridge whose uplink is this one's way out (`add-br --uplink-via`):
    /// its address masquerades and publishes for this bridge too, in its
    /// conntrack zone. Implies routing between the two.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uplink_via: Option<String>,
    /// Attachments may reach each other (Docker's `enable_icc`); when not,
    /// the policy stages keep them apart (`pipeline::policy`).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub icc: bool,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
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
    /// Who policies see (`vsctl attach --name --namespace --label`):
    /// unset name and namespace read as the netns's and `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
}

impl Lease {
    /// Its name for policies: the one given, else the netns's (the last
    /// part of a path).
    pub fn name(&self) -> &str {
        self.name
            .as_deref()
            .unwrap_or_else(|| self.netns.rsplit('/').next().unwrap_or(&self.netns))
    }

    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE)
    }
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

impl DesiredState {
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

    pub(in crate::control) fn sample() -> DesiredState {
        DesiredState {
            version: STATE_VERSION,
            links: vec![("br0".into(), "br1".into())],
            policies: Vec::new(),
            namespaces: BTreeMap::new(),
            remote_members: Vec::new(),
            bridges: vec![BridgeConfig {
                name: "br0".into(),
                aging_secs: 300,
                max_macs: 10,
                icc: true,
                subnet: Some("10.20.0.0/24".parse().unwrap()),
                gateway: Some("10.20.0.1".parse().unwrap()),
                ip_range: Some("10.20.0.128/25".parse().unwrap()),
                leases: vec![Lease {
                    ip: "10.20.0.2".parse().unwrap(),
                    netns: "c1".into(),
                    port: "p1".into(),
                    owner: None,
                    no_default_route: false,
                    name: None,
                    namespace: None,
                    labels: Labels::new(),
                }]
                .into(),
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
                }]
                .into(),
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
                }]
                .into(),
                uplink_via: None,
            }],
        }
    }
}
