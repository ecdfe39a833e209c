//! What the cluster keeps in etcd, and how it is read back.
//!
//! Under the prefix (default `/vswitch/`):
//!
//! | key                         | value                          | lease      |
//! |-----------------------------|--------------------------------|------------|
//! | `nets/NAME`                 | `{"subnet","vni","host_prefix","port"}` | none |
//! | `nodes/NODE`                | `{"vtep":"192.0.2.11"}`        | the node's |
//! | `slices/NAME/10.200.3.0-24` | `{"node":"NODE"}`              | the node's |
//! | `policies/NS/NAME`          | a NetworkPolicy (`vswitch_policy::model::Policy`) | none |
//! | `namespaces/NS`             | the namespace's labels         | none       |
//! | `members/NODE`              | the node's attachments on cluster networks (address, namespace, name, labels) | the node's |
//!
//! Policies and namespaces are the cluster's (`apply` on any host writes
//! them); `members/NODE` is one record per host, not one per container,
//! rewritten when the host's attachments change: what a remote selector
//! needs to know of the addresses behind other hosts (see `policies`).
//!
//! A node's records live under one etcd lease it keeps alive, so a node that
//! dies disappears from etcd when the lease expires, and one that leaves
//! revokes the lease and disappears at once. Anything else under the prefix,
//! or a record that does not parse, is foreign: logged and ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use tracing::warn;
use vswitch_ctl::{check_subnet, HostSlice, Ipv4Net, NetworkInfo, SubnetExt};
use vswitch_policy::model::{check_name, Labels, Policy};

pub use crate::policies::MemberRecord;

use crate::error::ClusterError;

/// The VXLAN port a network uses unless told otherwise.
pub const DEFAULT_PORT: u16 = 4789;
/// The size of a host's slice unless told otherwise.
pub const DEFAULT_HOST_PREFIX: u8 = 24;

/// A cluster-wide overlay network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkDef {
    pub subnet: Ipv4Net,
    pub vni: u32,
    pub host_prefix: u8,
    pub port: u16,
}

impl NetworkDef {
    /// Checks one definition on its own (not against the others).
    pub fn check(&self, name: &str) -> Result<(), ClusterError> {
        if !valid_name(name) {
            return Err(ClusterError::BadName(name.to_string()));
        }
        if !(1..=0xff_ffff).contains(&self.vni) {
            return Err(ClusterError::BadVni(self.vni));
        }
        if self.port == 0 {
            return Err(ClusterError::BadPort);
        }
        check_subnet(&self.subnet)?;
        if self.host_prefix <= self.subnet.prefix_len() || self.host_prefix > 30 {
            return Err(ClusterError::BadHostPrefix {
                host_prefix: self.host_prefix,
                subnet: self.subnet,
            });
        }
        Ok(())
    }

    /// How many host slices the network has.
    pub fn slice_count(&self) -> u64 {
        1u64 << (self.host_prefix - self.subnet.prefix_len())
    }

    /// The `index`th host slice, if there is one.
    pub fn slice(&self, index: u64) -> Option<Ipv4Net> {
        if index >= self.slice_count() {
            return None;
        }
        let size = 1u64 << (32 - self.host_prefix);
        let base = u64::from(u32::from(self.subnet.addr())) + index * size;
        Ipv4Net::new(Ipv4Addr::from(u32::try_from(base).ok()?), self.host_prefix).ok()
    }

    /// True when `slice` is one of the network's host slices.
    pub fn has_slice(&self, slice: &Ipv4Net) -> bool {
        slice.prefix_len() == self.host_prefix && self.subnet.contains(slice)
    }
}

/// The gateway a host serves a slice with: the slice's first host address.
pub fn slice_gateway(slice: &Ipv4Net) -> Ipv4Addr {
    slice.first_host()
}

/// Network and node names: they become bridge names and key components.
pub fn valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        && name != "."
        && name != ".."
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub vtep: Ipv4Addr,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SliceRecord {
    pub node: String,
}

