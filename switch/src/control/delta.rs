//! One committed change as the difference between two desired states, the
//! way the journal (`store`) records it: the bridges removed, and for each
//! bridge added or changed its settings (when they changed) and what its
//! port, lease and published lists lost and gained. A publish among 2000
//! ports is ~100 bytes instead of the whole state.
//!
//! Replaying a delta on the state it was taken from gives the new state
//! exactly, order included (the order of ports decides their slots). A
//! difference a delta cannot say exactly (a list reordered, an element
//! removed and added back at the end) is not recorded as one:
//! [`Delta::between`] returns `None` and the store writes the whole state.

use hashbrown::{HashMap, HashSet};
use std::collections::BTreeMap;
use std::hash::Hash;
use std::net::Ipv4Addr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use vswitch_policy::model::{Labels, Policy};

use super::config::{BridgeConfig, DesiredState, L4Proto, Lease, PortConfig, Published, Shared};

/// The difference between two desired states.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    /// Bridges removed, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub del_bridges: Vec<String>,
    /// Bridges changed in place, then bridges added (at the end), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bridges: Vec<BridgeDelta>,
    /// The links, when they changed (a short list: whole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub links: Option<Vec<(String, String)>>,
    /// The network policies, when they changed (whole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<Vec<Policy>>,
    /// The namespaces' labels, when they changed (whole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<BTreeMap<String, Labels>>,
    /// Other hosts' attachments, when they changed (whole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_members: Option<Vec<vswitch_ctl::RemoteMember>>,
}

/// What changed in one bridge.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BridgeDelta {
    pub name: String,
    /// A bridge added (with its settings), not one changed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub new: bool,
    /// Its settings, with empty lists, when they changed or it is new.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<BridgeConfig>,
    #[serde(default, skip_serializing_if = "ListDelta::is_empty")]
    pub ports: ListDelta<PortConfig>,
    #[serde(default, skip_serializing_if = "ListDelta::is_empty")]
    pub leases: ListDelta<Lease>,
    #[serde(default, skip_serializing_if = "ListDelta::is_empty")]
    pub published: ListDelta<Published>,
}

/// A list's change: elements removed by key, then each of `set` replacing
/// the element of its key in place, or appended if there is none.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound(serialize = "T: Serialize", deserialize = "T: DeserializeOwned"))]
pub struct ListDelta<T: Keyed> {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub del: Vec<T::Key>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<T>,
}

impl<T: Keyed> Default for ListDelta<T> {
    fn default() -> Self {
        ListDelta {
            del: Vec::new(),
            set: Vec::new(),
        }
    }
}

/// An element of a list a delta edits: its key is unique in the list.
pub trait Keyed: Clone + PartialEq {
    type Key: Clone + Eq + Hash + std::fmt::Debug + Serialize + DeserializeOwned;
    fn key(&self) -> Self::Key;
}

impl Keyed for PortConfig {
    type Key = String;
    fn key(&self) -> String {
        self.name.clone()
    }
}

impl Keyed for Lease {
    type Key = Ipv4Addr;
    fn key(&self) -> Ipv4Addr {
        self.ip
    }
}

impl Keyed for Published {
    type Key = (L4Proto, u16);
    fn key(&self) -> (L4Proto, u16) {
        (self.proto, self.port)
    }
}

/// Why a delta does not apply to a state: it was not taken from it.
#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    #[error("it changes bridge '{0}', which does not exist")]
    NoBridge(String),
    #[error("it adds bridge '{0}', which exists")]
    BridgeExists(String),
}

impl<T: Keyed> ListDelta<T> {
    fn is_empty(&self) -> bool {
        self.del.is_empty() && self.set.is_empty()
    }

    /// The change from `old` to `new`, if a delta says it exactly.
    fn between(old: &[T], new: &[T]) -> Option<ListDelta<T>> {
        // The same list (shared by both states) first: one comparison.
        if std::ptr::eq(old, new) || old == new {
            return Some(ListDelta::default());
        }
        let old_keys: HashSet<T::Key> = old.iter().map(Keyed::key).collect();
        let new_keys: HashSet<T::Key> = new.iter().map(Keyed::key).collect();
        if old_keys.len() != old.len() || new_keys.len() != new.len() {
            return None;
        }
        let del: Vec<T::Key> = old.iter().map(Keyed::key).filter(|k| !new_keys.contains(k)).collect();
        // What stays keeps its order, at the front; what is new follows.
        let kept = old.iter().filter(|o| new_keys.contains(&o.key()));
        let mut set = Vec::new();
        let mut at = 0;
        for o in kept {
            let n = new.get(at)?;
            if n.key() != o.key() {
                return None;
            }
            if n != o {
                set.push(n.clone());
            }
            at += 1;
        }
        for n in new.get(at..).unwrap_or_default() {
            if old_keys.contains(&n.key()) {
                return None;
            }
            set.push(n.clone());
        }
        Some(ListDelta { del, set })
    }

