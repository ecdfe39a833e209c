//! Network policy, the control side: who attachments are (their name,
//! namespace and labels, kept on their leases), namespaces' labels, and
//! the policies (`apply`, `delete`, `list-policies`). All of it is part of
//! the desired state, saved and restored like the rest.
//!
//! The datapath never sees a label: `snapshot_build` asks [`policy_view`]
//! for the policies compiled against every lease (`vswitch-policy`), and
//! the ports of isolated attachments carry their member's index.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

use hashbrown::HashMap;
use tracing::info;
use vswitch_ctl::req::{self, LabelChange};
use vswitch_ctl::{Applied, PolicyInfo};
use vswitch_nat::table::ConnTable;
use vswitch_policy::compile::{compile, Member};
use vswitch_policy::model::{check_label, check_name, Labels, NAMESPACE_NAME_LABEL};

use super::config::{BridgeConfig, DesiredState, Lease};
use super::{ControlError, Manager};
use crate::flows::FlowLogs;
use crate::snapshot::PolicyView;

/// kubectl's names of the kinds `apply` reports on.
const POLICY_KIND: &str = "networkpolicy.networking.k8s.io";
const NAMESPACE_KIND: &str = "namespace";

impl Manager {
    pub(super) fn label(&mut self, r: req::Label) -> Result<(), ControlError> {
        check_change(&r.change)?;
        self.commit(|txn| {
            let mut found = false;
            for br in &mut txn.desired.bridges {
                let hit = |l: &Lease| l.namespace() == r.namespace && l.name() == r.name;
                if !br.leases.iter().any(hit) {
                    continue;
                }
                for lease in br.leases.iter_mut().filter(|l| hit(l)) {
                    apply_change(&mut lease.labels, &r.change);
                    found = true;
                }
            }
            if found {
                Ok(())
            } else {
                Err(ControlError::NoAttachment {
                    namespace: r.namespace.clone(),
                    name: r.name.clone(),
                })
            }
        })?;
        info!(namespace = %r.namespace, name = %r.name, "attachment labelled");
        Ok(())
    }

    pub(super) fn label_namespace(&mut self, r: req::LabelNamespace) -> Result<(), ControlError> {
        check_name("namespace", &r.namespace).map_err(ControlError::BadName)?;
        check_change(&r.change)?;
        self.commit(|txn| {
            let labels = txn.desired.namespaces.entry(r.namespace.clone()).or_default();
            apply_change(labels, &r.change);
            if labels.is_empty() {
                txn.desired.namespaces.remove(&r.namespace);
            }
            Ok(())
        })
    }

    pub(super) fn apply_policies(&mut self, r: req::ApplyPolicies) -> Result<Applied, ControlError> {
        let mut keys = BTreeSet::new();
        for p in &r.policies {
            p.check().map_err(|why| ControlError::BadPolicy { key: p.key(), why })?;
            if !keys.insert(p.key()) {
                return Err(ControlError::BadPolicy {
                    key: p.key(),
                    why: "given twice".into(),
                });
            }
        }
        for (name, labels) in &r.namespaces {
            check_name("namespace", name).map_err(ControlError::BadName)?;
            labels.iter().try_for_each(|(k, v)| check_namespace_label(k, v))?;
        }
        let applied = self.commit(|txn| {
            let mut objects = Vec::new();
            let state = &mut txn.desired;
            for (name, labels) in &r.namespaces {
                let mut labels = labels.clone();
                labels.remove(NAMESPACE_NAME_LABEL);
                let before = state.namespaces.get(name).cloned().unwrap_or_default();
                let outcome = outcome(state.namespaces.contains_key(name), before == labels);
                if labels.is_empty() {
                    state.namespaces.remove(name);
                } else {
                    state.namespaces.insert(name.clone(), labels);
                }
                objects.push((NAMESPACE_KIND.to_string(), name.clone(), outcome.to_string()));
            }
            for p in &r.policies {
                let at = state.policies.iter().position(|q| q.key() == p.key());
                let outcome = outcome(at.is_some(), at.is_some_and(|i| state.policies[i] == *p));
                match at {
                    Some(i) => state.policies[i] = p.clone(),
                    None => state.policies.push(p.clone()),
                }
                objects.push((POLICY_KIND.to_string(), p.key(), outcome.to_string()));
            }
            Ok(Applied { objects })
        })?;
        info!(
            policies = r.policies.len(),
            namespaces = r.namespaces.len(),
            "policies applied"
        );
        Ok(applied)
    }