/// The key names under one prefix.
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        let mut prefix = prefix.to_string();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        Keys { prefix }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn nets(&self) -> String {
        format!("{}nets/", self.prefix)
    }

    pub fn net(&self, name: &str) -> String {
        format!("{}nets/{name}", self.prefix)
    }

    pub fn node(&self, node: &str) -> String {
        format!("{}nodes/{node}", self.prefix)
    }

    /// Every slice of one network (the trailing '/' keeps `net1` from matching `net10`).
    pub fn slices_of(&self, net: &str) -> String {
        format!("{}slices/{net}/", self.prefix)
    }

    pub fn policy(&self, namespace: &str, name: &str) -> String {
        format!("{}policies/{namespace}/{name}", self.prefix)
    }

    pub fn namespace(&self, namespace: &str) -> String {
        format!("{}namespaces/{namespace}", self.prefix)
    }

    pub fn members(&self, node: &str) -> String {
        format!("{}members/{node}", self.prefix)
    }

    pub fn slice(&self, net: &str, slice: &Ipv4Net) -> String {
        format!("{}slices/{net}/{}-{}", self.prefix, slice.network(), slice.prefix_len())
    }

    /// What a key under the prefix names, or None for a foreign key.
    pub fn parse(&self, key: &str) -> Option<Key> {
        let rest = key.strip_prefix(&self.prefix)?;
        let mut parts = rest.split('/');
        let key = match (parts.next()?, parts.next(), parts.next(), parts.next()) {
            ("nets", Some(name), None, None) if valid_name(name) => Key::Net(name.to_string()),
            ("nodes", Some(node), None, None) if valid_name(node) => Key::Node(node.to_string()),
            ("members", Some(node), None, None) if valid_name(node) => Key::Members(node.to_string()),
            ("namespaces", Some(ns), None, None) if check_name("namespace", ns).is_ok() => {
                Key::Namespace(ns.to_string())
            }
            ("policies", Some(ns), Some(name), None)
                if check_name("namespace", ns).is_ok() && check_name("name", name).is_ok() =>
            {
                Key::Policy(ns.to_string(), name.to_string())
            }
            ("slices", Some(net), Some(slice), None) if valid_name(net) => {
                let (addr, prefix) = slice.split_once('-')?;
                let net_slice = format!("{addr}/{prefix}")
                    .parse::<Ipv4Net>()
                    .ok()
                    .filter(|n| n.trunc() == *n)?;
                Key::Slice(net.to_string(), net_slice)
            }
            _ => return None,
        };
        Some(key)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Key {
    Net(String),
    Node(String),
    Slice(String, Ipv4Net),
    Policy(String, String),
    Namespace(String),
    Members(String),
}

/// One record as read from etcd: the value and the lease it lives under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held<T> {
    pub value: T,
    pub lease: i64,
}

/// The cluster's state as last read (full read, then watch events).
#[derive(Clone, Debug, Default)]
pub struct View {
    pub nets: BTreeMap<String, NetworkDef>,
    pub nodes: BTreeMap<String, Held<NodeRecord>>,
    /// Per network: slice → holder.
    pub slices: BTreeMap<String, BTreeMap<SliceKey, Held<SliceRecord>>>,
    /// Network policies by `NS/NAME`.
    pub policies: BTreeMap<String, Policy>,
    /// Namespaces' labels.
    pub namespaces: BTreeMap<String, Labels>,
    /// Each node's attachments on cluster networks.
    pub members: BTreeMap<String, Held<Vec<MemberRecord>>>,
    /// Keys under the prefix that are not ours or do not parse.
    pub foreign: usize,
}

/// A slice as a map key, ordered by address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SliceKey(pub u32, pub u8);

impl SliceKey {
    pub fn of(net: &Ipv4Net) -> SliceKey {
        SliceKey(u32::from(net.network()), net.prefix_len())
    }

    pub fn net(&self) -> Option<Ipv4Net> {
        Ipv4Net::new(Ipv4Addr::from(self.0), self.1).ok().map(|n| n.trunc())
    }
}