    fn apply(self, list: &mut Vec<T>) {
        if !self.del.is_empty() {
            let del: HashSet<T::Key> = self.del.into_iter().collect();
            list.retain(|x| !del.contains(&x.key()));
        }
        if self.set.is_empty() {
            return;
        }
        let mut at: HashMap<T::Key, usize> = list.iter().enumerate().map(|(i, x)| (x.key(), i)).collect();
        for item in self.set {
            match at.get(&item.key()).and_then(|&i| list.get_mut(i)) {
                Some(slot) => *slot = item,
                None => {
                    at.insert(item.key(), list.len());
                    list.push(item);
                }
            }
        }
    }
}

/// A bridge's settings: itself without its lists. Destructured field by
/// field so that a new field cannot be forgotten here.
pub(super) fn settings(b: &BridgeConfig) -> BridgeConfig {
    let BridgeConfig {
        name,
        aging_secs,
        max_macs,
        ports: _,
        subnet,
        gateway,
        ip_range,
        leases: _,
        uplink,
        masquerade,
        published: _,
        vxlan,
        uplink_via,
        icc,
    } = b;
    BridgeConfig {
        name: name.clone(),
        aging_secs: *aging_secs,
        max_macs: *max_macs,
        ports: Shared::default(),
        subnet: *subnet,
        gateway: *gateway,
        ip_range: *ip_range,
        leases: Shared::default(),
        uplink: uplink.clone(),
        masquerade: *masquerade,
        published: Shared::default(),
        vxlan: vxlan.clone(),
        uplink_via: uplink_via.clone(),
        icc: *icc,
    }
}

impl BridgeDelta {
    /// The change of a bridge from `old`, or its making (`None`).
    fn between(old: Option<&BridgeConfig>, new: &BridgeConfig) -> Option<BridgeDelta> {
        let new_settings = settings(new);
        Some(BridgeDelta {
            name: new.name.clone(),
            new: old.is_none(),
            settings: old.is_none_or(|o| settings(o) != new_settings).then_some(new_settings),
            ports: ListDelta::between(old.map_or(&[], |o| &o.ports), &new.ports)?,
            leases: ListDelta::between(old.map_or(&[], |o| &o.leases), &new.leases)?,
            published: ListDelta::between(old.map_or(&[], |o| &o.published), &new.published)?,
        })
    }

    fn apply(self, bridge: &mut BridgeConfig) {
        if let Some(mut s) = self.settings {
            s.ports = std::mem::take(&mut bridge.ports);
            s.leases = std::mem::take(&mut bridge.leases);
            s.published = std::mem::take(&mut bridge.published);
            *bridge = s;
        }
        self.ports.apply(&mut bridge.ports);
        self.leases.apply(&mut bridge.leases);
        self.published.apply(&mut bridge.published);
    }
}

impl Delta {
    /// The change from `old` to `new`; `None` if a delta cannot say it
    /// exactly (see the module comment).
    pub fn between(old: &DesiredState, new: &DesiredState) -> Option<Delta> {
        if old.version != new.version {
            return None;
        }
        let wanted: HashSet<&str> = new.bridges.iter().map(|b| b.name.as_str()).collect();
        let del_bridges: Vec<String> = (old.bridges.iter())
            .filter(|b| !wanted.contains(b.name.as_str()))
            .map(|b| b.name.clone())
            .collect();
        let kept = old.bridges.iter().filter(|b| wanted.contains(b.name.as_str()));
        let mut bridges = Vec::new();
        let mut at = 0;
        for o in kept {
            let n = new.bridges.get(at)?;
            if n.name != o.name {
                return None;
            }
            if n != o {
                bridges.push(BridgeDelta::between(Some(o), n)?);
            }
            at += 1;
        }
        for n in new.bridges.get(at..).unwrap_or_default() {
            if old.bridge(&n.name).is_some() {
                return None;
            }
            bridges.push(BridgeDelta::between(None, n)?);
        }
        Some(Delta {
            del_bridges,
            bridges,
            links: (old.links != new.links).then(|| new.links.clone()),
            policies: (old.policies != new.policies).then(|| new.policies.clone()),
            namespaces: (old.namespaces != new.namespaces).then(|| new.namespaces.clone()),
            remote_members: (old.remote_members != new.remote_members).then(|| new.remote_members.clone()),
        })
    }

