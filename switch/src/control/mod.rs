//! The control plane: requests in, a new desired state saved and a new
//! snapshot published out.
//!
//! The [`Manager`] holds the desired state (what the user configured, as
//! saved) and the live objects built from it: bridges' tables and ports'
//! devices. Every change goes through one transaction, [`Manager::commit`]:
//! clone the desired state, let the request edit the copy (opening the
//! devices it adds on the way), validate it, save it (`store`), then make
//! it the switch's and publish a snapshot. If any step fails nothing
//! changed, neither in memory nor on disk, and the devices the request
//! opened are closed again. Removed ports are closed only after every poll
//! thread has let go of the snapshot that still named them, so no thread
//! ever writes to a device that is being closed. Inside a transaction
//! (`vsctl A -- B`, `transaction`) the requests edit the state in place and
//! it is validated, saved and published once, at the end.
//!
//! One file per request family: `bridges`, `ports` (ports and uplinks),
//! `attach` (addresses), `nat`, `tunnels` (VXLAN), `views` (read-only replies); `dispatch`
//! routes a request to its family and `wire` converts the protocol's types.
//! `snapshot_build` turns the state into the datapath's snapshot, `restore`
//! rebuilds the switch at start-up, `socket` serves the control socket,
//! `config` is the desired state, `validate` the rules it keeps, `store`
//! saves it (`delta`: a change as a journal line).
//!
//! The control plane reads the datapath's counters and tables and publishes
//! snapshots; it never touches a poll thread's state otherwise.

mod attach;
mod bridges;
mod capture;
mod check;
pub mod config;
mod ctfile;
mod delta;
mod dispatch;
mod error;
mod exists;
mod ipam;
mod nat;
mod observe;
mod policy;
mod ports;
mod restore;
mod runtime;
mod snapshot_build;
pub mod socket;
pub mod store;
mod trace;
mod transaction;
mod tunnels;
mod validate;
mod views;
mod wire;

use std::collections::BTreeMap;

use hashbrown::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::warn;
use vswitch_ctl::Ipv4Net;
use vswitch_nat::table::ConnTable;

use crate::pmd::PmdHandle;
use crate::port::{LivePort, PortIo};
use crate::snapshot::SnapshotCell;
use crate::tables::fdb::Fdb;
use crate::tables::neigh::NeighTable;
use crate::tables::publish::PublishTable;
use config::{BridgeConfig, DesiredState};
pub use error::{error_chain, ControlError};
use store::Store;

/// How long a change waits for the poll threads to let go of the old snapshot.
const GRACE_TIMEOUT: Duration = Duration::from_secs(2);

/// A bridge's live tables, kept across snapshots.
struct LiveBridge {
    /// Index in the snapshot's bridges; also the conntrack zone.
    slot: u32,
    fdb: Arc<Fdb>,
    neigh: Arc<NeighTable>,
    uplink_neigh: Arc<NeighTable>,
    published: Arc<PublishTable>,
}

/// Why a configured port has no live device.
#[derive(Debug, Clone, thiserror::Error)]
enum NotLive {
    /// Its device could not be opened at start-up (the error chain).
    #[error("error: {0}")]
    NotRestored(String),
    /// The namespace it was made in is gone (`Manager::release_orphans`).
    #[error("failed: its network namespace was deleted")]
    NamespaceGone,
}

/// A configured port or uplink: live, or not, with the reason.
struct PortEntry {
    bridge: String,
    slot: u32,
    live: Result<Arc<LivePort>, NotLive>,
    /// The bridge's uplink (a router leg), not one of its ports.
    uplink: bool,
}

/// A device opened for a port or uplink that a change adds. It becomes
/// live only if the change commits; dropped, it is closed (and a device
/// vswitchd created is removed).
struct Opened {
    name: String,
    io: Box<dyn PortIo>,
}

/// A change in progress: the edited copy of the desired state, and the
/// devices opened for it.
struct Txn {
    desired: DesiredState,
    opened: Vec<Opened>,
}