impl View {
    /// Applies a put: a record that does not parse is foreign, and also
    /// removes what the key held before.
    pub fn put(&mut self, keys: &Keys, key: &[u8], value: &[u8], lease: i64) {
        let Some(parsed) = std::str::from_utf8(key).ok().and_then(|k| keys.parse(k)) else {
            self.foreign += 1;
            warn!(key = %String::from_utf8_lossy(key), "ignoring a key under the cluster prefix that is not ours");
            return;
        };
        self.remove(&parsed);
        let bad = |err: serde_json::Error| {
            warn!(key = %String::from_utf8_lossy(key), %err, "ignoring a cluster record that does not parse");
        };
        match parsed {
            Key::Net(name) => match serde_json::from_slice::<NetworkDef>(value) {
                Ok(def) if def.check(&name).is_ok() => {
                    self.nets.insert(name, def);
                }
                Ok(_) => {
                    self.foreign += 1;
                    warn!(network = %name, "ignoring a network definition that is not valid");
                }
                Err(err) => {
                    self.foreign += 1;
                    bad(err);
                }
            },
            Key::Node(node) => match serde_json::from_slice::<NodeRecord>(value) {
                Ok(value) => {
                    self.nodes.insert(node, Held { value, lease });
                }
                Err(err) => {
                    self.foreign += 1;
                    bad(err);
                }
            },
            Key::Policy(..) | Key::Namespace(_) | Key::Members(_) => {
                if let Err(why) = self.put_policy_record(parsed, value, lease) {
                    self.foreign += 1;
                    warn!(key = %String::from_utf8_lossy(key), %why, "ignoring a cluster record that does not parse");
                }
            }
            Key::Slice(net, slice) => match serde_json::from_slice::<SliceRecord>(value) {
                Ok(value) if valid_name(&value.node) => {
                    self.slices
                        .entry(net)
                        .or_default()
                        .insert(SliceKey::of(&slice), Held { value, lease });
                }
                Ok(_) => {
                    self.foreign += 1;
                    warn!(network = %net, %slice, "ignoring a slice held by a node with an invalid name");
                }
                Err(err) => {
                    self.foreign += 1;
                    bad(err);
                }
            },
        }
    }

    pub fn delete(&mut self, keys: &Keys, key: &[u8]) {
        if let Some(parsed) = std::str::from_utf8(key).ok().and_then(|k| keys.parse(k)) {
            self.remove(&parsed);
        }
    }

    fn remove(&mut self, key: &Key) {
        match key {
            Key::Net(name) => {
                self.nets.remove(name);
            }
            Key::Node(node) => {
                self.nodes.remove(node);
            }
            Key::Policy(ns, name) => {
                self.policies.remove(&format!("{ns}/{name}"));
            }
            Key::Namespace(ns) => {
                self.namespaces.remove(ns);
            }
            Key::Members(node) => {
                self.members.remove(node);
            }
            Key::Slice(net, slice) => {
                if let Some(slices) = self.slices.get_mut(net) {
                    slices.remove(&SliceKey::of(slice));
                    if slices.is_empty() {
                        self.slices.remove(net);
                    }
                }
            }
        }
    }

    /// The slice of `net` that `node` holds (the lowest, if it holds several).
    pub fn slice_of(&self, net: &str, node: &str) -> Option<(Ipv4Net, i64)> {
        let def = self.nets.get(net)?;
        self.slices.get(net)?.iter().find_map(|(key, held)| {
            let slice = key.net()?;
            (held.value.node == node && def.has_slice(&slice)).then_some((slice, held.lease))
        })
    }

    /// Who holds `slice` of `net`.
    pub fn holder(&self, net: &str, slice: &Ipv4Net) -> Option<&str> {
        self.slices
            .get(net)?
            .get(&SliceKey::of(slice))
            .map(|h| h.value.node.as_str())
    }

