//! Making this host match the cluster, and changing the cluster's networks.
//!
//! `reconcile` runs after the full read, after every batch of watch events
//! and once a second (for local changes such as an uplink being added). It
//! publishes this node's VTEP, takes a slice of every network it does not
//! hold one of yet, and applies `plan`'s requests through the control
//! protocol. It is idempotent: running it twice changes nothing the second
//! time.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use etcd_client::{Client, Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp};
use tracing::{info, warn};
use vswitch_ctl::{req, Ipv4Net, LocalNetwork, Reply, Request};

use crate::error::{within, ClusterError};
use crate::model::{slice_gateway, Held, Keys, NetworkDef, NodeRecord, SliceKey, SliceRecord, View};
use crate::model::{DEFAULT_HOST_PREFIX, DEFAULT_PORT};
use crate::owned::Owned;
use crate::plan::{pick_underlay, plan, Want};
use crate::{ClusterConfig, Control, Shared};

/// Slices tried per network per reconcile before waiting for the watch to
/// tell who took the others.
const CLAIM_TRIES: usize = 16;

pub(crate) struct Agent {
    pub(crate) cfg: ClusterConfig,
    pub(crate) keys: Keys,
    pub(crate) control: Arc<dyn Control>,
    pub(crate) status: Arc<Mutex<Shared>>,
    pub(crate) owned: Owned,
    pub(crate) view: View,
    pub(crate) left: bool,
    /// The etcd member the session uses (index into the endpoints).
    pub(crate) endpoint: usize,
    pub(crate) lease: Option<i64>,
    pub(crate) synced_at: Option<Instant>,
    pub(crate) resyncs: u64,
    pub(crate) events: u64,
    /// The policies last handed to vswitchd (`policies`).
    pub(crate) pushed: Option<vswitch_ctl::req::ClusterPolicies>,
}

impl Agent {
    pub(crate) fn new(
        cfg: ClusterConfig,
        control: Arc<dyn Control>,
        owned: Owned,
        status: Arc<Mutex<Shared>>,
    ) -> Agent {
        Agent {
            keys: Keys::new(&cfg.prefix),
            cfg,
            control,
            status,
            owned,
            view: View::default(),
            left: false,
            endpoint: 0,
            lease: None,
            synced_at: None,
            resyncs: 0,
            events: 0,
            pushed: None,
        }
    }