impl Txn {
    fn bridge_mut(&mut self, name: &str) -> Result<&mut BridgeConfig, ControlError> {
        self.desired
            .bridge_mut(name)
            .ok_or_else(|| ControlError::NoBridge(name.to_string()))
    }

    /// Checks the edited state now, before devices are opened for it.
    fn validate(&self) -> Result<(), ControlError> {
        Ok(self.desired.validate()?)
    }

    fn open(&mut self, name: &str, io: Box<dyn PortIo>) {
        self.opened.push(Opened {
            name: name.to_string(),
            io,
        });
    }
}

/// What a committed change removed, cleaned up once no poll thread holds
/// the snapshot that still named it.
#[derive(Default)]
struct Retired {
    /// Removed ports, with the FDB of their bridge when it lives on.
    ports: Vec<(PortEntry, Option<Arc<Fdb>>)>,
    /// Conntrack zones of removed bridges.
    zones: Vec<u16>,
}

impl Retired {
    fn is_empty(&self) -> bool {
        self.ports.is_empty() && self.zones.is_empty()
    }
}

pub struct Manager {
    state_dir: PathBuf,
    /// Where each change is saved.
    store: Store,
    desired: DesiredState,
    bridges: BTreeMap<String, LiveBridge>,
    ports: BTreeMap<String, PortEntry>,
    pmds: Vec<Arc<PmdHandle>>,
    cell: Arc<SnapshotCell>,
    generation: u64,
    next_uid: u64,
    /// Every bridge's connections; the zone (bridge slot) keeps them apart.
    ct: Arc<ConnTable>,
    /// Connections to and from attachments network policies isolate, in
    /// their policy zones (`pipeline::policy`).
    policy_ct: Arc<ConnTable>,
    /// The policy stages' connection events, and what was read of them
    /// (`observe`).
    flows: Arc<crate::flows::FlowLogs>,
    flow_history: observe::History,
    /// After a start without a saved connection table, how long
    /// established TCP flows are picked up mid-stream.
    pickup: Duration,
    /// The transaction being applied, if one is.
    batch: Option<transaction::Batch>,
    /// Changes committed and saves that failed, since the start.
    changes: u64,
    save_failures: u64,
}

/// The policy stages' connection table: as large as the NAT one, tracking
/// TCP states but not sequence windows (the stages do not show it every
/// segment of a flow they just allowed), and always picking up
/// established TCP mid-stream, so that isolating an
/// attachment keeps the connections its policies allow (their first
/// packet seen is then evaluated as a new connection would be).
fn policy_table(nat: &ConnTable) -> ConnTable {
    let table = ConnTable::new(nat.max_entries()).without_windows();
    table.pick_up_until(u64::MAX);
    table
}

/// Mid-stream pickup after a crash, unless told otherwise.
pub const DEFAULT_PICKUP: Duration = Duration::from_secs(600);

impl Manager {
    pub fn new(
        state_dir: PathBuf,
        (desired, store): (DesiredState, Store),
        pmds: Vec<Arc<PmdHandle>>,
        cell: Arc<SnapshotCell>,
        conntrack: ConnTable,
    ) -> Manager {
        Manager {
            state_dir,
            store,
            desired,
            bridges: BTreeMap::new(),
            ports: BTreeMap::new(),
            pmds,
            cell,
            generation: 0,
            next_uid: 1,
            policy_ct: Arc::new(policy_table(&conntrack)),
            flows: Arc::default(),
            flow_history: observe::History::default(),
            ct: Arc::new(conntrack),
            pickup: DEFAULT_PICKUP,
            batch: None,
            changes: 0,
            save_failures: 0,
        }
    }

    /// How long after a start without a saved connection table established
    /// TCP flows are picked up mid-stream (zero: never).
    pub fn with_pickup(mut self, pickup: Duration) -> Manager {
        self.pickup = pickup;
        self
    }