    /// The VTEPs of every other node holding a slice of `net`.
    pub fn remote_vteps(&self, net: &str, me: &str, my_vtep: Ipv4Addr) -> BTreeSet<Ipv4Addr> {
        let Some(slices) = self.slices.get(net) else {
            return BTreeSet::new();
        };
        slices
            .values()
            .map(|h| h.value.node.as_str())
            .filter(|node| *node != me)
            .filter_map(|node| self.nodes.get(node))
            .map(|n| n.value.vtep)
            .filter(|ip| *ip != my_vtep)
            .collect()
    }

    /// A network that `def` (named `name`) would clash with.
    pub fn clash(&self, name: &str, def: &NetworkDef) -> Option<ClusterError> {
        if self.nets.contains_key(name) {
            return Some(ClusterError::NetExists(name.to_string()));
        }
        self.nets.iter().find_map(|(other, o)| {
            if o.vni == def.vni {
                Some(ClusterError::VniInUse {
                    vni: def.vni,
                    other: other.clone(),
                })
            } else if o.subnet.contains(&def.subnet) || def.subnet.contains(&o.subnet) {
                Some(ClusterError::SubnetOverlaps {
                    subnet: def.subnet,
                    existing: o.subnet,
                    other: other.clone(),
                })
            } else {
                None
            }
        })
    }