    fn status(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Copies the agent's counters into the shared status.
    fn note(&self, s: &mut Shared) {
        s.synced_at = self.synced_at;
        s.info.lease = self.lease;
        s.info.resyncs = self.resyncs;
        s.info.events = self.events;
    }

    pub(crate) fn set_state(&mut self, state: &str, detail: Option<String>) {
        let mut s = self.status();
        self.note(&mut s);
        s.info.state = state.to_string();
        s.info.detail = detail;
    }

    pub(crate) fn detail(&self) -> Option<String> {
        self.status().info.detail.clone()
    }

    /// Brings this host in line with the view (see the module comment).
    pub(crate) async fn reconcile(&mut self, client: &mut Client, lease: i64) -> Result<(), ClusterError> {
        let bridges = match self.control.call(Request::Show) {
            Ok(Reply::Show(bridges)) => bridges,
            other => {
                warn!(?other, "cannot read this host's bridges");
                return self.sync_policies(client, lease).await;
            }
        };
        let owned = &self.owned;
        let underlay = pick_underlay(&bridges, self.cfg.underlay.as_deref(), |n| owned.contains(n))
            .map(|(name, ip)| (name.to_string(), ip));
        let (underlay, vtep) = match underlay {
            Ok(found) => found,
            Err(why) => {
                self.publish_status(None, None, Vec::new(), Some(why));
                return self.sync_policies(client, lease).await;
            }
        };
        self.publish_node(client, lease, vtep).await?;

        let mut networks = Vec::new();
        let defs: Vec<(String, NetworkDef)> = self.view.nets.iter().map(|(n, d)| (n.clone(), *d)).collect();
        for (name, def) in &defs {
            let have = bridges.iter().find(|b| &b.name == name);
            let preferred = have
                .filter(|_| self.owned.contains(name))
                .and_then(|b| b.ip_range)
                .filter(|r| def.has_slice(r));
            let slice = match self.view.slice_of(name, &self.cfg.node) {
                Some((slice, held)) if held == lease => Some(slice),
                Some((slice, _)) => self.rebind(client, name, slice, lease).await?,
                None => self.claim(client, name, def, lease, preferred).await?,
            };
            let Some(slice) = slice else {
                networks.push(local(
                    name,
                    None,
                    ClusterError::NoFreeSlice { subnet: def.subnet }.to_string(),
                    vec![],
                ));
                continue;
            };
            let remotes = self.view.remote_vteps(name, &self.cfg.node, vtep);
            let want = Want {
                name,
                def,
                slice,
                underlay: &underlay,
                remotes: &remotes,
            };
            let state = match plan(&want, have, self.owned.contains(name)) {
                Err(conflict) => conflict.to_string(),
                Ok(requests) => {
                    let creating = have.is_none();
                    if creating {
                        if let Err(err) = self.owned.insert(name) {
                            warn!(%err, "cannot record the cluster's bridges");
                        }
                    }
                    match self.apply(name, requests) {
                        Ok(()) => "ready".to_string(),
                        Err((done, refusal)) => {
                            if creating && done == 0 {
                                // The bridge was not made: it is not ours.
                                if let Err(err) = self.owned.remove(name) {
                                    warn!(%err, "cannot record the cluster's bridges");
                                }
                            }
                            refusal
                        }
                    }
                }
            };
            // A refusal is logged when it first appears, not every second.
            let before = self
                .status()
                .info
                .networks
                .iter()
                .find(|n| &n.name == name)
                .map(|n| n.state.clone());
            if state != "ready" && before.as_deref() != Some(state.as_str()) {
                warn!(network = %name, %state, "this host cannot serve the network as the cluster says");
            }
            networks.push(local(name, Some(slice), state, remotes.into_iter().collect()));
        }
        for name in self.owned.names() {
            if self.view.nets.contains_key(&name) {
                continue;
            }
            if bridges.iter().any(|b| b.name == name) {
                match self.apply(
                    &name,
                    vec![Request::DelBr(req::DelBr {
                        if_exists: false,
                        name: name.clone(),
                    })],
                ) {
                    Ok(()) => info!(network = %name, "network deleted from the cluster: bridge removed"),
                    Err((_, refusal)) => warn!(network = %name, %refusal, "cannot remove a deleted network's bridge"),
                }
            }
            if let Err(err) = self.owned.remove(&name) {
                warn!(%err, "cannot record the cluster's bridges");
            }
        }
        self.publish_status(Some(underlay), Some(vtep), networks, None);
        self.sync_policies(client, lease).await
    }

    /// Applies requests in order, stopping at the first refusal: how many
    /// were applied before it, and vswitchd's message.
    fn apply(&self, network: &str, requests: Vec<Request>) -> Result<(), (usize, String)> {
        for (done, request) in requests.into_iter().enumerate() {
            let shown = format!("{request:?}");
            match self.control.call(request) {
                Ok(_) => info!(network, request = %shown, "cluster change applied"),
                Err(err) => {
                    tracing::debug!(network, request = %shown, %err, "cluster change refused");
                    return Err((done, err));
                }
            }
        }
        Ok(())
    }

    async fn publish_node(&mut self, client: &mut Client, lease: i64, vtep: Ipv4Addr) -> Result<(), ClusterError> {
        let record = NodeRecord { vtep };
        let current = self.view.nodes.get(&self.cfg.node);
        if current.is_some_and(|h| h.value == record && h.lease == lease) {
            return Ok(());
        }
        if let Some((other, _)) = self
            .view
            .nodes
            .iter()
            .find(|(n, h)| **n != self.cfg.node && h.value.vtep == vtep)
        {
            warn!(node = %other, %vtep, "another node announces this host's VTEP address");
        }
        let value = serde_json::to_vec(&record).map_err(|e| ClusterError::Unreachable(e.to_string()))?;
        let key = self.keys.node(&self.cfg.node);
        within(client.put(key, value, Some(PutOptions::new().with_lease(lease)))).await?;
        info!(node = %self.cfg.node, %vtep, "VTEP published");
        self.view
            .nodes
            .insert(self.cfg.node.clone(), Held { value: record, lease });
        Ok(())
    }

    /// Takes a free slice of `name`: `preferred` first (the one this host's
    /// bridge already serves), then the lowest free ones. The transaction
    /// succeeds only if the key is free and the network still exists.
    async fn claim(
        &mut self,
        client: &mut Client,
        name: &str,
        def: &NetworkDef,
        lease: i64,
        preferred: Option<Ipv4Net>,
    ) -> Result<Option<Ipv4Net>, ClusterError> {
        let record = SliceRecord {
            node: self.cfg.node.clone(),
        };
        let value = serde_json::to_vec(&record).map_err(|e| ClusterError::Unreachable(e.to_string()))?;
        let candidates = preferred
            .into_iter()
            .chain((0..def.slice_count()).filter_map(|i| def.slice(i)));
        let mut tries = 0;
        for slice in candidates {
            if self.view.holder(name, &slice).is_some() {
                continue;
            }
            tries += 1;
            if tries > CLAIM_TRIES {
                break;
            }
            let key = self.keys.slice(name, &slice);
            let txn = Txn::new()
                .when([
                    Compare::create_revision(key.as_str(), CompareOp::Equal, 0),
                    Compare::version(self.keys.net(name), CompareOp::Greater, 0),
                ])
                .and_then([TxnOp::put(
                    key.as_str(),
                    value.clone(),
                    Some(PutOptions::new().with_lease(lease)),
                )]);
            if within(client.txn(txn)).await?.succeeded() {
                info!(network = name, %slice, "slice leased");
                self.view
                    .slices
                    .entry(name.to_string())
                    .or_default()
                    .insert(SliceKey::of(&slice), Held { value: record, lease });
                return Ok(Some(slice));
            }
        }
        Ok(None)
    }

    /// Moves a slice this node still holds under an old lease to the new one.
    async fn rebind(
        &mut self,
        client: &mut Client,
        name: &str,
        slice: Ipv4Net,
        lease: i64,
    ) -> Result<Option<Ipv4Net>, ClusterError> {
        let record = SliceRecord {
            node: self.cfg.node.clone(),
        };
        let value = serde_json::to_vec(&record).map_err(|e| ClusterError::Unreachable(e.to_string()))?;
        let key = self.keys.slice(name, &slice);
        let txn = Txn::new()
            .when([Compare::value(key.as_str(), CompareOp::Equal, value.clone())])
            .and_then([TxnOp::put(
                key.as_str(),
                value,
                Some(PutOptions::new().with_lease(lease)),
            )]);
        Ok(within(client.txn(txn)).await?.succeeded().then_some(slice))
    }

    /// `net-create`: validated against a fresh read of every network, written
    /// only if no network changed since that read.
    pub(crate) async fn net_create(&mut self, client: &mut Client, net: req::NetCreate) -> Result<(), ClusterError> {
        let def = NetworkDef {
            subnet: net.subnet,
            vni: net.vni,
            host_prefix: net.host_prefix.unwrap_or(DEFAULT_HOST_PREFIX),
            port: net.port.unwrap_or(DEFAULT_PORT),
        };
        def.check(&net.name)?;
        let nets = self.keys.nets();
        let read = within(client.get(nets.as_str(), Some(GetOptions::new().with_prefix()))).await?;
        let revision = read.header().map_or(0, |h| h.revision());
        let mut current = View::default();
        for kv in read.kvs() {
            current.put(&self.keys, kv.key(), kv.value(), kv.lease());
        }
        if let Some(clash) = current.clash(&net.name, &def) {
            return Err(clash);
        }
        let value = serde_json::to_vec(&def).map_err(|e| ClusterError::Unreachable(e.to_string()))?;
        let key = self.keys.net(&net.name);
        let txn = Txn::new()
            .when([
                Compare::create_revision(key.as_str(), CompareOp::Equal, 0),
                Compare::mod_revision(nets.as_str(), CompareOp::Less, revision + 1).with_prefix(),
            ])
            .and_then([TxnOp::put(key.as_str(), value, None)]);
        if !within(client.txn(txn)).await?.succeeded() {
            return Err(ClusterError::Contended);
        }
        info!(network = %net.name, subnet = %def.subnet, vni = def.vni, "network created in the cluster");
        Ok(())
    }

    /// `net-delete`: the definition and every host's slice go in one transaction.
    pub(crate) async fn net_delete(&mut self, client: &mut Client, name: &str) -> Result<(), ClusterError> {
        let key = self.keys.net(name);
        let slices = self.keys.slices_of(name);
        let txn = Txn::new()
            .when([Compare::version(key.as_str(), CompareOp::Greater, 0)])
            .and_then([
                TxnOp::delete(key.as_str(), None),
                TxnOp::delete(slices.as_str(), Some(etcd_client::DeleteOptions::new().with_prefix())),
            ]);
        if !within(client.txn(txn)).await?.succeeded() {
            return Err(ClusterError::NoNet(name.to_string()));
        }
        info!(network = %name, "network deleted from the cluster");
        Ok(())
    }

    /// After leaving: nothing crosses to the other hosts any more.
    pub(crate) fn forget_remotes(&mut self) {
        let Ok(Reply::Show(bridges)) = self.control.call(Request::Show) else {
            return;
        };
        for bridge in bridges.iter().filter(|b| self.owned.contains(&b.name)) {
            let Some(tunnel) = &bridge.tunnel else { continue };
            let requests = tunnel
                .remotes
                .iter()
                .map(|ip| {
                    Request::DelVtep(req::DelVtep {
                        if_exists: false,
                        bridge: bridge.name.clone(),
                        ip: *ip,
                    })
                })
                .collect();
            if let Err((_, refusal)) = self.apply(&bridge.name, requests) {
                warn!(network = %bridge.name, %refusal, "cannot remove a remote VTEP after leaving");
            }
        }
        let mut s = self.status();
        for net in &mut s.info.networks {
            net.remotes.clear();
        }
    }

    fn publish_status(
        &mut self,
        underlay: Option<String>,
        vtep: Option<Ipv4Addr>,
        networks: Vec<LocalNetwork>,
        detail: Option<String>,
    ) {
        let mut s = self.status();
        self.note(&mut s);
        s.info.underlay = underlay;
        s.info.vtep = vtep;
        s.info.networks = networks;
        s.info.detail = detail;
    }
}

fn local(name: &str, slice: Option<Ipv4Net>, state: String, remotes: Vec<Ipv4Addr>) -> LocalNetwork {
    LocalNetwork {
        name: name.to_string(),
        slice,
        gateway: slice.as_ref().map(slice_gateway),
        state,
        remotes,
    }
}