    /// The connection table, for housekeeping.
    pub fn conntrack(&self) -> Arc<ConnTable> {
        self.ct.clone()
    }

    /// The table of connections network policies allowed, for housekeeping.
    pub fn policy_conntrack(&self) -> Arc<ConnTable> {
        self.policy_ct.clone()
    }

    /// The tables housekeeping ages.
    pub fn fdbs(&self) -> Vec<Arc<Fdb>> {
        self.bridges.values().map(|b| b.fdb.clone()).collect()
    }

    pub fn neigh_tables(&self) -> Vec<Arc<NeighTable>> {
        self.bridges
            .values()
            .flat_map(|b| [b.neigh.clone(), b.uplink_neigh.clone()])
            .collect()
    }

    /// The one way the configuration changes (see the module comment).
    /// `change` edits the copy and opens the devices of what it adds;
    /// nothing is applied unless it, the validation and the save succeed.
    /// A change that leaves the state as it was saves nothing.
    fn commit<T>(&mut self, change: impl FnOnce(&mut Txn) -> Result<T, ControlError>) -> Result<T, ControlError> {
        if self.batch.is_some() {
            return self.commit_in_batch(change);
        }
        let mut txn = Txn {
            desired: self.desired.clone(),
            opened: Vec::new(),
        };
        let out = change(&mut txn)?;
        let Txn { desired, opened } = txn;
        let before = std::mem::replace(&mut self.desired, desired);
        self.conclude(before, opened)?;
        Ok(out)
    }

    /// The ending every change shares, a single request's and a whole
    /// transaction's: `self.desired` holds the edited state, `before` the
    /// state it replaces. Validated, saved, applied and published; if the
    /// validation or the save fails, `before` comes back and the devices
    /// opened for the change close as they are dropped. A change that left
    /// the state as it was and opened nothing saves and publishes nothing.
    fn conclude(&mut self, before: DesiredState, opened: Vec<Opened>) -> Result<(), ControlError> {
        if self.desired == before && opened.is_empty() {
            return Ok(());
        }
        let saved = (self.desired.validate().map_err(ControlError::from))
            .and_then(|()| self.store.save(&before, &self.desired).map_err(ControlError::Persist));
        if let Err(e) = saved {
            if matches!(e, ControlError::Persist(_)) {
                self.save_failures += 1;
            }
            self.desired = before;
            return Err(e);
        }
        self.changes += 1;
        self.apply_and_publish(&before, opened);
        Ok(())
    }

    /// `show-control-stats`.
    pub(super) fn control_stats(&self) -> vswitch_ctl::ControlStatsInfo {
        vswitch_ctl::ControlStatsInfo {
            changes: self.changes,
            save_failures: self.save_failures,
            generation: self.generation,
        }
    }

    /// Makes a committed change the switch's: applies it, publishes a
    /// snapshot unless the change is not in it (only published rules,
    /// which live in tables the poll threads share), and cleans up.
    fn apply_and_publish(&mut self, old: &DesiredState, opened: Vec<Opened>) {
        let needs_snapshot = !opened.is_empty() || !snapshot_build::same_snapshot(old, &self.desired);
        let retired = self.apply(old, opened);
        if needs_snapshot || !retired.is_empty() {
            self.publish();
        }
        self.retire(retired);
    }

