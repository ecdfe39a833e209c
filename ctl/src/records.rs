//! The records replies carry: bridges, ports, counters, connections,
//! tunnels, the cluster, attachments, captures and traces.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::{Ipv4Net, MacAddr, PortType};

/// Frames traced since the last read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceChunk {
    pub frames: Vec<TracedFrame>,
    /// The count was reached: nothing more will come.
    pub done: bool,
}

/// One frame's way through the pipeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TracedFrame {
    pub port: String,
    /// The poll thread (index) that handled it.
    pub thread: usize,
    /// (stage, what it decided), in order: parse, l2, l3, nat, verdict.
    pub stages: Vec<(String, String)>,
}

/// Which of a port's frames a capture takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaptureDirection {
    Rx,
    Tx,
    Both,
}

/// Frames a capture took since the last read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureChunk {
    pub frames: Vec<CapturedFrame>,
    /// Frames skipped so far because the reader was too slow.
    pub skipped: u64,
    /// Frames the filter left out since the last read.
    #[serde(default)]
    pub filtered: u64,
    /// The count was reached: nothing more will come.
    pub done: bool,
    /// Bytes kept of each frame.
    pub snaplen: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapturedFrame {
    pub unix_ns: u64,
    /// The frame's length on the wire (more than `data` when cut).
    pub orig_len: u32,
    /// Sent by the port (else received).
    pub tx: bool,
    /// The Ethernet frame, hex.
    pub data: String,
}

/// A cluster-wide overlay network, for `net-list`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInfo {
    pub name: String,
    pub subnet: Ipv4Net,
    pub vni: u32,
    pub host_prefix: u8,
    pub port: u16,
    /// The hosts holding a slice, with their VTEP address when known.
    pub hosts: Vec<HostSlice>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostSlice {
    pub node: String,
    pub slice: Ipv4Net,
    pub vtep: Option<Ipv4Addr>,
}

/// This host's view of the cluster, for `cluster-status` and `show`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInfo {
    pub node: String,
    pub endpoints: Vec<String>,
    pub prefix: String,
    /// "connecting", "connected", "unreachable" or "left".
    pub state: String,
    /// Why the cluster is not reachable, or what is missing locally.
    pub detail: Option<String>,
    /// The etcd lease this host's records live under, and its TTL.
    pub lease: Option<i64>,
    pub ttl_secs: u64,
    /// The bridge whose uplink carries the overlay, and its address.
    pub underlay: Option<String>,
    pub vtep: Option<Ipv4Addr>,
    /// Seconds since the last full read of the cluster's state.
    pub synced_secs_ago: Option<u64>,
    /// Full reads of the cluster's state since start (1 + reconnections).
    pub resyncs: u64,
    /// Watch events applied since start.
    pub events: u64,
    pub networks: Vec<LocalNetwork>,
}

/// One cluster network as this host runs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalNetwork {
    pub name: String,
    pub slice: Option<Ipv4Net>,
    pub gateway: Option<Ipv4Addr>,
    /// "ready", or what is in the way.
    pub state: String,
    pub remotes: Vec<Ipv4Addr>,
}

/// A bridge's VXLAN tunnel, for `vtep-show`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelInfo {
    pub bridge: String,
    pub vni: u32,
    pub port: u16,
    /// The bridge whose uplink carries the tunnel, its interface and the
    /// local VTEP address (None while that uplink is not up).
    pub underlay: String,
    pub uplink: Option<String>,
    pub local_ip: Option<Ipv4Addr>,
    pub remotes: Vec<Ipv4Addr>,
    pub learn: bool,
    /// The outer UDP checksum is computed on send.
    #[serde(default)]
    pub udp_csum: bool,
    /// How frames too large for one packet cross: "software segmentation".
    pub path: String,
    /// Static MACs (`fdb-add`) with their VTEP.
    pub static_macs: Vec<(MacAddr, Ipv4Addr)>,
    /// Remote MACs learned from the tunnel.
    pub learned_macs: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NatProto {
    Tcp,
    Udp,
}

impl std::fmt::Display for NatProto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NatProto::Tcp => "tcp",
            NatProto::Udp => "udp",
        })
    }
}

