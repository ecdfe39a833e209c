//! Network policy across hosts: the policies and namespaces' labels are the
//! cluster's, and every host knows who is behind the other hosts' addresses.
//!
//! - `apply`, `delete` and `label-namespace` on any host come here (the
//!   control socket sends them to the agent with `--cluster`): checked,
//!   written to etcd in one transaction (all or nothing), then applied on
//!   this host for the answer; the watch brings them to every host.
//! - Each host publishes one record, `members/NODE`, under its lease: its
//!   attachments on cluster networks with their namespace, name and labels.
//!   One record per host rather than one per container (etcd traffic grows
//!   with hosts, not containers), and rather than a group id in the packets
//!   (VXLAN-GBP): an identity in the packet needs both ends to speak GBP and
//!   the policy to be keyed by it, while the address-to-identity map lets
//!   the existing tables (which already key peers by address) match remote
//!   pods unchanged, and lets `check-policy` answer about them.
//! - Every reconcile hands the whole set (policies, namespaces, the other
//!   hosts' members) to vswitchd (`ClusterPolicies`), which keeps it in its
//!   saved configuration: with etcd away the last known set is enforced,
//!   also across a restart, and changes are refused until it is back.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use etcd_client::{Client, PutOptions, Txn, TxnOp};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};
use vswitch_ctl::req::{self, ClusterPolicies};
use vswitch_ctl::{Reply, Request};
use vswitch_policy::model::{check_label, check_name, Labels, Policy, NAMESPACE_NAME_LABEL};

use crate::error::{within, ClusterError};
use crate::model::{Held, Key, View};
use crate::sync::Agent;

/// One attachment of a node on a cluster network.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MemberRecord {
    pub network: String,
    pub ip: Ipv4Addr,
    pub namespace: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
}

impl View {
    /// A policy, namespace or members record (the key says which).
    pub(crate) fn put_policy_record(&mut self, key: Key, value: &[u8], lease: i64) -> Result<(), String> {
        let text = |e: serde_json::Error| e.to_string();
        match key {
            Key::Policy(ns, name) => {
                let policy: Policy = serde_json::from_slice(value).map_err(text)?;
                if policy.namespace != ns || policy.name != name {
                    return Err(format!("the record names {}", policy.key()));
                }
                policy.check()?;
                self.policies.insert(policy.key(), policy);
            }
            Key::Namespace(ns) => {
                let labels: Labels = serde_json::from_slice(value).map_err(text)?;
                labels.iter().try_for_each(|(k, v)| check_label(k, v))?;
                self.namespaces.insert(ns, labels);
            }
            Key::Members(node) => {
                let members: Vec<MemberRecord> = serde_json::from_slice(value).map_err(text)?;
                self.members.insert(node, Held { value: members, lease });
            }
            _ => return Err("not a policy record".into()),
        }
        Ok(())
    }

    /// What vswitchd on node `me` is to enforce.
    pub(crate) fn cluster_policies(&self, me: &str) -> ClusterPolicies {
        let remote = (self.members.iter())
            .filter(|(node, _)| node.as_str() != me)
            .flat_map(|(node, held)| {
                held.value.iter().map(|m| vswitch_ctl::RemoteMember {
                    node: node.clone(),
                    network: m.network.clone(),
                    ip: m.ip,
                    namespace: m.namespace.clone(),
                    name: m.name.clone(),
                    labels: m.labels.clone(),
                })
            })
            .collect();
        ClusterPolicies {
            policies: self.policies.values().cloned().collect(),
            namespaces: self.namespaces.clone(),
            remote,
        }
    }
}

impl Agent {
    /// Publishes this node's attachments on cluster networks (when they
    /// changed) and hands vswitchd the cluster's set (when it changed).
    pub(crate) async fn sync_policies(&mut self, client: &mut Client, lease: i64) -> Result<(), ClusterError> {
        if let Ok(Reply::Attachments(list)) = self.control.call(Request::ListAttachments) {
            let mut mine: Vec<MemberRecord> = (list.into_iter())
                .filter(|a| self.view.nets.contains_key(&a.bridge) && self.owned.contains(&a.bridge))
                .map(|a| MemberRecord {
                    network: a.bridge,
                    ip: a.ip,
                    namespace: a.namespace,
                    name: a.name,
                    labels: a.labels,
                })
                .collect();
            mine.sort();
            let current = self.view.members.get(&self.cfg.node);
            if !current.is_some_and(|h| h.value == mine && h.lease == lease) {
                let value = serde_json::to_vec(&mine).map_err(|e| ClusterError::Unreachable(e.to_string()))?;
                let key = self.keys.members(&self.cfg.node);
                within(client.put(key, value, Some(PutOptions::new().with_lease(lease)))).await?;
                info!(node = %self.cfg.node, attachments = mine.len(), "members published");
                (self.view.members).insert(self.cfg.node.clone(), Held { value: mine, lease });
            }
        }
        let want = self.view.cluster_policies(&self.cfg.node);
        if self.pushed.is_none() {
            // The cluster's policies are the truth: say so when they replace
            // ones this host had before it joined.
            if let Ok(Reply::Policies(local)) = self.control.call(Request::ListPolicies) {
                let mine: Vec<&Policy> = local.iter().map(|p| &p.policy).collect();
                if !mine.is_empty() && mine != want.policies.iter().collect::<Vec<_>>() {
                    warn!(
                        local = mine.len(),
                        cluster = want.policies.len(),
                        "this host's policies are replaced by the cluster's"
                    );
                }
            }
        }
        if self.pushed.as_ref() != Some(&want) {
            match self.control.call(Request::ClusterPolicies(want.clone())) {
                Ok(_) => self.pushed = Some(want),
                Err(err) => warn!(%err, "vswitchd refused the cluster's policies"),
            }
        }
        Ok(())
    }