    pub(super) fn delete_policies(&mut self, r: req::DeletePolicies) -> Result<Vec<String>, ControlError> {
        let deleted = self.commit(|txn| {
            let mut deleted = Vec::new();
            for (namespace, name) in &r.policies {
                let before = txn.desired.policies.len();
                (txn.desired.policies).retain(|p| !(p.namespace == *namespace && p.name == *name));
                if txn.desired.policies.len() < before {
                    deleted.push(format!("{namespace}/{name}"));
                } else if !r.if_exists {
                    return Err(ControlError::NoPolicy(format!("{namespace}/{name}")));
                }
            }
            Ok(deleted)
        })?;
        info!(?deleted, "policies deleted");
        Ok(deleted)
    }

    /// The cluster's policies, namespaces and remote attachments replace
    /// this host's (the agent sends them whole; the same again changes
    /// nothing).
    pub(super) fn cluster_policies(&mut self, r: req::ClusterPolicies) -> Result<(), ControlError> {
        for p in &r.policies {
            p.check().map_err(|why| ControlError::BadPolicy { key: p.key(), why })?;
        }
        let changed = self.desired.policies != r.policies
            || self.desired.namespaces != r.namespaces
            || self.desired.remote_members != r.remote;
        if !changed {
            return Ok(());
        }
        let (policies, members) = (r.policies.len(), r.remote.len());
        self.commit(|txn| {
            txn.desired.policies = r.policies;
            txn.desired.namespaces = r.namespaces;
            txn.desired.remote_members = r.remote;
            Ok(())
        })?;
        info!(policies, remote_members = members, "cluster policies applied");
        Ok(())
    }

    pub(super) fn list_policies(&self) -> Vec<PolicyInfo> {
        let leases: Vec<&Lease> = self.desired.bridges.iter().flat_map(|b| b.leases.iter()).collect();
        (self.desired.policies.iter())
            .map(|p| {
                let selects: BTreeSet<String> = (leases.iter())
                    .filter(|l| l.namespace() == p.namespace && p.pod_selector.matches(&l.labels))
                    .map(|l| format!("{}/{}", l.namespace(), l.name()))
                    .collect();
                PolicyInfo {
                    policy: p.clone(),
                    selects: selects.into_iter().collect(),
                }
            })
            .collect()
    }
}

fn outcome(existed: bool, same: bool) -> &'static str {
    match (existed, same) {
        (false, _) => "created",
        (true, true) => "unchanged",
        (true, false) => "configured",
    }
}

fn check_change(change: &LabelChange) -> Result<(), ControlError> {
    change
        .set
        .iter()
        .try_for_each(|(k, v)| check_label(k, v).map_err(ControlError::BadLabel))?;
    change
        .remove
        .iter()
        .try_for_each(|k| check_label(k, "").map_err(ControlError::BadLabel))
}

fn check_namespace_label(key: &str, value: &str) -> Result<(), ControlError> {
    check_label(key, value).map_err(ControlError::BadLabel)
}

fn apply_change(labels: &mut Labels, change: &LabelChange) {
    labels.extend(change.set.iter().map(|(k, v)| (k.clone(), v.clone())));
    for k in &change.remove {
        labels.remove(k);
    }
}