    /// Replays the delta on the state it was taken from.
    pub fn apply(self, state: &mut DesiredState) -> Result<(), DeltaError> {
        if !self.del_bridges.is_empty() {
            let del: HashSet<&str> = self.del_bridges.iter().map(String::as_str).collect();
            state.bridges.retain(|b| !del.contains(b.name.as_str()));
        }
        for change in self.bridges {
            match (state.bridge_mut(&change.name), change.new) {
                (Some(bridge), false) => change.apply(bridge),
                (None, true) => {
                    let Some(mut bridge) = change.settings.clone() else {
                        return Err(DeltaError::NoBridge(change.name));
                    };
                    change.apply(&mut bridge);
                    state.bridges.push(bridge);
                }
                (Some(_), true) => return Err(DeltaError::BridgeExists(change.name)),
                (None, false) => return Err(DeltaError::NoBridge(change.name)),
            }
        }
        if let Some(links) = self.links {
            state.links = links;
        }
        if let Some(policies) = self.policies {
            state.policies = policies;
        }
        if let Some(namespaces) = self.namespaces {
            state.namespaces = namespaces;
        }
        if let Some(remote) = self.remote_members {
            state.remote_members = remote;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::config::tests::sample;

    /// `new` replayed from `old` through a delta (and through its JSON, as
    /// the journal keeps it).
    fn replayed(old: &DesiredState, new: &DesiredState) -> Option<DesiredState> {
        let delta = Delta::between(old, new)?;
        let line = serde_json::to_string(&delta).unwrap();
        let delta: Delta = serde_json::from_str(&line).unwrap();
        let mut state = old.clone();
        delta.apply(&mut state).unwrap();
        Some(state)
    }

    fn port(name: &str) -> PortConfig {
        PortConfig {
            name: name.into(),
            ..sample().bridges[0].ports[0].clone()
        }
    }

    fn rule(port: u16) -> Published {
        Published {
            port,
            ..sample().bridges[0].published[0]
        }
    }

    #[test]
    fn every_kind_of_edit_replays_exactly() {
        let base = sample();
        type Edit = Box<dyn Fn(&mut DesiredState)>;
        let edits: Vec<(&str, Edit)> = vec![
            ("nothing", Box::new(|_| {})),
            ("a port appended", Box::new(|s| s.bridges[0].ports.push(port("p2")))),
            ("a port removed", Box::new(|s| s.bridges[0].ports.clear())),
            (
                "a port changed in place",
                Box::new(|s| s.bridges[0].ports[0].moves_to = Some("x".into())),
            ),
            (
                "a rule published",
                Box::new(|s| s.bridges[0].published.push(rule(9000))),
            ),
            ("a setting", Box::new(|s| s.bridges[0].masquerade = false)),
            ("a tunnel's remotes", Box::new(|s| s.bridges[0].vxlan = None)),
            ("links", Box::new(|s| s.links.clear())),
            (
                "a bridge added",
                Box::new(|s| {
                    let mut b = s.bridges[0].clone();
                    b.name = "br9".into();
                    s.bridges.push(b);
                }),
            ),
            ("a bridge removed", Box::new(|s| s.bridges.clear())),
            (
                "a lease changed and one added",
                Box::new(|s| {
                    let l = &mut s.bridges[0].leases;
                    l[0].owner = Some("docker".into());
                    let other = Lease {
                        ip: "10.20.0.3".parse().unwrap(),
                        ..l[0].clone()
                    };
                    l.push(other);
                }),
            ),
        ];
        for (what, edit) in edits {
            let mut new = base.clone();
            edit(&mut new);
            assert_eq!(replayed(&base, &new).as_ref(), Some(&new), "{what}");
        }
    }

    #[test]
    fn an_edit_a_delta_cannot_say_is_refused_not_approximated() {
        let mut base = sample();
        base.bridges[0].ports = vec![port("a"), port("b"), port("c")].into();
        let mut swapped = base.clone();
        swapped.bridges[0].ports.swap(0, 2);
        assert_eq!(Delta::between(&base, &swapped), None, "reordered");
        let mut moved = base.clone();
        let first = moved.bridges[0].ports.remove(0);
        moved.bridges[0].ports.push(first);
        assert_eq!(Delta::between(&base, &moved), None, "moved to the end");
        let mut twin = base.clone();
        twin.bridges[0].ports.push(port("a"));
        assert_eq!(Delta::between(&base, &twin), None, "a key twice");
        let mut two = base.clone();
        let mut b = base.bridges[0].clone();
        b.name = "br9".into();
        two.bridges.insert(0, b);
        assert_eq!(Delta::between(&base, &two), None, "a bridge inserted before another");
    }

    #[test]
    fn a_publish_among_many_ports_is_a_short_line() {
        let mut base = sample();
        base.bridges[0].ports = (0..2000).map(|i| port(&format!("p{i}"))).collect::<Vec<_>>().into();
        let mut new = base.clone();
        new.bridges[0].published.push(rule(9000));
        let delta = Delta::between(&base, &new).unwrap();
        let line = serde_json::to_string(&delta).unwrap();
        assert!(line.len() < 200, "{line}");
        assert_eq!(replayed(&base, &new), Some(new));
    }

    #[test]
    fn a_delta_for_another_state_is_refused() {
        let base = sample();
        let mut new = base.clone();
        new.bridges[0].masquerade = false;
        let delta = Delta::between(&base, &new).unwrap();
        let err = delta.apply(&mut DesiredState::default()).unwrap_err();
        assert_eq!(err.to_string(), "it changes bridge 'br0', which does not exist");
        let added = Delta::between(&DesiredState::default(), &base).unwrap();
        let err = added.apply(&mut base.clone()).unwrap_err();
        assert_eq!(err.to_string(), "it adds bridge 'br0', which exists");
    }
}
