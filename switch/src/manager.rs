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

use std::net::Ipv4Addr;
use tracing::{info, warn};

use vswitch_ctl::{
    AddPort, AttachInfo, BridgeInfo, ConnEntry, CtStatsInfo, FdbEntry, Ipv4Net, LeaseInfo, MacAddr, NatProto,
    NeighEntry, PmdStats, PortInfo, PortStats, PortType, PublishRule, Reply, Request, UplinkInfo, XdpModeRequest,
};

use crate::clock;
use crate::config::{
    AfxdpConfig, BridgeConfig, DesiredState, Lease, PortConfig, StateError, UplinkConfig, DEFAULT_AGING_SECS,
    DEFAULT_MAX_MACS,
};
use crate::pipeline::fdb::Fdb;
use crate::pipeline::neigh::NeighTable;
use crate::pmd::PmdHandle;
use crate::port::afxdp::{AfXdpPort, Attachment};
use crate::port::bpf::XdpMode;
use crate::port::netlink;
use crate::port::netns::{self, NetnsError};
use crate::port::tap::{TapPort, TapSpec};
use crate::port::{read_mac, valid_ifname, LivePort, PortError, PortIo};
use crate::snapshot::{BridgeL3, BridgeSlot, NatL3, PortSlot, PublishTable, Snapshot, SnapshotCell, UplinkL3};
use crate::stats::DropReason;
use vswitch_nat::table::ConnTable;
use vswitch_nat::tcp::TcpState;
use vswitch_nat::tuple::{Proto, Tuple};

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
    #[error("bridge '{0}' has no subnet (add-br --subnet)")]
    NoSubnet(String),
    #[error("gateway {gateway} is not a host address of {subnet}")]
    BadGateway { gateway: Ipv4Addr, subnet: Ipv4Net },
    #[error("{ip} is not a free host address of {subnet} (the gateway is {gateway})")]
    BadAddress {
        ip: Ipv4Addr,
        subnet: Ipv4Net,
        gateway: Ipv4Addr,
    },
    #[error("{ip} is already leased to network namespace '{netns}'")]
    AddressTaken { ip: Ipv4Addr, netns: String },
    #[error("network namespace '{netns}' holds {ip} on bridge '{bridge}'; detach it first to change address")]
    LeaseMismatch {
        netns: String,
        ip: Ipv4Addr,
        bridge: String,
    },
    #[error("no free address left in {0}")]
    SubnetFull(Ipv4Net),
    #[error("network namespace '{netns}' is already attached to bridge '{bridge}' (port '{port}')")]
    AlreadyAttached {
        netns: String,
        bridge: String,
        port: String,
    },
    #[error("network namespace '{netns}' is not attached to bridge '{bridge}'")]
    NotAttached { netns: String, bridge: String },
    #[error("subnet {new} of bridge '{bridge}' overlaps {existing} of bridge '{other}'")]
    SubnetOverlap {
        bridge: String,
        new: Ipv4Net,
        other: String,
        existing: Ipv4Net,
    },
    #[error("cannot give the internal port the gateway address")]
    InternalAddress(#[source] std::io::Error),
    #[error("bridge '{bridge}' already has an internal port ('{port}')")]
    InternalExists { bridge: String, port: String },
    #[error("bridge '{bridge}' already has an uplink ({iface})")]
    UplinkExists { bridge: String, iface: String },
    #[error("bridge '{0}' has no uplink")]
    NoUplink(String),
    #[error("'{0}' is already the name of a port or an uplink")]
    NameTaken(String),
    #[error("uplink address {ip}/{prefix} with next hop {gw}: the next hop must be another host of that network")]
    BadUplinkAddress { ip: Ipv4Addr, prefix: u8, gw: Ipv4Addr },
    #[error("port {proto}/{port} is already published on bridge '{bridge}'")]
    AlreadyPublished { bridge: String, proto: NatProto, port: u16 },
    #[error("port {proto}/{port} is not published on bridge '{bridge}'")]
    NotPublished { bridge: String, proto: NatProto, port: u16 },
    #[error("{ip} is not a host of bridge '{bridge}' ({subnet}): published ports lead to its containers")]
    PublishOutside {
        ip: Ipv4Addr,
        bridge: String,
        subnet: Ipv4Net,
    },
    #[error("port 0 cannot be published or published to")]
    PortZero,
    #[error("a bridge cannot be linked to itself")]
    SelfLink,
    #[error("cannot give the attached interface its address")]
    Address(#[source] NetnsError),
    #[error("cannot save the configuration; nothing was changed")]
    Persist(#[source] StateError),
}

fn valid_name(name: &str, max_len: usize) -> bool {
    !name.is_empty() && name.len() <= max_len && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// The XDP modes to try, in order, for what the user asked.
fn xdp_modes(request: XdpModeRequest) -> &'static [XdpMode] {
    match request {
        XdpModeRequest::Auto => &[XdpMode::Native, XdpMode::Generic],
        XdpModeRequest::Native => &[XdpMode::Native],
        XdpModeRequest::Generic => &[XdpMode::Generic],
    }
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
            let modes = xdp_modes(cfg.mode);
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
        (PortType::Internal, _) => {
            let spec = TapSpec {
                ifname: &port.ifname,
                netns: None,
                mac: port.mac,
            };
            let (tap, mac) = TapPort::create(spec)?;
            Ok((Box::new(tap), Some(mac)))
        }
    }
}

/// Opens an uplink's device; returns it and the MAC frames to it must carry.
fn open_uplink_io(cfg: &UplinkConfig) -> Result<(Box<dyn PortIo>, MacAddr), PortError> {
    match cfg.port_type {
        PortType::Afxdp => {
            let modes = xdp_modes(cfg.mode);
            let (port, _) = AfXdpPort::open(Attachment::Iface(&cfg.iface), 0, modes)?;
            let mac = read_mac(&cfg.iface).map_err(|source| PortError::Mac {
                iface: cfg.iface.clone(),
                source,
            })?;
            Ok((Box::new(port), mac))
        }
        PortType::Tap => {
            let (tap, mac) = TapPort::create(TapSpec {
                ifname: &cfg.iface,
                netns: None,
                mac: cfg.mac,
            })?;
            Ok((Box::new(tap), mac))
        }
        other => Err(PortError::UplinkType(other)),
    }
}

/// Routes a bridge's uplink address through its internal port, so the host
/// reaches the ports published there.
fn route_uplink_via_internal(br: &BridgeConfig) {
    let Some(up) = &br.uplink else { return };
    let Some(internal) = br.ports.iter().find(|p| p.port_type == PortType::Internal) else {
        return;
    };
    let result = nix::net::if_::if_nametoindex(internal.ifname.as_str())
        .map_err(std::io::Error::from)
        .and_then(|index| netlink::set_host_route(index, up.ip));
    if let Err(err) = result {
        warn!(bridge = %br.name, uplink = %up.ip, %err, "host route to the uplink address not set");
    }
}

/// Gives an internal port the gateway address in the host namespace.
fn configure_internal(ifname: &str, gateway: Ipv4Addr, prefix: u8) -> std::io::Result<()> {
    let index = nix::net::if_::if_nametoindex(ifname).map_err(std::io::Error::from)?;
    netlink::add_address(index, gateway, prefix)
}

struct LiveBridge {
    slot: u32,
    fdb: Arc<Fdb>,
    neigh: Arc<NeighTable>,
    uplink_neigh: Arc<NeighTable>,
    published: Arc<PublishTable>,
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

/// Puts `ip/prefix` on `ifname` in `netns`, with a default route via
/// `gateway`, through netlink from inside the namespace.
fn configure_address(netns: &str, ifname: &str, ip: Ipv4Addr, prefix: u8, gateway: Ipv4Addr) -> Result<(), NetnsError> {
    netns::run_in(netns, || {
        let index = nix::net::if_::if_nametoindex(ifname).map_err(std::io::Error::from)?;
        netlink::add_address(index, ip, prefix)?;
        netlink::set_default_route(index, gateway)
    })
}

/// A configured port: live, or not, with the reason.
struct PortEntry {
    bridge: String,
    slot: u32,
    live: Result<Arc<LivePort>, String>,
    /// The bridge's uplink (a router leg), not one of its ports.
    uplink: bool,
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
    /// Every bridge's connections; the zone (bridge slot) keeps them apart.
    ct: Arc<ConnTable>,
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

impl Manager {
    pub fn new(
        state_dir: PathBuf,
        desired: DesiredState,
        pmds: Vec<Arc<PmdHandle>>,
        cell: Arc<SnapshotCell>,
        conntrack: ConnTable,
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
            ct: Arc::new(conntrack),
        }
    }

    /// The connection table, for housekeeping.
    pub fn conntrack(&self) -> Arc<ConnTable> {
        self.ct.clone()
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
                self.insert_entry(port.name.clone(), br.name.clone(), slot, live, false);
            }
        }
        for br in &desired.bridges {
            let Some(cfg) = &br.uplink else { continue };
            let live = match open_uplink_io(cfg) {
                Ok((io, _)) => Ok(self.make_live(cfg.iface.clone(), io)),
                Err(err) => {
                    let msg = error_chain(&err);
                    warn!(uplink = %cfg.iface, bridge = %br.name, error = %msg, "uplink not restored");
                    Err(format!("error: {msg}"))
                }
            };
            let slot = self.next_port_slot();
            self.insert_entry(cfg.iface.clone(), br.name.clone(), slot, live, true);
        }
        for br in &desired.bridges {
            let (Some(subnet), Some(gateway)) = (br.subnet, br.gateway) else {
                continue;
            };
            for port in br.ports.iter().filter(|p| p.port_type == PortType::Internal) {
                if self.ports.get(&port.name).is_some_and(|p| p.live.is_ok()) {
                    if let Err(err) = configure_internal(&port.ifname, gateway, subnet.prefix()) {
                        warn!(port = %port.name, %err, "gateway address not restored on the internal port");
                    }
                }
            }
        }
        // Attached containers get their addresses back (a TAP device is new
        // after a restart; a veth kept them, and adding them again is harmless).
        for br in &desired.bridges {
            let (Some(subnet), Some(gateway)) = (br.subnet, br.gateway) else {
                continue;
            };
            for lease in &br.leases {
                let live = self.ports.get(&lease.port).is_some_and(|p| p.live.is_ok());
                let Some(port) = br.ports.iter().find(|p| p.name == lease.port).filter(|_| live) else {
                    continue;
                };
                if let Err(err) = configure_address(&lease.netns, &port.ifname, lease.ip, subnet.prefix(), gateway) {
                    warn!(netns = %lease.netns, ip = %lease.ip, error = %error_chain(&err), "address not restored");
                }
            }
        }
        for br in &desired.bridges {
            route_uplink_via_internal(br);
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
        let neigh = Arc::new(NeighTable::default());
        let uplink_neigh = Arc::new(NeighTable::default());
        let published = Arc::new(PublishTable::default());
        for r in &br.published {
            published.insert(r.proto, r.port, (r.to_ip, r.to_port));
        }
        self.bridges.insert(
            br.name.clone(),
            LiveBridge {
                slot,
                fdb,
                neigh,
                uplink_neigh,
                published,
            },
        );
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

    fn insert_entry(
        &mut self,
        name: String,
        bridge: String,
        slot: u32,
        live: Result<Arc<LivePort>, String>,
        uplink: bool,
    ) {
        self.ports.insert(
            name,
            PortEntry {
                bridge,
                slot,
                live,
                uplink,
            },
        );
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
                subnet,
                gateway,
            } => self.add_br(name, aging_secs, max_macs, subnet, gateway),
            Request::DelBr { name } => self.del_br(&name),
            Request::ListBr => Ok(Reply::Bridges(
                self.desired.bridges.iter().map(|b| b.name.clone()).collect(),
            )),
            Request::AddPort(request) => self.add_port(request),
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
            Request::Attach {
                bridge,
                netns,
                port_type,
                ip,
                ifname,
            } => self.attach(
                bridge,
                netns,
                port_type,
                ip,
                ifname.unwrap_or_else(|| "eth0".to_string()),
            ),
            Request::Detach { bridge, netns } => self.detach(&bridge, &netns),
            Request::LinkBr { a, b } => self.link_br(&a, &b, true),
            Request::UnlinkBr { a, b } => self.link_br(&a, &b, false),
            Request::NeighShow { bridge } => self.neigh_show(bridge.as_deref()),
            Request::AddUplink {
                bridge,
                iface,
                ip,
                prefix,
                gw,
                port_type,
                mode,
            } => {
                let cfg = UplinkConfig {
                    iface,
                    port_type,
                    mode: mode.unwrap_or_default(),
                    ip,
                    prefix,
                    gw,
                    mac: None,
                };
                self.add_uplink(&bridge, cfg)
            }
            Request::DelUplink { bridge } => self.del_uplink(&bridge),
            Request::SetNat { bridge, masquerade } => self.set_nat(&bridge, masquerade),
            Request::Publish { bridge, rule } => self.publish_port(&bridge, rule),
            Request::Unpublish { bridge, proto, port } => self.unpublish_port(&bridge, proto, port),
            Request::ListPublished { bridge } => {
                let br = self
                    .desired
                    .bridge(&bridge)
                    .ok_or_else(|| ControlError::NoBridge(bridge.clone()))?;
                Ok(Reply::Published(br.published.clone()))
            }
            Request::CtShow { bridge } => self.ct_show(bridge.as_deref()),
            Request::CtFlush { bridge, addr } => self.ct_flush(bridge.as_deref(), addr),
            Request::CtStats => Ok(Reply::CtStats(self.ct_stats())),
        }
    }

    fn add_br(
        &mut self,
        name: String,
        aging_secs: Option<u64>,
        max_macs: Option<usize>,
        subnet: Option<Ipv4Net>,
        gateway: Option<Ipv4Addr>,
    ) -> Result<Reply, ControlError> {
        if gateway.is_some() && subnet.is_none() {
            return Err(ControlError::Option("--gateway needs --subnet"));
        }
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
        let gateway = match subnet {
            Some(net) => {
                let gw = gateway.unwrap_or_else(|| Ipv4Addr::from(u32::from(net.addr()) + 1));
                if !net.is_host(gw) {
                    return Err(ControlError::BadGateway {
                        gateway: gw,
                        subnet: net,
                    });
                }
                if let Some((other, existing)) = self
                    .desired
                    .bridges
                    .iter()
                    .find_map(|b| b.subnet.filter(|s| overlaps(s, &net)).map(|s| (b, s)))
                {
                    return Err(ControlError::SubnetOverlap {
                        bridge: name,
                        new: net,
                        other: other.name.clone(),
                        existing,
                    });
                }
                Some(gw)
            }
            None => None,
        };
        let config = BridgeConfig {
            name: name.clone(),
            aging_secs,
            max_macs,
            ports: Vec::new(),
            subnet,
            gateway,
            leases: Vec::new(),
            uplink: None,
            masquerade: false,
            published: Vec::new(),
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
        desired.links.retain(|(a, b)| a != name && b != name);
        self.save(&desired)?;
        self.desired = desired;
        let mut removed: Vec<PortEntry> = config.ports.iter().filter_map(|p| self.ports.remove(&p.name)).collect();
        removed.extend(config.uplink.as_ref().and_then(|u| self.ports.remove(&u.iface)));
        let zone = self.zone(name);
        self.bridges.remove(name);
        self.publish();
        self.ct.flush(|c| Some(c.orig.zone) == zone);
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
        if self.name_in_use(&name) {
            return Err(ControlError::NameTaken(name));
        }
        let afxdp = match port_type {
            PortType::Internal => {
                let br = self.desired.bridge(&bridge).filter(|b| b.subnet.is_some());
                let Some(br) = br else {
                    return Err(ControlError::NoSubnet(bridge));
                };
                if let Some(other) = br.ports.iter().find(|p| p.port_type == PortType::Internal) {
                    return Err(ControlError::InternalExists {
                        bridge: bridge.clone(),
                        port: other.name.clone(),
                    });
                }
                if netns.is_some()
                    || ifname.is_some()
                    || mac.is_some()
                    || mode.is_some()
                    || queue.is_some()
                    || iface.is_some()
                {
                    return Err(ControlError::Option(
                        "an internal port lives in the host namespace under its own name, with the gateway's MAC: it takes no options",
                    ));
                }
                None
            }
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
                place: netns::place(netns.as_deref()),
                port: other.name.clone(),
            });
        }
        // An internal port answers for the gateway: it wears the gateway's MAC.
        let mac = match port_type {
            PortType::Internal => Some(MacAddr(gateway_mac(&bridge))),
            _ => mac,
        };
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
        if port_type == PortType::Internal {
            let br = self.desired.bridge(&bridge);
            if let Some((subnet, gateway)) = br.and_then(|b| Some((b.subnet?, b.gateway?))) {
                configure_internal(&config.ifname, gateway, subnet.prefix()).map_err(ControlError::InternalAddress)?;
            }
        }

        let mut desired = self.desired.clone();
        if let Some(br) = desired.bridge_mut(&bridge) {
            br.ports.push(config.clone());
        }
        // On failure the device is dropped here, which removes it.
        self.save(&desired)?;
        self.desired = desired;
        let live = self.make_live(name.clone(), io);
        let slot = self.next_port_slot();
        self.insert_entry(name.clone(), bridge.clone(), slot, Ok(live), false);
        self.publish();
        if port_type == PortType::Internal {
            if let Some(br) = self.desired.bridge(&bridge) {
                route_uplink_via_internal(br);
            }
        }
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
        for (name, br) in &self.bridges {
            let slot = br.slot as usize;
            if snap.bridges.len() <= slot {
                snap.bridges.resize_with(slot + 1, || None);
            }
            snap.bridges[slot] = Some(BridgeSlot {
                fdb: br.fdb.clone(),
                ports: Vec::new(),
                l3: self.bridge_l3(name),
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
                uplink: entry.uplink,
            });
            if let Some(Some(b)) = snap.bridges.get_mut(br.slot as usize).filter(|_| !entry.uplink) {
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
                    subnet: br.subnet,
                    gateway: br.gateway,
                    gateway_mac: br.subnet.map(|_| MacAddr(gateway_mac(&br.name))),
                    leases: br
                        .leases
                        .iter()
                        .map(|l| LeaseInfo {
                            ip: l.ip,
                            netns: l.netns.clone(),
                            port: l.port.clone(),
                        })
                        .collect(),
                    linked: self
                        .desired
                        .bridges
                        .iter()
                        .filter(|o| o.name != br.name && self.desired.linked(&br.name, &o.name))
                        .map(|o| o.name.clone())
                        .collect(),
                    uplink: br.uplink.as_ref().map(|u| {
                        let entry = self.ports.get(&u.iface);
                        UplinkInfo {
                            iface: u.iface.clone(),
                            port_type: u.port_type,
                            ip: u.ip,
                            prefix: u.prefix,
                            gw: u.gw,
                            mac: u.mac,
                            state: entry.map_or_else(|| "unknown".to_string(), Self::port_state),
                            detail: entry.and_then(|e| e.live.as_ref().ok()).and_then(|l| l.io.describe()),
                        }
                    }),
                    masquerade: br.masquerade,
                    published: br.published.clone(),
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
        // Ports, then uplinks, each with its bridge.
        let names: Vec<(&str, &str)> = self
            .desired
            .ports()
            .map(|(br, p)| (br.name.as_str(), p.name.as_str()))
            .chain(
                self.desired
                    .bridges
                    .iter()
                    .filter_map(|b| Some((b.name.as_str(), b.uplink.as_ref()?.iface.as_str()))),
            )
            .collect();
        if let Some(name) = only {
            if !names.iter().any(|(_, n)| *n == name) {
                return Err(ControlError::NoPort(name.to_string()));
            }
        }
        let stats = names
            .into_iter()
            .filter(|(_, name)| only.is_none_or(|n| n == *name))
            .map(|(bridge, name)| {
                let live = self.ports.get(name).and_then(|e| e.live.as_ref().ok());
                let totals = live.map(|l| l.stats.totals()).unwrap_or_default();
                PortStats {
                    name: name.to_string(),
                    bridge: bridge.to_string(),
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

    /// The gateway view of bridge `name` for the snapshot.
    fn bridge_l3(&self, name: &str) -> Option<BridgeL3> {
        let config = self.desired.bridge(name)?;
        let (subnet, gateway) = (config.subnet?, config.gateway?);
        let live = self.bridges.get(name)?;
        let mut routes_to = vec![live.slot];
        for other in &self.desired.bridges {
            let linked = other.name != name && other.subnet.is_some() && self.desired.linked(name, &other.name);
            if let Some(b) = self.bridges.get(&other.name).filter(|_| linked) {
                routes_to.push(b.slot);
            }
        }
        let internal = config
            .ports
            .iter()
            .filter(|p| p.port_type == PortType::Internal)
            .find_map(|p| self.ports.get(&p.name).filter(|e| e.live.is_ok()).map(|e| e.slot));
        let uplink = config.uplink.as_ref().and_then(|u| {
            let entry = self.ports.get(&u.iface).filter(|e| e.uplink && e.live.is_ok())?;
            Some(UplinkL3 {
                slot: entry.slot,
                ip: u.ip,
                net: Ipv4Net::new(u.ip, u.prefix)?,
                gw: u.gw,
                mac: u.mac?.0,
                neigh: live.uplink_neigh.clone(),
            })
        });
        let nat = (config.masquerade || !config.published.is_empty()).then(|| NatL3 {
            masquerade: config.masquerade,
            published: live.published.clone(),
            ct: self.ct.clone(),
            zone: live.slot as u16,
        });
        Some(BridgeL3 {
            subnet,
            gateway,
            gateway_mac: gateway_mac(name),
            routes_to,
            neigh: live.neigh.clone(),
            internal,
            uplink,
            nat,
        })
    }

    fn attach(
        &mut self,
        bridge: String,
        netns: String,
        port_type: PortType,
        ip: Option<Ipv4Addr>,
        ifname: String,
    ) -> Result<Reply, ControlError> {
        let br = self
            .desired
            .bridge(&bridge)
            .ok_or_else(|| ControlError::NoBridge(bridge.clone()))?;
        let (Some(subnet), Some(gateway)) = (br.subnet, br.gateway) else {
            return Err(ControlError::NoSubnet(bridge));
        };
        netns::open_netns(&netns).map_err(ControlError::Address)?;
        let lease = br.leases.iter().find(|l| l.netns == netns).cloned();
        if let Some(lease) = &lease {
            if br.ports.iter().any(|p| p.name == lease.port) {
                return Err(ControlError::AlreadyAttached {
                    netns,
                    bridge,
                    port: lease.port.clone(),
                });
            }
        }
        let ip = match (ip, &lease) {
            (Some(ip), Some(l)) if ip != l.ip => {
                return Err(ControlError::LeaseMismatch {
                    netns,
                    ip: l.ip,
                    bridge,
                })
            }
            (_, Some(l)) => l.ip,
            (Some(ip), None) => {
                if !subnet.is_host(ip) || ip == gateway {
                    return Err(ControlError::BadAddress { ip, subnet, gateway });
                }
                if let Some(other) = br.leases.iter().find(|l| l.ip == ip) {
                    return Err(ControlError::AddressTaken {
                        ip,
                        netns: other.netns.clone(),
                    });
                }
                ip
            }
            (None, None) => subnet
                .hosts()
                .find(|h| *h != gateway && !br.leases.iter().any(|l| l.ip == *h))
                .ok_or(ControlError::SubnetFull(subnet))?,
        };
        let port = match &lease {
            Some(l) => l.port.clone(),
            None => self.attach_port_name(&bridge, &netns),
        };
        let request = AddPort {
            bridge: bridge.clone(),
            name: port.clone(),
            port_type,
            netns: Some(netns.clone()),
            ifname: Some(ifname.clone()),
            mac: None,
            mode: None,
            queue: None,
            iface: None,
        };
        self.add_port(request)?;
        if let Err(err) = configure_address(&netns, &ifname, ip, subnet.prefix(), gateway) {
            let _ = self.del_port(&bridge, &port);
            return Err(ControlError::Address(err));
        }
        if lease.is_none() {
            let mut desired = self.desired.clone();
            if let Some(b) = desired.bridge_mut(&bridge) {
                b.leases.push(Lease {
                    ip,
                    netns: netns.clone(),
                    port: port.clone(),
                });
            }
            if let Err(err) = self.save(&desired) {
                let _ = self.del_port(&bridge, &port);
                return Err(err);
            }
            self.desired = desired;
        }
        info!(bridge = %bridge, netns = %netns, %ip, port = %port, "namespace attached");
        Ok(Reply::Attached(AttachInfo {
            port,
            ip,
            prefix: subnet.prefix(),
            gateway,
        }))
    }

    /// A port name for an attached namespace: short enough for an interface
    /// of the host namespace (AF_XDP names its veth after it), unique.
    fn attach_port_name(&self, bridge: &str, netns: &str) -> String {
        let base = fnv1a(format!("{bridge}/{netns}").as_bytes());
        (0u32..)
            .map(|n| format!("vsa{:08x}", base.wrapping_add(n)))
            .find(|name| {
                self.desired.port(name).is_none()
                    && !self
                        .desired
                        .bridges
                        .iter()
                        .any(|b| b.leases.iter().any(|l| &l.port == name))
            })
            .unwrap_or_else(|| format!("vsa{base:08x}"))
    }

    fn detach(&mut self, bridge: &str, netns: &str) -> Result<Reply, ControlError> {
        let br = self
            .desired
            .bridge(bridge)
            .ok_or_else(|| ControlError::NoBridge(bridge.to_string()))?;
        let Some(lease) = br.leases.iter().find(|l| l.netns == netns).cloned() else {
            return Err(ControlError::NotAttached {
                netns: netns.to_string(),
                bridge: bridge.to_string(),
            });
        };
        if br.ports.iter().any(|p| p.name == lease.port) {
            self.del_port(bridge, &lease.port)?;
        }
        let mut desired = self.desired.clone();
        if let Some(b) = desired.bridge_mut(bridge) {
            b.leases.retain(|l| l.netns != netns);
        }
        self.save(&desired)?;
        self.desired = desired;
        // A container that comes back must not meet its old connections
        // (stale UDP entries are a known pain of the kernel model).
        let zone = self.zone(bridge);
        let flushed = self
            .ct
            .flush(|c| Some(c.orig.zone) == zone && (c.orig.src == lease.ip || c.reply.src == lease.ip));
        info!(bridge = %bridge, netns = %netns, ip = %lease.ip, flushed, "namespace detached");
        Ok(Reply::Done)
    }

    /// Bridge `name` and its subnet, for what needs a routed bridge.
    fn routed_bridge(&self, name: &str) -> Result<(&BridgeConfig, Ipv4Net), ControlError> {
        let br = self
            .desired
            .bridge(name)
            .ok_or_else(|| ControlError::NoBridge(name.to_string()))?;
        let subnet = br.subnet.ok_or_else(|| ControlError::NoSubnet(name.to_string()))?;
        Ok((br, subnet))
    }

    fn link_br(&mut self, a: &str, b: &str, link: bool) -> Result<Reply, ControlError> {
        for name in [a, b] {
            self.routed_bridge(name)?;
        }
        if a == b {
            return Err(ControlError::SelfLink);
        }
        if self.desired.linked(a, b) == link {
            return Ok(Reply::Done);
        }
        let mut desired = self.desired.clone();
        if link {
            desired.links.push((a.to_string(), b.to_string()));
        } else {
            desired
                .links
                .retain(|(x, y)| !((x == a && y == b) || (x == b && y == a)));
        }
        self.save(&desired)?;
        self.desired = desired;
        self.publish();
        info!(a, b, link, "bridge link changed");
        Ok(Reply::Done)
    }

    fn add_uplink(&mut self, bridge: &str, mut cfg: UplinkConfig) -> Result<Reply, ControlError> {
        let (br, subnet) = self.routed_bridge(bridge)?;
        if let Some(u) = &br.uplink {
            return Err(ControlError::UplinkExists {
                bridge: bridge.to_string(),
                iface: u.iface.clone(),
            });
        }
        if !valid_ifname(&cfg.iface) {
            return Err(ControlError::BadIfname(cfg.iface));
        }
        if self.name_in_use(&cfg.iface) {
            return Err(ControlError::NameTaken(cfg.iface));
        }
        let net = Ipv4Net::new(cfg.ip, cfg.prefix);
        let valid = net.is_some_and(|n| n.is_host(cfg.ip) && n.is_host(cfg.gw) && cfg.ip != cfg.gw);
        let Some(net) = net.filter(|_| valid) else {
            return Err(ControlError::BadUplinkAddress {
                ip: cfg.ip,
                prefix: cfg.prefix,
                gw: cfg.gw,
            });
        };
        if let Some(other) = self
            .desired
            .bridges
            .iter()
            .find(|b| b.subnet.is_some_and(|s| overlaps(&s, &net)))
        {
            let existing = other.subnet.unwrap_or(subnet);
            return Err(ControlError::SubnetOverlap {
                bridge: cfg.iface,
                new: net,
                other: other.name.clone(),
                existing,
            });
        }
        let (io, mac) = open_uplink_io(&cfg).map_err(|source| ControlError::CreatePort {
            port: cfg.iface.clone(),
            source,
        })?;
        cfg.mac = Some(mac);
        let mut desired = self.desired.clone();
        if let Some(b) = desired.bridge_mut(bridge) {
            b.uplink = Some(cfg.clone());
        }
        self.save(&desired)?;
        self.desired = desired;
        let live = self.make_live(cfg.iface.clone(), io);
        let slot = self.next_port_slot();
        self.insert_entry(cfg.iface.clone(), bridge.to_string(), slot, Ok(live), true);
        self.publish();
        if let Some(br) = self.desired.bridge(bridge) {
            route_uplink_via_internal(br);
        }
        info!(bridge, iface = %cfg.iface, ip = %cfg.ip, gw = %cfg.gw, "uplink added");
        Ok(Reply::Done)
    }

    fn del_uplink(&mut self, bridge: &str) -> Result<Reply, ControlError> {
        let br = self
            .desired
            .bridge(bridge)
            .ok_or_else(|| ControlError::NoBridge(bridge.to_string()))?;
        let Some(iface) = br.uplink.as_ref().map(|u| u.iface.clone()) else {
            return Err(ControlError::NoUplink(bridge.to_string()));
        };
        let mut desired = self.desired.clone();
        if let Some(b) = desired.bridge_mut(bridge) {
            b.uplink = None;
        }
        self.save(&desired)?;
        self.desired = desired;
        let removed = self.ports.remove(&iface);
        self.publish();
        drop(removed);
        info!(bridge, iface = %iface, "uplink deleted");
        Ok(Reply::Done)
    }

    fn set_nat(&mut self, bridge: &str, masquerade: bool) -> Result<Reply, ControlError> {
        let (br, _) = self.routed_bridge(bridge)?;
        if br.masquerade == masquerade {
            return Ok(Reply::Done);
        }
        let mut desired = self.desired.clone();
        if let Some(b) = desired.bridge_mut(bridge) {
            b.masquerade = masquerade;
        }
        self.save(&desired)?;
        self.desired = desired;
        self.publish();
        if !masquerade {
            // Masqueraded connections cannot go on untranslated.
            let zone = self.zone(bridge);
            self.ct
                .flush(|c| Some(c.orig.zone) == zone && c.reply.dst != c.orig.src);
        }
        info!(bridge, masquerade, "NAT changed");
        Ok(Reply::Done)
    }

    fn zone(&self, bridge: &str) -> Option<u16> {
        self.bridges.get(bridge).map(|b| b.slot as u16)
    }

    fn publish_port(&mut self, bridge: &str, rule: PublishRule) -> Result<Reply, ControlError> {
        let (br, subnet) = self.routed_bridge(bridge)?;
        if rule.port == 0 || rule.to_port == 0 {
            return Err(ControlError::PortZero);
        }
        if !subnet.is_host(rule.to_ip) {
            return Err(ControlError::PublishOutside {
                ip: rule.to_ip,
                bridge: bridge.to_string(),
                subnet,
            });
        }
        if br
            .published
            .iter()
            .any(|r| r.proto == rule.proto && r.port == rule.port)
        {
            return Err(ControlError::AlreadyPublished {
                bridge: bridge.to_string(),
                proto: rule.proto,
                port: rule.port,
            });
        }
        let mut desired = self.desired.clone();
        if let Some(b) = desired.bridge_mut(bridge) {
            b.published.push(rule);
        }
        self.save(&desired)?;
        self.desired = desired;
        if let Some(live) = self.bridges.get(bridge) {
            live.published.insert(rule.proto, rule.port, (rule.to_ip, rule.to_port));
        }
        self.publish();
        info!(bridge, proto = %rule.proto, port = rule.port, to = %rule.to_ip, to_port = rule.to_port, "port published");
        Ok(Reply::Done)
    }

    fn unpublish_port(&mut self, bridge: &str, proto: NatProto, port: u16) -> Result<Reply, ControlError> {
        let br = self
            .desired
            .bridge(bridge)
            .ok_or_else(|| ControlError::NoBridge(bridge.to_string()))?;
        if !br.published.iter().any(|r| r.proto == proto && r.port == port) {
            return Err(ControlError::NotPublished {
                bridge: bridge.to_string(),
                proto,
                port,
            });
        }
        let mut desired = self.desired.clone();
        if let Some(b) = desired.bridge_mut(bridge) {
            b.published.retain(|r| !(r.proto == proto && r.port == port));
        }
        self.save(&desired)?;
        self.desired = desired;
        if let Some(live) = self.bridges.get(bridge) {
            live.published.remove(proto, port);
        }
        self.publish();
        info!(bridge, %proto, port, "port unpublished");
        Ok(Reply::Done)
    }

    fn ct_show(&self, only: Option<&str>) -> Result<Reply, ControlError> {
        let zone = match only {
            Some(name) => Some(
                self.zone(name)
                    .ok_or_else(|| ControlError::NoBridge(name.to_string()))?,
            ),
            None => None,
        };
        let names: BTreeMap<u16, &str> = self.bridges.iter().map(|(n, b)| (b.slot as u16, n.as_str())).collect();
        let show = |t: &Tuple| format!("{}:{} -> {}:{}", t.src, t.src_port, t.dst, t.dst_port);
        let mut entries: Vec<ConnEntry> = self
            .ct
            .snapshot(clock::now_ms())
            .into_iter()
            .filter(|(orig, ..)| zone.is_none_or(|z| z == orig.zone))
            .map(|(orig, reply, state, secs)| ConnEntry {
                bridge: names
                    .get(&orig.zone)
                    .map_or_else(|| format!("zone {}", orig.zone), |n| n.to_string()),
                proto: match orig.proto {
                    Proto::Tcp => "tcp",
                    Proto::Udp => "udp",
                    Proto::IcmpEcho => "icmp",
                }
                .to_string(),
                orig: show(&orig),
                reply: show(&reply),
                state: state.map_or_else(|| "-".to_string(), |s| tcp_state_name(s).to_string()),
                expires_secs: secs,
            })
            .collect();
        entries.sort_by(|a, b| (&a.bridge, &a.orig).cmp(&(&b.bridge, &b.orig)));
        Ok(Reply::Conns(entries))
    }

    fn ct_flush(&self, only: Option<&str>, addr: Option<Ipv4Addr>) -> Result<Reply, ControlError> {
        let zone = match only {
            Some(name) => Some(
                self.zone(name)
                    .ok_or_else(|| ControlError::NoBridge(name.to_string()))?,
            ),
            None => None,
        };
        let n = self.ct.flush(|c| {
            zone.is_none_or(|z| z == c.orig.zone)
                && addr.is_none_or(|a| [c.orig.src, c.orig.dst, c.reply.src, c.reply.dst].contains(&a))
        });
        Ok(Reply::Flushed(n))
    }

    fn ct_stats(&self) -> CtStatsInfo {
        use std::sync::atomic::Ordering::Relaxed;
        let s = &self.ct.stats;
        CtStatsInfo {
            entries: self.ct.len(),
            max_entries: self.ct.max_entries(),
            creates: s.creates.load(Relaxed),
            expiries: s.expiries.load(Relaxed),
            invalid: s.invalid.load(Relaxed),
            out_of_window: s.out_of_window.load(Relaxed),
            table_full: s.table_full.load(Relaxed),
            ports_exhausted: s.ports_exhausted.load(Relaxed),
        }
    }

    /// True when `name` is taken by a port or an uplink.
    fn name_in_use(&self, name: &str) -> bool {
        self.desired.port(name).is_some()
            || self
                .desired
                .bridges
                .iter()
                .any(|b| b.uplink.as_ref().is_some_and(|u| u.iface == name))
    }

    fn neigh_show(&self, only: Option<&str>) -> Result<Reply, ControlError> {
        if let Some(name) = only {
            self.desired
                .bridge(name)
                .ok_or_else(|| ControlError::NoBridge(name.to_string()))?;
        }
        let now = clock::now_ms();
        let entries = self
            .bridges
            .iter()
            .filter(|(name, _)| only.is_none_or(|o| o == name.as_str()))
            .flat_map(|(name, b)| {
                let uplink = format!("{name} (uplink)");
                let inside = b.neigh.records(now).into_iter().map(move |r| (name.clone(), r));
                let outside = b
                    .uplink_neigh
                    .records(now)
                    .into_iter()
                    .map(move |r| (uplink.clone(), r));
                inside.chain(outside).map(|(bridge, (ip, mac, age))| NeighEntry {
                    bridge,
                    ip,
                    mac: MacAddr(mac),
                    age_secs: age / 1000,
                })
            })
            .collect();
        Ok(Reply::Neigh(entries))
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
}

fn tcp_state_name(state: TcpState) -> &'static str {
    match state {
        TcpState::SynSent => "SYN_SENT",
        TcpState::SynRecv => "SYN_RECV",
        TcpState::Established => "ESTABLISHED",
        TcpState::FinWait(_) => "FIN_WAIT",
        TcpState::CloseWait(_) => "CLOSE_WAIT",
        TcpState::LastAck => "LAST_ACK",
        TcpState::TimeWait => "TIME_WAIT",
        TcpState::Close => "CLOSE",
    }
}

fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(b.addr()) || b.contains(a.addr())
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