/// A lease about to be made: its name, namespace and labels valid, and
/// its `namespace/name` no other netns's.
pub(super) fn check_identity(desired: &DesiredState, lease: &Lease) -> Result<(), ControlError> {
    if let Some(name) = &lease.name {
        check_object_name(name)?;
    }
    check_name("namespace", lease.namespace()).map_err(ControlError::BadName)?;
    (lease.labels.iter()).try_for_each(|(k, v)| check_label(k, v).map_err(ControlError::BadLabel))?;
    let other = (desired.bridges.iter().flat_map(|b| b.leases.iter()))
        .find(|l| l.netns != lease.netns && l.namespace() == lease.namespace() && l.name() == lease.name());
    match other {
        Some(o) => Err(ControlError::NameTaken {
            namespace: lease.namespace().to_string(),
            name: lease.name().to_string(),
            netns: o.netns.clone(),
        }),
        None => Ok(()),
    }
}

/// A pod's name as Kubernetes takes it: a DNS subdomain (lowercase
/// letters, digits, '-' and '.', at most 253).
fn check_object_name(name: &str) -> Result<(), ControlError> {
    let ok = !name.is_empty() && name.len() <= 253 && name.split('.').all(|part| check_name("name", part).is_ok());
    if ok {
        Ok(())
    } else {
        Err(ControlError::BadName(format!(
            "name {name:?}: must be lowercase letters, digits, '-' and '.' (a DNS subdomain), at most 253"
        )))
    }
}

/// The policies compiled against every lease, for the snapshot; None when
/// no policy isolates anything and no bridge keeps its attachments apart
/// (`icc` false; the datapath then skips its policy stages). `zones`:
/// each bridge's policy zone by name; `port_members` gets the member index
/// of every leased port that is isolated (by a policy or its bridge).
pub(super) fn policy_view(
    desired: &DesiredState,
    zones: &HashMap<String, u16>,
    ct: &Arc<ConnTable>,
    flows: &Arc<FlowLogs>,
    generation: u64,
    port_members: &mut HashMap<String, u32>,
) -> Option<PolicyView> {
    let apart = |br: &&BridgeConfig| !br.icc && !br.leases.is_empty();
    if desired.policies.is_empty() && !desired.bridges.iter().any(|br| apart(&br)) {
        return None;
    }
    let mut members = Vec::new();
    let mut placed: Vec<(u16, Ipv4Addr, &str)> = Vec::new();
    let mut icc = Vec::new();
    for (index, br) in desired.bridges.iter().enumerate() {
        let Some(&zone) = zones.get(&br.name) else { continue };
        for lease in &br.leases {
            icc.push((!br.icc).then_some(index as u32));
            members.push(Member {
                namespace: lease.namespace(),
                labels: &lease.labels,
                addr: lease.ip,
            });
            placed.push((zone, lease.ip, lease.port.as_str()));
        }
    }
    // Other hosts' attachments: peers selectors match, in the zone of the
    // network's bridge here; they have no port here ("" is none).
    for remote in &desired.remote_members {
        let Some(&zone) = zones.get(&remote.network) else {
            continue;
        };
        if placed.iter().any(|&(z, ip, _)| z == zone && ip == remote.ip) {
            continue; // an address this host leases wins
        }
        icc.push(None);
        members.push(Member {
            namespace: &remote.namespace,
            labels: &remote.labels,
            addr: remote.ip,
        });
        placed.push((zone, remote.ip, ""));
    }
    let compiled = compile(&desired.policies, &desired.namespaces, &members);
    if !compiled.any_isolated() && icc.iter().all(Option::is_none) {
        return None;
    }
    let mut by_addr = HashMap::with_capacity(placed.len());
    for (i, (zone, ip, port)) in placed.into_iter().enumerate() {
        by_addr.insert((zone, ip), i as u32);
        let rules = compiled.endpoint(i);
        let policed =
            rules.isolated(vswitch_policy::Direction::Ingress) || rules.isolated(vswitch_policy::Direction::Egress);
        if (policed || icc[i].is_some()) && !port.is_empty() {
            port_members.insert(port.to_string(), i as u32);
        }
    }
    Some(PolicyView {
        compiled: Arc::new(compiled),
        members: by_addr,
        apart: icc,
        flows: flows.clone(),
        ct: ct.clone(),
        generation,
    })
}