    /// `apply`, `delete` or `label-namespace` on a cluster host.
    pub(crate) async fn shared_policy(&mut self, client: &mut Client, request: Request) -> Result<Reply, ClusterError> {
        let refused = |why: String| ClusterError::PolicyRefused(why);
        // (key, value to put or None to delete), all in one transaction.
        let mut ops: Vec<(String, Option<Vec<u8>>)> = Vec::new();
        match &request {
            Request::ApplyPolicies(r) => {
                for p in &r.policies {
                    p.check()
                        .map_err(|why| refused(format!("network policy {}: {why}", p.key())))?;
                    let value = serde_json::to_vec(p).map_err(|e| refused(e.to_string()))?;
                    ops.push((self.keys.policy(&p.namespace, &p.name), Some(value)));
                }
                for (ns, labels) in &r.namespaces {
                    ops.push(self.namespace_op(ns, labels)?);
                }
            }
            Request::DeletePolicies(r) => {
                for (ns, name) in &r.policies {
                    let key = format!("{ns}/{name}");
                    if !self.view.policies.contains_key(&key) {
                        if r.if_exists {
                            continue;
                        }
                        return Err(refused(format!("network policy {key} does not exist")));
                    }
                    ops.push((self.keys.policy(ns, name), None));
                }
            }
            Request::LabelNamespace(r) => {
                let mut labels = self.view.namespaces.get(&r.namespace).cloned().unwrap_or_default();
                labels.extend(r.change.set.clone());
                for k in &r.change.remove {
                    labels.remove(k);
                }
                ops.push(self.namespace_op(&r.namespace, &labels)?);
            }
            other => return Err(ClusterError::NotCluster(format!("{other:?}"))),
        }
        if !ops.is_empty() {
            let txn: Vec<TxnOp> = (ops.iter())
                .map(|(key, value)| match value {
                    Some(v) => TxnOp::put(key.as_str(), v.clone(), None),
                    None => TxnOp::delete(key.as_str(), None),
                })
                .collect();
            within(client.txn(Txn::new().and_then(txn))).await?;
            // The view at once, so that no reconcile before the watch's
            // echo hands vswitchd the set without this change.
            for (key, value) in &ops {
                match value {
                    Some(v) => self.view.put(&self.keys, key.as_bytes(), v, 0),
                    None => self.view.delete(&self.keys, key.as_bytes()),
                }
            }
        }
        // This host at once (the watch will say the same): its answer is
        // the user's (created / configured / unchanged, what was deleted).
        let local = match request {
            Request::DeletePolicies(r) => Request::DeletePolicies(req::DeletePolicies { if_exists: true, ..r }),
            other => other,
        };
        let reply = self.control.call(local).map_err(refused)?;
        self.pushed = None;
        Ok(reply)
    }

    /// Puts a namespace's labels, or deletes its record when it has none.
    fn namespace_op(&self, ns: &str, labels: &Labels) -> Result<(String, Option<Vec<u8>>), ClusterError> {
        let refused = |why: String| ClusterError::PolicyRefused(why);
        check_name("namespace", ns).map_err(refused)?;
        let mut labels: BTreeMap<String, String> = labels.clone();
        labels.remove(NAMESPACE_NAME_LABEL);
        labels
            .iter()
            .try_for_each(|(k, v)| check_label(k, v))
            .map_err(refused)?;
        let key = self.keys.namespace(ns);
        Ok(if labels.is_empty() {
            (key, None)
        } else {
            let value = serde_json::to_vec(&labels).map_err(|e| refused(e.to_string()))?;
            (key, Some(value))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Keys;

    #[test]
    fn policy_records_are_read_checked_and_handed_on_without_this_nodes_own() {
        let keys = Keys::new("/vs/");
        let mut view = View::default();
        let policy = r#"{"namespace":"shop","name":"web","pod_selector":{"match_labels":{"app":"web"}},"ingress":[]}"#;
        view.put(&keys, b"/vs/policies/shop/web", policy.as_bytes(), 0);
        // A record whose body names another policy, or is no policy.
        view.put(&keys, b"/vs/policies/shop/db", policy.as_bytes(), 0);
        view.put(&keys, b"/vs/policies/shop/x", b"{}", 0);
        view.put(&keys, b"/vs/namespaces/shop", br#"{"team":"a"}"#, 0);
        view.put(&keys, b"/vs/namespaces/shop2", br#"{"-bad":"a"}"#, 0);
        let member = |ip: &str| {
            format!(r#"[{{"network":"blue","ip":"{ip}","namespace":"shop","name":"c","labels":{{"app":"client"}}}}]"#)
        };
        view.put(&keys, b"/vs/members/h1", member("10.200.1.2").as_bytes(), 7);
        view.put(&keys, b"/vs/members/h2", member("10.200.2.2").as_bytes(), 8);
        assert_eq!(view.foreign, 3, "the misnamed, the empty and the badly labelled");
        let set = view.cluster_policies("h1");
        assert_eq!(set.policies.len(), 1);
        assert_eq!(set.namespaces["shop"]["team"], "a");
        assert_eq!(set.remote.len(), 1, "h1's own members are not remote to h1");
        assert_eq!(
            (set.remote[0].node.as_str(), set.remote[0].ip),
            ("h2", [10, 200, 2, 2].into())
        );
        view.delete(&keys, b"/vs/members/h2");
        view.delete(&keys, b"/vs/policies/shop/web");
        let set = view.cluster_policies("h1");
        assert!(set.remote.is_empty() && set.policies.is_empty());
    }
}