/// `--proto P --port N --to IP:PORT`: connections to the uplink address on
/// port N go to IP:PORT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishRule {
    pub proto: NatProto,
    pub port: u16,
    pub to_ip: Ipv4Addr,
    pub to_port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnEntry {
    pub bridge: String,
    pub proto: String,
    /// "src:port -> dst:port" as first seen.
    pub orig: String,
    /// As answers arrive (after NAT).
    pub reply: String,
    pub state: String,
    pub expires_secs: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtStatsInfo {
    pub entries: usize,
    pub max_entries: usize,
    pub creates: u64,
    pub expiries: u64,
    pub invalid: u64,
    pub out_of_window: u64,
    pub table_full: u64,
    pub ports_exhausted: u64,
    /// Most connections one container may hold (`--ct-max-per-port`).
    #[serde(default)]
    pub max_per_port: usize,
    /// New connections refused because their container held its share.
    #[serde(default)]
    pub host_limit: u64,
    /// TCP flows picked up mid-stream after a start without a saved table.
    #[serde(default)]
    pub picked_up: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachInfo {
    pub port: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    /// The interface: in the namespace, or for a handoff in vswitchd's.
    #[serde(default)]
    pub ifname: String,
    #[serde(default)]
    pub mac: Option<MacAddr>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseInfo {
    pub ip: Ipv4Addr,
    pub netns: String,
    pub port: String,
    #[serde(default)]
    pub owner: Option<String>,
}

/// One attached namespace, for `list-attachments`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentInfo {
    pub bridge: String,
    /// The runtime's ID, when a runtime attached it.
    pub owner: Option<String>,
    pub netns: String,
    pub port: String,
    pub port_type: Option<PortType>,
    /// Where the interface is: its name in `netns`, or in vswitchd's
    /// namespace while a runtime has yet to move it.
    pub ifname: Option<String>,
    pub moved: bool,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub mac: Option<MacAddr>,
    /// "up", or why the port does not forward.
    pub state: String,
    /// Ports of the uplink address that lead to this address.
    pub published: Vec<PublishRule>,
    /// Who policies see: `namespace`/`name` and the labels.
    pub namespace: String,
    pub name: String,
    #[serde(default)]
    pub labels: vswitch_policy::model::Labels,
}

/// One network policy, for `list-policies` and `show-policy`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyInfo {
    pub policy: vswitch_policy::model::Policy,
    /// The attachments it selects, as `NS/NAME`.
    pub selects: Vec<String>,
}

/// An attachment on another host of the cluster, as policies see it: its
/// address on a cluster network, its namespace, name and labels.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RemoteMember {
    pub node: String,
    /// The cluster network (the bridge of that name on every host).
    pub network: String,
    pub ip: Ipv4Addr,
    pub namespace: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "vswitch_policy::model::Labels::is_empty")]
    pub labels: vswitch_policy::model::Labels,
}

/// Connection events `observe` read, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowChunk {
    pub flows: Vec<FlowInfo>,
    /// The sequence number to read after next time.
    pub last: u64,
    /// Events the poll threads could not keep (the reader too slow).
    pub lost: u64,
}

/// One connection event, named.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowInfo {
    pub seq: u64,
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// `new`, `denied` or `closed`.
    pub event: String,
    /// `tcp`, `udp`, `icmp` or `proto N`.
    pub protocol: String,
    /// The opener: `NS/NAME (IP)` when an attachment, else the IP; and its port.
    pub src: String,
    pub src_port: u16,
    pub dst: String,
    pub dst_port: u16,
    /// What decides, as the policies are when read (`check-policy`'s words).
    pub reason: String,
}

/// What the policies would do to a connection (`check-policy`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyCheck {
    pub allowed: bool,
    /// The ends as named: `NS/NAME (IP)` for an attachment, else the IP.
    pub from: String,
    pub to: String,
    /// The connection asked about: IP protocol and destination port.
    pub protocol: u8,
    pub port: u16,
    /// The opener's egress, when it is an attachment here.
    pub egress: Option<SideCheck>,
    /// The acceptor's ingress, when it is an attachment here.
    pub ingress: Option<SideCheck>,
    /// What decides besides the policies: the gateway always passes, a
    /// bridge with icc off keeps its attachments apart.
    pub note: Option<String>,
}

/// One end's side of a [`PolicyCheck`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SideCheck {
    /// The attachment judged, `NS/NAME`.
    pub attachment: String,
    /// The policies isolating it in this direction (none: all allowed).
    pub isolated_by: Vec<String>,
    pub allowed: bool,
    /// The policy (`NS/NAME`) and the index of its rule that allows it.
    pub allowed_by: Option<(String, u16)>,
}