    /// `net-list`'s answer.
    pub fn network_infos(&self) -> Vec<NetworkInfo> {
        self.nets
            .iter()
            .map(|(name, def)| NetworkInfo {
                name: name.clone(),
                subnet: def.subnet,
                vni: def.vni,
                host_prefix: def.host_prefix,
                port: def.port,
                hosts: self
                    .slices
                    .get(name)
                    .into_iter()
                    .flatten()
                    .filter_map(|(key, held)| {
                        Some(HostSlice {
                            node: held.value.node.clone(),
                            slice: key.net()?,
                            vtep: self.nodes.get(&held.value.node).map(|n| n.value.vtep),
                        })
                    })
                    .collect(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().expect("test subnet")
    }

    fn def(subnet: &str, vni: u32) -> NetworkDef {
        NetworkDef {
            subnet: net(subnet),
            vni,
            host_prefix: 24,
            port: DEFAULT_PORT,
        }
    }

    #[test]
    fn slices_tile_the_subnet() {
        let d = def("10.200.0.0/16", 1);
        assert_eq!(d.slice_count(), 256);
        assert_eq!(d.slice(0), Some(net("10.200.0.0/24")));
        assert_eq!(d.slice(3), Some(net("10.200.3.0/24")));
        assert_eq!(d.slice(255), Some(net("10.200.255.0/24")));
        assert_eq!(d.slice(256), None);
        assert!(d.has_slice(&net("10.200.7.0/24")));
        assert!(!d.has_slice(&net("10.201.7.0/24")));
        assert!(!d.has_slice(&net("10.200.6.0/23")));
        assert_eq!(slice_gateway(&net("10.200.3.0/24")), Ipv4Addr::new(10, 200, 3, 1));
    }

    #[test]
    fn definitions_are_checked() {
        assert!(def("10.200.0.0/16", 1).check("blue").is_ok());
        assert!(matches!(
            def("10.200.0.0/16", 0).check("blue"),
            Err(ClusterError::BadVni(0))
        ));
        assert!(matches!(
            def("10.200.0.0/16", 1 << 24).check("blue"),
            Err(ClusterError::BadVni(_))
        ));
        let mut d = def("10.200.0.0/24", 1);
        assert!(matches!(d.check("blue"), Err(ClusterError::BadHostPrefix { .. })));
        d.host_prefix = 26;
        assert!(d.check("blue").is_ok());
        assert!(matches!(
            def("10.200.0.0/16", 1).check("a/b"),
            Err(ClusterError::BadName(_))
        ));
    }

    #[test]
    fn keys_round_trip_and_foreign_keys_are_refused() {
        let keys = Keys::new("/vswitch");
        assert_eq!(keys.prefix(), "/vswitch/");
        let slice = net("10.200.3.0/24");
        assert_eq!(keys.parse(&keys.net("blue")), Some(Key::Net("blue".into())));
        assert_eq!(keys.parse(&keys.node("h1")), Some(Key::Node("h1".into())));
        assert_eq!(
            keys.parse(&keys.slice("blue", &slice)),
            Some(Key::Slice("blue".into(), slice))
        );
        for foreign in [
            "/other/nets/blue",
            "/vswitch/nets/",
            "/vswitch/nets/blue/x",
            "/vswitch/slices/blue/10.200.3.0",
            "/vswitch/slices/blue/10.200.3.1-24",
            "/vswitch/what/ever",
            "/vswitch/",
        ] {
            assert_eq!(keys.parse(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn the_view_follows_puts_and_deletes_and_ignores_garbage() {
        let keys = Keys::new("/vswitch/");
        let mut view = View::default();
        let put = |view: &mut View, k: String, v: &str, lease| view.put(&keys, k.as_bytes(), v.as_bytes(), lease);
        put(
            &mut view,
            keys.net("blue"),
            r#"{"subnet":"10.200.0.0/16","vni":42,"host_prefix":24,"port":4789}"#,
            0,
        );
        put(&mut view, keys.node("h1"), r#"{"vtep":"192.0.2.11"}"#, 7);
        put(&mut view, keys.node("h2"), r#"{"vtep":"192.0.2.12"}"#, 8);
        put(
            &mut view,
            keys.slice("blue", &net("10.200.0.0/24")),
            r#"{"node":"h1"}"#,
            7,
        );
        put(
            &mut view,
            keys.slice("blue", &net("10.200.1.0/24")),
            r#"{"node":"h2"}"#,
            8,
        );
        put(&mut view, keys.node("h3"), "not json", 9);
        put(
            &mut view,
            keys.net("red"),
            r#"{"subnet":"10.0.0.0/8","vni":0,"host_prefix":24,"port":1}"#,
            0,
        );
        put(&mut view, "/vswitch/zzz".to_string(), "x", 0);
        assert_eq!(view.foreign, 3);
        assert_eq!(view.nets.len(), 1);
        assert_eq!(view.slice_of("blue", "h2"), Some((net("10.200.1.0/24"), 8)));
        assert_eq!(view.holder("blue", &net("10.200.0.0/24")), Some("h1"));
        let me = Ipv4Addr::new(192, 0, 2, 11);
        assert_eq!(
            view.remote_vteps("blue", "h1", me).into_iter().collect::<Vec<_>>(),
            vec![Ipv4Addr::new(192, 0, 2, 12)]
        );
        // h2's lease expires: its node record and slice go.
        view.delete(&keys, keys.node("h2").as_bytes());
        view.delete(&keys, keys.slice("blue", &net("10.200.1.0/24")).as_bytes());
        assert!(view.remote_vteps("blue", "h1", me).is_empty());
        assert_eq!(view.slice_of("blue", "h2"), None);
        // A record that stops parsing stops counting.
        put(&mut view, keys.node("h1"), "{}", 7);
        assert!(!view.nodes.contains_key("h1"));
    }

    #[test]
    fn clashes_name_the_other_network() {
        let mut view = View::default();
        view.nets.insert("blue".into(), def("10.200.0.0/16", 42));
        assert!(matches!(
            view.clash("blue", &def("10.9.0.0/16", 7)),
            Some(ClusterError::NetExists(_))
        ));
        assert!(matches!(
            view.clash("red", &def("10.9.0.0/16", 42)),
            Some(ClusterError::VniInUse { vni: 42, .. })
        ));
        assert!(matches!(
            view.clash("red", &def("10.200.4.0/24", 7)),
            Some(ClusterError::SubnetOverlaps { .. })
        ));
        assert!(matches!(
            view.clash("red", &def("10.0.0.0/8", 7)),
            Some(ClusterError::SubnetOverlaps { .. })
        ));
        assert!(view.clash("red", &def("10.201.0.0/16", 7)).is_none());
    }
}