    /// Brings the live objects in line with the committed desired state:
    /// tables for new bridges, published ports, the opened devices as
    /// ports; what is no longer configured is taken out (and returned, to
    /// be cleaned up after the snapshot is published).
    fn apply(&mut self, old: &DesiredState, opened: Vec<Opened>) -> Retired {
        let mut retired = Retired::default();
        // Port and uplink name -> (bridge, is the uplink), borrowed: with
        // thousands of ports, owned copies of every name were a tenth of a
        // change's time. What is needed past the borrow is taken out first.
        // Not at all when no bridge's ports or uplink changed (a publish).
        let ports_changed = !opened.is_empty() || !same_ports(old, &self.desired);
        let (gone, placed) = if !ports_changed {
            (Vec::new(), Vec::new())
        } else {
            let configured: HashMap<&str, (&str, bool)> = self
                .desired
                .bridges
                .iter()
                .flat_map(|b| {
                    let uplink = b.uplink.as_ref().map(|u| (u.iface.as_str(), (b.name.as_str(), true)));
                    b.ports
                        .iter()
                        .map(|p| (p.name.as_str(), (b.name.as_str(), false)))
                        .chain(uplink)
                })
                .collect();
            let gone: Vec<String> = self
                .ports
                .iter()
                .filter(|(name, e)| configured.get(name.as_str()) != Some(&(e.bridge.as_str(), e.uplink)))
                .map(|(name, _)| name.clone())
                .collect();
            let placed: Vec<(Opened, Option<(String, bool)>)> = opened
                .into_iter()
                .map(|o| {
                    let at = configured.get(o.name.as_str()).map(|&(b, up)| (b.to_string(), up));
                    (o, at)
                })
                .collect();
            (gone, placed)
        };
        for name in gone {
            if let Some(entry) = self.ports.remove(&name) {
                let fdb = self.bridges.get(&entry.bridge).map(|b| b.fdb.clone());
                retired.ports.push((entry, fdb));
            }
        }
        let dead: Vec<String> = {
            let wanted: HashSet<&str> = self.desired.bridges.iter().map(|b| b.name.as_str()).collect();
            (self.bridges.keys())
                .filter(|name| !wanted.contains(name.as_str()))
                .cloned()
                .collect()
        };
        for name in dead {
            if let Some(live) = self.bridges.remove(&name) {
                retired.zones.push(live.slot as u16);
            }
        }
        for br in &self.desired.bridges {
            let (Some(live), Some(before)) = (self.bridges.get(&br.name), old.bridge(&br.name)) else {
                continue;
            };
            if (before.max_macs, before.aging_secs) != (br.max_macs, br.aging_secs) {
                live.fdb.set_limits(br.max_macs, br.aging_secs);
            }
            if before.published == br.published {
                continue;
            }
            let (was, is): (HashSet<_>, HashSet<_>) =
                (before.published.iter().collect(), br.published.iter().collect());
            for r in was.difference(&is) {
                live.published.remove(r.proto.into(), r.port);
            }
            for r in is.difference(&was) {
                live.published.insert(r.proto.into(), r.port, (r.to_ip, r.to_port));
            }
        }
        let new: Vec<BridgeConfig> = (self.desired.bridges.iter())
            .filter(|b| !self.bridges.contains_key(&b.name))
            .cloned()
            .collect();
        for br in &new {
            self.start_bridge(br);
        }
        for (Opened { name, io }, at) in placed {
            let Some((bridge, uplink)) = at else {
                warn!(port = %name, "a device was opened for a port the change did not add");
                continue;
            };
            let live = self.make_live(name.clone(), io);
            self.insert_entry(name, bridge, Ok(live), uplink);
        }
        retired
    }

    /// Cleans up after a published change: learned MACs of removed ports,
    /// connections of removed bridges, and the devices themselves.
    fn retire(&self, retired: Retired) {
        for (entry, fdb) in &retired.ports {
            if let (Ok(live), Some(fdb)) = (&entry.live, fdb) {
                fdb.flush_port(live.uid);
            }
        }
        for zone in retired.zones {
            self.ct.flush(|c| c.orig.zone == zone);
        }
        // Every poll thread has moved on: closing the devices here is safe.
        drop(retired.ports);
    }

    /// Publishes a snapshot of the current live state and waits until every
    /// poll thread forwards with it.
    fn publish(&mut self) {
        self.generation += 1;
        let generation = self.generation;
        self.cell.publish(self.build_snapshot());
        for pmd in &self.pmds {
            pmd.wake();
        }
        let deadline = Instant::now() + GRACE_TIMEOUT;
        for pmd in &self.pmds {
            while pmd.seen_generation.load(Ordering::Acquire) < generation {
                if Instant::now() > deadline {
                    warn!(
                        core = pmd.core,
                        "poll thread did not take the new configuration in time"
                    );
                    break;
                }
                std::thread::sleep(Duration::from_micros(100));
            }
        }
    }