/// What `apply` did, object by object, as kubectl says it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// `(kind, NS/NAME or NAME, created|configured|unchanged)`.
    pub objects: Vec<(String, String, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeighEntry {
    pub bridge: String,
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    pub age_secs: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeInfo {
    pub name: String,
    pub aging_secs: u64,
    pub max_macs: usize,
    pub learned_macs: usize,
    /// Frames from new source MACs that were not learned because the table was full.
    pub learn_limit_hits: u64,
    pub mac_moves: u64,
    pub ports: Vec<PortInfo>,
    #[serde(default)]
    pub subnet: Option<Ipv4Net>,
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
    #[serde(default)]
    pub gateway_mac: Option<MacAddr>,
    /// The part of the subnet `attach` hands addresses out of.
    #[serde(default)]
    pub ip_range: Option<Ipv4Net>,
    #[serde(default)]
    pub leases: Vec<LeaseInfo>,
    /// Bridges this one routes to.
    #[serde(default)]
    pub linked: Vec<String>,
    /// The bridge whose uplink this one leaves through.
    #[serde(default)]
    pub uplink_via: Option<String>,
    /// Its attachments may reach each other (`icc=false`: only the
    /// gateway, the host and the outside).
    #[serde(default = "crate::records::yes")]
    pub icc: bool,
    #[serde(default)]
    pub uplink: Option<UplinkInfo>,
    #[serde(default)]
    pub masquerade: bool,
    #[serde(default)]
    pub published: Vec<PublishRule>,
    /// The bridge's VXLAN tunnel.
    #[serde(default)]
    pub tunnel: Option<TunnelInfo>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UplinkInfo {
    pub iface: String,
    pub port_type: PortType,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gw: Ipv4Addr,
    pub mac: Option<MacAddr>,
    pub state: String,
    pub detail: Option<String>,
    /// Where a TAP uplink lives (None: vswitchd's namespace).
    #[serde(default)]
    pub netns: Option<String>,
    /// The interface is shared with the host's stack.
    #[serde(default)]
    pub shared: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortInfo {
    pub name: String,
    pub port_type: PortType,
    pub netns: Option<String>,
    pub ifname: String,
    pub mac: Option<MacAddr>,
    /// Poll thread (by core) that reads this port, when it is running.
    pub pmd_core: Option<usize>,
    /// "up", or why the port is not forwarding.
    pub state: String,
    /// How the port is attached (XDP mode, queue...), when it is up.
    #[serde(default)]
    pub detail: Option<String>,
    /// The source guard: the only MAC and address the port may send from.
    #[serde(default)]
    pub guard: Option<(MacAddr, Ipv4Addr)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdbEntry {
    /// The bridge whose table holds it.
    #[serde(default)]
    pub bridge: String,
    pub mac: MacAddr,
    /// The port, or "vxlan" for a MAC behind a remote VTEP.
    pub port: String,
    pub age_secs: u64,
    /// The remote VTEP, for MACs behind the tunnel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vtep: Option<Ipv4Addr>,
    /// Added with `fdb-add`: never ages.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_static: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortStats {
    pub name: String,
    pub bridge: String,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    /// Frames received as GSO super-frames (larger than the MTU, segmented later by the kernel).
    pub rx_gso_packets: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub tx_gso_packets: u64,
    /// Dropped frames by reason; every reason is listed, zero or not.
    pub drops: BTreeMap<String, u64>,
    /// What the kernel counted for the device (AF_XDP socket statistics).
    #[serde(default)]
    pub kernel: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PmdStats {
    pub core: usize,
    pub ports: Vec<String>,
    pub packets: u64,
    /// Loop iterations that moved at least one frame.
    pub busy_iterations: u64,
    /// Loop iterations that found nothing to do (while still spinning).
    pub idle_iterations: u64,
    /// Times the thread gave up spinning and slept in epoll.
    pub sleeps: u64,
    /// Reads from ports, with frames or not: about ports x iterations
    /// with a few ports, only the ready ones with many.
    #[serde(default)]
    pub port_reads: u64,
    /// Time spent in busy iterations divided by packets moved.
    pub avg_ns_per_packet: f64,
    /// Time spent in busy iterations, in all (what a rate can be taken of).
    #[serde(default)]
    pub busy_ns: u64,
}

/// The control plane's own counters (`vsctl show-control-stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlStatsInfo {
    /// Changes committed (a transaction counts once) since vswitchd started.
    pub changes: u64,
    /// Changes refused because the configuration could not be saved.
    pub save_failures: u64,
    /// The snapshot generation the poll threads forward with.
    pub generation: u64,
}

pub(crate) fn yes() -> bool {
    true
}
