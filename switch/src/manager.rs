//! The control plane's model: desired state plus the live objects built from
//! it, and the requests that change them.
//!
//! Every change follows one order: validate, create what can fail (devices),
//! persist the new desired state, then publish a snapshot. A request that
//! fails leaves the switch exactly as it was. Deletions publish first and wait
//! for every poll thread to drop the old snapshot before tearing the device
//! down, so no thread ever writes to a port that is being closed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};
use vswitch_ctl::{
    BridgeInfo, FdbEntry, MacAddr, PmdStats, PortInfo, PortStats, PortType, Reply, Request, XdpModeRequest,
};

use crate::clock;
use crate::config::{
    AfxdpConfig, BridgeConfig, DesiredState, PortConfig, StateError, DEFAULT_AGING_SECS, DEFAULT_MAX_MACS,
};
use crate::pipeline::fdb::Fdb;
use crate::pmd::PmdHandle;
use crate::port::afxdp::{AfXdpPort, Attachment};
use crate::port::bpf::XdpMode;
use crate::port::tap::{TapPort, TapSpec};
use crate::port::{valid_ifname, LivePort, PortError, PortIo};
use crate::snapshot::{BridgeSlot, PortSlot, Snapshot, SnapshotCell};
use crate::stats::DropReason;

/// How long a change waits for the poll threads to let go of the old snapshot.
const GRACE_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_AGING_SECS: u64 = 1_000_000;
const MAX_MACS_LIMIT: usize = 1 << 20;
const MAX_BRIDGE_NAME: usize = 32;
/// Highest interface queue an AF_XDP port may bind.
const MAX_QUEUE: u32 = 255;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("bridge name '{0}' is not valid (1-32 characters: letters, digits, '.', '-', '_')")]
    BadBridgeName(String),
    #[error("port name '{0}' is not valid (1-15 characters: letters, digits, '.', '-', '_')")]
    BadPortName(String),
    #[error("interface name '{0}' is not valid (1-15 characters, no '/', ':' or spaces)")]
    BadIfname(String),
    #[error("bridge '{0}' already exists")]
    BridgeExists(String),
    #[error("bridge '{0}' does not exist")]
    NoBridge(String),
    #[error("port '{port}' already exists on bridge '{bridge}'")]
    PortExists { port: String, bridge: String },
    #[error("port '{0}' does not exist")]
    NoPort(String),
    #[error("port '{port}' is on bridge '{actual}', not '{asked}'")]
    WrongBridge {
        port: String,
        actual: String,
        asked: String,
    },
    #[error("interface '{ifname}' in {place} is already port '{port}'")]
    IfnameTaken {
        ifname: String,
        place: String,
        port: String,
    },
    #[error("{what} must be between {min} and {max}, not {value}")]
    OutOfRange {
        what: &'static str,
        value: u64,
        min: u64,
        max: u64,
    },
    #[error("cannot create port '{port}'")]
    CreatePort {
        port: String,
        #[source]
        source: PortError,
    },
    #[error("{0}")]
    Option(&'static str),
    #[error("cannot save the configuration; nothing was changed")]
    Persist(#[source] StateError),
}

fn valid_name(name: &str, max_len: usize) -> bool {
    !name.is_empty() && name.len() <= max_len && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// The fields of `Request::AddPort`.
struct AddPort {
    bridge: String,
    name: String,
    port_type: PortType,
    netns: Option<String>,
    ifname: Option<String>,
    mac: Option<MacAddr>,
    mode: Option<XdpModeRequest>,
    queue: Option<u32>,
    iface: Option<String>,
}

/// Opens the device of a configured port. `restoring`: the port existed
/// before this start-up, so a veth pair left by the previous run is taken
/// over instead of refused. Returns the device and its MAC, when it has one
/// of ours.
fn open_port_io(port: &PortConfig, restoring: bool) -> Result<(Box<dyn PortIo>, Option<MacAddr>), PortError> {
    match (&port.port_type, &port.afxdp) {
        (PortType::Tap, _) => {
            let spec = TapSpec {
                ifname: &port.ifname,
                netns: port.netns.as_deref(),
                mac: port.mac,
            };
            let (tap, mac) = TapPort::create(spec)?;
            Ok((Box::new(tap), Some(mac)))
        }
        (PortType::Afxdp, Some(cfg)) => {
            let modes: &[XdpMode] = match cfg.mode {
                XdpModeRequest::Auto => &[XdpMode::Native, XdpMode::Generic],
                XdpModeRequest::Native => &[XdpMode::Native],
                XdpModeRequest::Generic => &[XdpMode::Generic],
            };
            let at = match (&cfg.iface, &port.netns) {
                (Some(iface), _) => Attachment::Iface(iface),
                (None, Some(netns)) => Attachment::Veth {
                    host: &port.name,
                    netns,
                    ifname: &port.ifname,
                    mac: port.mac,
                    adopt: restoring,
                },
                (None, None) => return Err(PortError::Incomplete(port.name.clone())),
            };
            let (xsk, mac) = AfXdpPort::open(at, cfg.queue, modes)?;
            Ok((Box::new(xsk), mac))
        }
        (PortType::Afxdp, None) => Err(PortError::Incomplete(port.name.clone())),
    }
}

struct LiveBridge {
    slot: u32,
    fdb: Arc<Fdb>,
}

/// A configured port: live, or not, with the reason.
struct PortEntry {
    bridge: String,
    slot: u32,
    live: Result<Arc<LivePort>, String>,
}

pub struct Manager {
    state_dir: PathBuf,
    desired: DesiredState,
    bridges: BTreeMap<String, LiveBridge>,
    ports: BTreeMap<String, PortEntry>,
    pmds: Vec<Arc<PmdHandle>>,
    cell: Arc<SnapshotCell>,
    generation: u64,
    next_uid: u64,
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

fn place(netns: Option<&str>) -> String {
    match netns {
        Some(ns) => format!("network namespace '{ns}'"),
        None => "the host namespace".to_string(),
    }
}

impl Manager {
    pub fn new(
        state_dir: PathBuf,
        desired: DesiredState,
        pmds: Vec<Arc<PmdHandle>>,
        cell: Arc<SnapshotCell>,
    ) -> Manager {
        Manager {
            state_dir,
            desired,
            bridges: BTreeMap::new(),
            ports: BTreeMap::new(),
            pmds,
            cell,
            generation: 0,
            next_uid: 1,
        }
    }

    /// Builds the live switch from the desired state read at start-up. A port
    /// that cannot be recreated (its namespace is gone, say) is reported and
    /// kept in the configuration, marked with the reason.
    pub fn restore(&mut self) {
        let desired = self.desired.clone();
        for br in &desired.bridges {
            self.start_bridge(br);
            for port in &br.ports {
                let live = self.start_port(port, true).map_err(|err| {
                    let msg = error_chain(&err);
                    warn!(port = %port.name, bridge = %br.name, error = %msg, "port not restored");
                    format!("error: {msg}")
                });
                let slot = self.next_port_slot();
                self.ports.insert(
                    port.name.clone(),
                    PortEntry {
                        bridge: br.name.clone(),
                        slot,
                        live,
                    },
                );
            }
        }
        let up = self.ports.values().filter(|p| p.live.is_ok()).count();
        info!(
            bridges = desired.bridges.len(),
            ports = self.ports.len(),
            up,
            "configuration restored"
        );
        self.publish();
    }

    fn start_bridge(&mut self, br: &BridgeConfig) {
        let slot = free_slot(self.bridges.values().map(|b| b.slot));
        let fdb = Arc::new(Fdb::new(br.max_macs, br.aging_secs));
        self.bridges.insert(br.name.clone(), LiveBridge { slot, fdb });
    }

    fn start_port(&mut self, port: &PortConfig, restoring: bool) -> Result<Arc<LivePort>, ControlError> {
        let (io, _mac) = open_port_io(port, restoring).map_err(|source| ControlError::CreatePort {
            port: port.name.clone(),
            source,
        })?;
        Ok(self.make_live(port.name.clone(), io))
    }

    fn make_live(&mut self, name: String, io: Box<dyn PortIo>) -> Arc<LivePort> {
        let uid = self.next_uid;
        self.next_uid += 1;
        Arc::new(LivePort::new(uid, name, io, self.pmds.len()))
    }

    fn next_port_slot(&self) -> u32 {
        free_slot(self.ports.values().map(|p| p.slot))
    }

    fn save(&self, desired: &DesiredState) -> Result<(), ControlError> {
        desired.save(&self.state_dir).map_err(ControlError::Persist)
    }

    pub fn handle(&mut self, request: Request) -> Result<Reply, ControlError> {
        match request {
            Request::AddBr {
                name,
                aging_secs,
                max_macs,
            } => self.add_br(name, aging_secs, max_macs),
            Request::DelBr { name } => self.del_br(&name),
            Request::ListBr => Ok(Reply::Bridges(
                self.desired.bridges.iter().map(|b| b.name.clone()).collect(),
            )),
            Request::AddPort {
                bridge,
                name,
                port_type,
                netns,
                ifname,
                mac,
                mode,
                queue,
                iface,
            } => self.add_port(AddPort {
                bridge,
                name,
                port_type,
                netns,
                ifname,
                mac,
                mode,
                queue,
                iface,
            }),
            Request::DelPort { bridge, name } => self.del_port(&bridge, &name),
            Request::ListPorts { bridge } => {
                let br = self
                    .desired
                    .bridge(&bridge)
                    .ok_or_else(|| ControlError::NoBridge(bridge.clone()))?;
                Ok(Reply::Ports(br.ports.iter().map(|p| p.name.clone()).collect()))
            }
            Request::Show => Ok(Reply::Show(self.show())),
            Request::FdbShow { bridge } => self.fdb_show(&bridge),
            Request::PortStats { port } => self.port_stats(port.as_deref()),
            Request::PmdStats => Ok(Reply::PmdStats(self.pmd_stats())),
        }
    }

    fn add_br(
        &mut self,
        name: String,
        aging_secs: Option<u64>,
        max_macs: Option<usize>,
    ) -> Result<Reply, ControlError> {
        if !valid_name(&name, MAX_BRIDGE_NAME) {
            return Err(ControlError::BadBridgeName(name));
        }
        if self.desired.bridge(&name).is_some() {
            return Err(ControlError::BridgeExists(name));
        }
        let aging_secs = aging_secs.unwrap_or(DEFAULT_AGING_SECS);
        if !(1..=MAX_AGING_SECS).contains(&aging_secs) {
            return Err(ControlError::OutOfRange {
                what: "aging",
                value: aging_secs,
                min: 1,
                max: MAX_AGING_SECS,
            });
        }
        let max_macs = max_macs.unwrap_or(DEFAULT_MAX_MACS);
        if !(1..=MAX_MACS_LIMIT).contains(&max_macs) {
            return Err(ControlError::OutOfRange {
                what: "max-macs",
                value: max_macs as u64,
                min: 1,
                max: MAX_MACS_LIMIT as u64,
            });
        }
        let config = BridgeConfig {
            name: name.clone(),
            aging_secs,
            max_macs,
            ports: Vec::new(),
        };
        let mut desired = self.desired.clone();
        desired.bridges.push(config.clone());
        self.save(&desired)?;
        self.desired = desired;
        self.start_bridge(&config);
        self.publish();
        info!(bridge = %name, aging_secs, max_macs, "bridge added");
        Ok(Reply::Done)
    }

    fn del_br(&mut self, name: &str) -> Result<Reply, ControlError> {
        let Some(config) = self.desired.bridge(name).cloned() else {
            return Err(ControlError::NoBridge(name.to_string()));
        };
        let mut desired = self.desired.clone();
        desired.bridges.retain(|b| b.name != name);
        self.save(&desired)?;
        self.desired = desired;
        let removed: Vec<PortEntry> = config.ports.iter().filter_map(|p| self.ports.remove(&p.name)).collect();
        self.bridges.remove(name);
        self.publish();
        drop(removed);
        info!(bridge = %name, ports = config.ports.len(), "bridge deleted");
        Ok(Reply::Done)
    }

    fn add_port(&mut self, request: AddPort) -> Result<Reply, ControlError> {
        let AddPort {
            bridge,
            name,
            port_type,
            netns,
            ifname,
            mac,
            mode,
            queue,
            iface,
        } = request;
        if !valid_name(&name, libc::IFNAMSIZ - 1) {
            return Err(ControlError::BadPortName(name));
        }
        if self.desired.bridge(&bridge).is_none() {
            return Err(ControlError::NoBridge(bridge));
        }
        if let Some((br, _)) = self.desired.port(&name) {
            return Err(ControlError::PortExists {
                port: name,
                bridge: br.name.clone(),
            });
        }
        let afxdp = match port_type {
            PortType::Tap => {
                if mode.is_some() || queue.is_some() || iface.is_some() {
                    return Err(ControlError::Option(
                        "--mode, --queue and --iface apply to afxdp ports only",
                    ));
                }
                None
            }
            PortType::Afxdp => {
                if iface.is_some() && (netns.is_some() || ifname.is_some() || mac.is_some()) {
                    return Err(ControlError::Option(
                        "--iface binds to an existing interface; --netns, --ifname and --mac describe a veth pair vswitchd creates",
                    ));
                }
                if iface.is_none() && netns.is_none() {
                    return Err(ControlError::Option(
                        "an afxdp port needs --netns NS (vswitchd creates a veth pair into it) or --iface DEV (an existing interface)",
                    ));
                }
                let queue = queue.unwrap_or(0);
                if queue > MAX_QUEUE {
                    return Err(ControlError::OutOfRange {
                        what: "queue",
                        value: queue.into(),
                        min: 0,
                        max: MAX_QUEUE.into(),
                    });
                }
                Some(AfxdpConfig {
                    mode: mode.unwrap_or_default(),
                    queue,
                    iface: iface.clone(),
                })
            }
        };
        let ifname = iface.or(ifname).unwrap_or_else(|| name.clone());
        if !valid_ifname(&ifname) {
            return Err(ControlError::BadIfname(ifname));
        }
        let taken = |p: &PortConfig| {
            // Interfaces of vswitchd's namespace: a veth's host end is named after its port.
            let host_end = p.afxdp.as_ref().is_some_and(|a| a.iface.is_none()) && p.name == ifname && netns.is_none();
            (p.ifname == ifname && p.netns == netns) || host_end
        };
        if let Some((_, other)) = self.desired.ports().find(|(_, p)| taken(p)) {
            return Err(ControlError::IfnameTaken {
                ifname,
                place: place(netns.as_deref()),
                port: other.name.clone(),
            });
        }
        let mut config = PortConfig {
            name: name.clone(),
            port_type,
            netns,
            ifname,
            mac,
            afxdp,
        };
        let (io, mac) = open_port_io(&config, false).map_err(|source| ControlError::CreatePort {
            port: name.clone(),
            source,
        })?;
        config.mac = mac;

        let mut desired = self.desired.clone();
        if let Some(br) = desired.bridge_mut(&bridge) {
            br.ports.push(config.clone());
        }
        // On failure the device is dropped here, which removes it.
        self.save(&desired)?;
        self.desired = desired;
        let live = self.make_live(name.clone(), io);
        let slot = self.next_port_slot();
        self.ports.insert(
            name.clone(),
            PortEntry {
                bridge: bridge.clone(),
                slot,
                live: Ok(live),
            },
        );
        self.publish();
        info!(port = %name, bridge = %bridge, kind = %port_type, netns = ?config.netns, ifname = %config.ifname, "port added");
        Ok(Reply::Done)
    }

    fn del_port(&mut self, bridge: &str, name: &str) -> Result<Reply, ControlError> {
        if self.desired.bridge(bridge).is_none() {
            return Err(ControlError::NoBridge(bridge.to_string()));
        }
        match self.desired.port(name) {
            None => return Err(ControlError::NoPort(name.to_string())),
            Some((br, _)) if br.name != bridge => {
                return Err(ControlError::WrongBridge {
                    port: name.to_string(),
                    actual: br.name.clone(),
                    asked: bridge.to_string(),
                })
            }
            Some(_) => {}
        }
        let mut desired = self.desired.clone();
        if let Some(br) = desired.bridge_mut(bridge) {
            br.ports.retain(|p| p.name != name);
        }
        self.save(&desired)?;
        self.desired = desired;
        let removed = self.ports.remove(name);
        self.publish();
        if let (Some(entry), Some(br)) = (&removed, self.bridges.get(bridge)) {
            if let Ok(live) = &entry.live {
                br.fdb.flush_port(live.uid);
            }
        }
        // Every poll thread has moved on: closing the device here is safe.
        drop(removed);
        info!(port = %name, bridge = %bridge, "port deleted");
        Ok(Reply::Done)
    }

    fn build_snapshot(&self) -> Snapshot {
        let mut snap = Snapshot {
            generation: self.generation,
            ..Default::default()
        };
        for br in self.bridges.values() {
            let slot = br.slot as usize;
            if snap.bridges.len() <= slot {
                snap.bridges.resize_with(slot + 1, || None);
            }
            snap.bridges[slot] = Some(BridgeSlot {
                fdb: br.fdb.clone(),
                ports: Vec::new(),
            });
        }
        let mut live_slots = Vec::new();
        for entry in self.ports.values() {
            let (Ok(live), Some(br)) = (&entry.live, self.bridges.get(&entry.bridge)) else {
                continue;
            };
            let slot = entry.slot as usize;
            if snap.ports.len() <= slot {
                snap.ports.resize_with(slot + 1, || None);
            }
            snap.ports[slot] = Some(PortSlot {
                port: live.clone(),
                bridge: br.slot,
                vnet_hdr: live.io.has_vnet_hdr(),
            });
            if let Some(Some(b)) = snap.bridges.get_mut(br.slot as usize) {
                b.ports.push(entry.slot);
            }
            live_slots.push(entry.slot);
        }
        for b in snap.bridges.iter_mut().flatten() {
            b.ports.sort_unstable();
        }
        live_slots.sort_unstable();
        let threads = self.pmds.len().max(1);
        snap.rx_assign = vec![Vec::new(); threads];
        for (i, slot) in live_slots.into_iter().enumerate() {
            snap.rx_assign[i % threads].push(slot);
        }
        snap
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

    fn port_state(entry: &PortEntry) -> String {
        match &entry.live {
            Ok(live) => live.state(),
            Err(reason) => reason.clone(),
        }
    }

    fn show(&self) -> Vec<BridgeInfo> {
        let snap = self.cell.load();
        self.desired
            .bridges
            .iter()
            .map(|br| {
                let fdb = self.bridges.get(&br.name).map(|b| b.fdb.clone());
                BridgeInfo {
                    name: br.name.clone(),
                    aging_secs: br.aging_secs,
                    max_macs: br.max_macs,
                    learned_macs: fdb.as_ref().map_or(0, |f| f.records(clock::now_ms()).len()),
                    learn_limit_hits: fdb.as_ref().map_or(0, |f| f.limit_hits()),
                    mac_moves: fdb.as_ref().map_or(0, |f| f.moves()),
                    ports: br
                        .ports
                        .iter()
                        .map(|p| {
                            let entry = self.ports.get(&p.name);
                            PortInfo {
                                name: p.name.clone(),
                                port_type: p.port_type,
                                netns: p.netns.clone(),
                                ifname: p.ifname.clone(),
                                mac: p.mac,
                                pmd_core: entry
                                    .filter(|e| e.live.is_ok())
                                    .and_then(|e| snap.reader_of(e.slot))
                                    .and_then(|i| self.pmds.get(i))
                                    .map(|pmd| pmd.core),
                                state: entry.map_or_else(|| "unknown".to_string(), Self::port_state),
                                detail: entry.and_then(|e| e.live.as_ref().ok()).and_then(|l| l.io.describe()),
                            }
                        })
                        .collect(),
                }
            })
            .collect()
    }

    fn fdb_show(&self, bridge: &str) -> Result<Reply, ControlError> {
        let br = self
            .bridges
            .get(bridge)
            .ok_or_else(|| ControlError::NoBridge(bridge.to_string()))?;
        let by_uid: BTreeMap<u64, &str> = self
            .ports
            .iter()
            .filter_map(|(name, e)| e.live.as_ref().ok().map(|l| (l.uid, name.as_str())))
            .collect();
        let entries = br
            .fdb
            .records(clock::now_ms())
            .into_iter()
            .filter_map(|r| {
                by_uid.get(&r.port.uid).map(|port| FdbEntry {
                    mac: MacAddr(r.mac),
                    port: port.to_string(),
                    age_secs: r.age_ms / 1000,
                })
            })
            .collect();
        Ok(Reply::Fdb(entries))
    }

    fn port_stats(&self, only: Option<&str>) -> Result<Reply, ControlError> {
        if let Some(name) = only {
            if self.desired.port(name).is_none() {
                return Err(ControlError::NoPort(name.to_string()));
            }
        }
        let stats = self
            .desired
            .ports()
            .filter(|(_, p)| only.is_none_or(|n| n == p.name))
            .map(|(br, p)| {
                let live = self.ports.get(&p.name).and_then(|e| e.live.as_ref().ok());
                let totals = live.map(|l| l.stats.totals()).unwrap_or_default();
                PortStats {
                    name: p.name.clone(),
                    bridge: br.name.clone(),
                    rx_packets: totals.rx_packets,
                    rx_bytes: totals.rx_bytes,
                    rx_gso_packets: totals.rx_gso_packets,
                    tx_packets: totals.tx_packets,
                    tx_bytes: totals.tx_bytes,
                    tx_gso_packets: totals.tx_gso_packets,
                    drops: DropReason::ALL
                        .iter()
                        .map(|r| (r.name().to_string(), totals.drops(*r)))
                        .collect(),
                    kernel: live
                        .map(|l| {
                            l.io.kernel_stats()
                                .into_iter()
                                .map(|(k, v)| (k.to_string(), v))
                                .collect()
                        })
                        .unwrap_or_default(),
                }
            })
            .collect();
        Ok(Reply::PortStats(stats))
    }

    fn pmd_stats(&self) -> Vec<PmdStats> {
        let snap = self.cell.load();
        self.pmds
            .iter()
            .map(|pmd| {
                let c = &pmd.counters;
                let ports = snap
                    .rx_assign
                    .get(pmd.index)
                    .map(|slots| {
                        slots
                            .iter()
                            .filter_map(|&s| snap.port(s))
                            .map(|p| p.port.name.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                let packets = c.packets.get();
                PmdStats {
                    core: pmd.core,
                    ports,
                    packets,
                    busy_iterations: c.busy_iterations.get(),
                    idle_iterations: c.idle_iterations.get(),
                    sleeps: c.sleeps.get(),
                    avg_ns_per_packet: if packets == 0 {
                        0.0
                    } else {
                        c.busy_ns.get() as f64 / packets as f64
                    },
                }
            })
            .collect()
    }

    /// The tables housekeeping ages.
    pub fn fdbs(&self) -> Vec<Arc<Fdb>> {
        self.bridges.values().map(|b| b.fdb.clone()).collect()
    }
}

/// An error and its causes on one line: "cannot create port 'p1': interface
/// 'eth0' already exists in network namespace 'c1'".
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_reused_lowest_first() {
        assert_eq!(free_slot([].into_iter()), 0);
        assert_eq!(free_slot([0, 1, 3].into_iter()), 2);
        assert_eq!(free_slot([3, 1, 0, 2].into_iter()), 4);
        assert_eq!(free_slot([1].into_iter()), 0);
    }

    #[test]
    fn names() {
        assert!(valid_name("br-0_a.b", 32));
        assert!(!valid_name("", 32));
        assert!(!valid_name("br 0", 32));
        assert!(!valid_name("a/b", 32));
        assert!(!valid_name(&"x".repeat(33), 32));
    }

    #[test]
    fn error_chain_joins_causes() {
        let err = ControlError::Persist(StateError::Write {
            path: "/x".into(),
            source: std::io::Error::from_raw_os_error(libc::ENOSPC),
        });
        let text = error_chain(&err);
        assert!(
            text.starts_with("cannot save the configuration; nothing was changed: cannot write state file /x: "),
            "{text}"
        );
    }
}