    /// Creates the live tables of a configured bridge.
    fn start_bridge(&mut self, br: &BridgeConfig) {
        let slot = free_slot(self.bridges.values().map(|b| b.slot));
        let published = Arc::new(PublishTable::default());
        for r in &br.published {
            published.insert(r.proto.into(), r.port, (r.to_ip, r.to_port));
        }
        let live = LiveBridge {
            slot,
            fdb: Arc::new(Fdb::new(br.max_macs, br.aging_secs)),
            neigh: Arc::new(NeighTable::default()),
            uplink_neigh: Arc::new(NeighTable::default()),
            published,
        };
        self.bridges.insert(br.name.clone(), live);
    }

    fn make_live(&mut self, name: String, io: Box<dyn PortIo>) -> Arc<LivePort> {
        let uid = self.next_uid;
        self.next_uid += 1;
        Arc::new(LivePort::new(uid, name, io, self.pmds.len()))
    }

    /// Records a port (or an uplink) in the lowest free slot.
    fn insert_entry(&mut self, name: String, bridge: String, live: Result<Arc<LivePort>, NotLive>, uplink: bool) {
        let slot = free_slot(self.ports.values().map(|p| p.slot));
        let entry = PortEntry {
            bridge,
            slot,
            live,
            uplink,
        };
        self.ports.insert(name, entry);
    }

    /// Bridge `name` as configured.
    fn bridge(&self, name: &str) -> Result<&BridgeConfig, ControlError> {
        self.desired
            .bridge(name)
            .ok_or_else(|| ControlError::NoBridge(name.to_string()))
    }

    /// Bridge `name` and its subnet, for what needs a routed bridge.
    fn routed_bridge(&self, name: &str) -> Result<(&BridgeConfig, Ipv4Net), ControlError> {
        let br = self.bridge(name)?;
        let subnet = br.subnet.ok_or_else(|| ControlError::NoSubnet(name.to_string()))?;
        Ok((br, subnet))
    }

    /// The conntrack zone of bridge `name`: its way out's (`uplink_via`),
    /// where its connections are tracked.
    fn zone(&self, name: &str) -> Result<u16, ControlError> {
        let way_out = self.bridge(name)?.way_out();
        self.bridges
            .get(way_out)
            .map(|b| b.slot as u16)
            .ok_or_else(|| ControlError::NoBridge(way_out.to_string()))
    }
}

/// True when every bridge has the ports and uplink it had (the same
/// lists, mostly: shared lists compare in one step).
fn same_ports(old: &DesiredState, new: &DesiredState) -> bool {
    old.bridges.len() == new.bridges.len()
        && (old.bridges.iter().zip(&new.bridges))
            .all(|(a, b)| a.name == b.name && a.ports == b.ports && a.uplink == b.uplink)
}

/// The lowest slot number not in `used`.
fn free_slot(used: impl Iterator<Item = u32>) -> u32 {
    let mut used: Vec<u32> = used.collect();
    used.sort_unstable();
    let mut slot = 0;
    for u in used {
        if u == slot {
            slot += 1;
        } else if u > slot {
            break;
        }
    }
    slot
}

/// A stable, locally administered MAC for the gateway of bridge `name`:
/// 02:76:73 ("vs") and three bytes of an FNV-1a hash of the name.
fn gateway_mac(name: &str) -> [u8; 6] {
    let h = fnv1a(name.as_bytes());
    [0x02, 0x76, 0x73, (h >> 16) as u8, (h >> 8) as u8, h as u8]
}

fn fnv1a(bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .fold(0x811c_9dc5u32, |h, &b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

#[cfg(test)]
mod tests;
