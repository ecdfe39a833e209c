//! Requests, replies and the records they carry.
//!
//! Wire format: one JSON object per line. A request is tagged by `cmd`
//! (`{"cmd":"add-br","name":"br0"}`); a response is either
//! `{"status":"ok","result":{"kind":...,"data":...}}` or
//! `{"status":"error","message":"..."}`.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::records::*;
use crate::{Ipv4Net, MacAddr};

/// The kinds of port vswitchd can create.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortType {
    /// A TAP device opened by vswitchd (IFF_VNET_HDR, offloads on),
    /// optionally moved into a container's network namespace.
    Tap,
    /// An AF_XDP socket on the host end of a veth pair into a container's
    /// namespace, or on an existing interface.
    Afxdp,
    /// A TAP left in the host namespace carrying the bridge's gateway
    /// address, so the host reaches the bridge's containers (docker0's role).
    Internal,
}

/// Where an AF_XDP port's XDP program should run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpModeRequest {
    /// Native (driver) mode if the driver has it, generic otherwise.
    #[default]
    Auto,
    Native,
    Generic,
}

impl std::fmt::Display for PortType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PortType::Tap => "tap",
            PortType::Afxdp => "afxdp",
            PortType::Internal => "internal",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum Request {
    AddBr {
        name: String,
        /// Seconds a learned MAC lives without being seen again.
        #[serde(default)]
        aging_secs: Option<u64>,
        /// Cap on learned MACs; beyond it new sources are flooded to, not learned.
        #[serde(default)]
        max_macs: Option<usize>,
        /// The bridge's IPv4 subnet: vswitchd becomes its gateway and hands out addresses.
        #[serde(default)]
        subnet: Option<Ipv4Net>,
        /// The gateway address (default: the subnet's first host address).
        #[serde(default)]
        gateway: Option<Ipv4Addr>,
        /// Where in the subnet this host's addresses come from (default: all of it).
        #[serde(default)]
        ip_range: Option<Ipv4Net>,
        /// Leave through this other bridge's uplink (masquerade and published
        /// ports on its address); routes between the two.
        #[serde(default)]
        uplink_via: Option<String>,
    },
    DelBr {
        name: String,
    },
    ListBr,
    AddPort(AddPort),
    DelPort {
        bridge: String,
        name: String,
    },
    ListPorts {
        bridge: String,
    },
    Show,
    FdbShow {
        bridge: String,
    },
    PortStats {
        #[serde(default)]
        port: Option<String>,
    },
    PmdStats,
    /// Creates a port into namespace `netns`, gives it an address from the
    /// bridge's subnet and a default route via the gateway.
    Attach {
        bridge: String,
        netns: String,
        port_type: PortType,
        /// A specific address; None picks the next free one.
        #[serde(default)]
        ip: Option<Ipv4Addr>,
        /// Default eth0 (with `handoff`, the port's name).
        #[serde(default)]
        ifname: Option<String>,
        #[serde(default)]
        mac: Option<MacAddr>,
        /// The runtime's ID for this attachment (container, endpoint).
        #[serde(default)]
        owner: Option<String>,
        /// Leave the device in vswitchd's namespace, unconfigured, for the
        /// runtime to move into `netns` itself (Docker's Join).
        #[serde(default)]
        handoff: bool,
        /// Set the namespace's default route via the gateway (default
        /// true; false for a second network of a container).
        #[serde(default)]
        default_route: Option<bool>,
        /// No source guard: the port may send from any MAC and address.
        #[serde(default)]
        allow_any_src: bool,
    },
    /// Deletes the port attached for `netns`, releases its address and
    /// unpublishes the ports that led to it.
    Detach {
        bridge: String,
        netns: String,
    },
    /// Every attachment (lease) of every bridge, with its owner.
    ListAttachments,
    /// Allows routing between two bridges.
    LinkBr {
        a: String,
        b: String,
    },
    UnlinkBr {
        a: String,
        b: String,
    },
    /// Attaches the interface toward the outside world to a bridge's gateway.
    AddUplink {
        bridge: String,
        iface: String,
        ip: Ipv4Addr,
        prefix: u8,
        gw: Ipv4Addr,
        port_type: PortType,
        #[serde(default)]
        mode: Option<XdpModeRequest>,
        /// A TAP uplink moved into this network namespace.
        #[serde(default)]
        netns: Option<String>,
        /// An AF_XDP uplink on an interface the host keeps using: only the
        /// uplink's MAC and ARP for its address go to vswitchd.
        #[serde(default)]
        shared: bool,
        /// The uplink's own MAC (a shared or TAP uplink; default derived
        /// from the interface's name).
        #[serde(default)]
        mac: Option<MacAddr>,
    },
    DelUplink {
        bridge: String,
    },
    /// Masquerade a bridge's connections out of its uplink (or stop).
    SetNat {
        bridge: String,
        masquerade: bool,
    },
    /// Publish a container's port on the uplink address.
    Publish {
        bridge: String,
        rule: PublishRule,
    },
    Unpublish {
        bridge: String,
        proto: NatProto,
        port: u16,
    },
    ListPublished {
        bridge: String,
    },
    CtShow {
        #[serde(default)]
        bridge: Option<String>,
    },
    CtFlush {
        #[serde(default)]
        bridge: Option<String>,
        #[serde(default)]
        addr: Option<Ipv4Addr>,
    },
    CtStats,
    /// Saves the connection table next to the configuration now (before an
    /// upgrade); the next start puts it back.
    CtSave,
    /// Starts copying a port's frames (`vsctl capture`).
    CaptureStart {
        port: String,
        /// Frames to take before stopping (None: until stopped).
        #[serde(default)]
        count: Option<u64>,
        direction: CaptureDirection,
        /// Only frames matching this tcpdump expression are returned
        /// (compiled by vswitchd's libpcap).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filter: Option<String>,
    },
    /// The frames captured since the last read.
    CaptureRead {
        port: String,
    },
    CaptureStop {
        port: String,
    },
    /// Notes what the pipeline decides for the next `count` frames a port
    /// receives (`vsctl trace`).
    TraceStart {
        port: String,
        count: u64,
    },
    TraceRead {
        port: String,
    },
    TraceStop {
        port: String,
    },
    /// The neighbour (ARP) tables.
    NeighShow {
        #[serde(default)]
        bridge: Option<String>,
    },
    /// Stretch a bridge over VXLAN.
    AddVxlan(AddVxlan),
    DelVxlan {
        bridge: String,
    },
    /// A remote VTEP that floods reach.
    AddVtep {
        bridge: String,
        ip: Ipv4Addr,
    },
    DelVtep {
        bridge: String,
        ip: Ipv4Addr,
    },
    /// A static remote MAC, behind `vtep`; never ages.
    FdbAdd {
        bridge: String,
        mac: MacAddr,
        vtep: Ipv4Addr,
    },
    FdbDel {
        bridge: String,
        mac: MacAddr,
    },
    VtepShow {
        #[serde(default)]
        bridge: Option<String>,
    },
    /// Defines an overlay network for every host of the cluster (etcd).
    NetCreate(NetCreate),
    NetDelete {
        name: String,
    },
    /// The cluster's overlay networks and the hosts' slices of them.
    NetList,
    /// This host's part in the cluster: connection, lease, slices, VTEPs.
    ClusterStatus,
    /// Leaves the cluster at once (lease revoked): other hosts drop this one.
    ClusterLeave,
    /// Joins again after `cluster-leave`.
    ClusterJoin,
    /// Several changes applied as one (`vsctl A -- B`): one save, one
    /// snapshot, all or nothing. Answered with `Reply::Replies`, one per
    /// request, in order.
    Transaction {
        requests: Vec<Request>,
    },
}

impl Request {
    /// Why this request cannot be one of a transaction's, if it cannot:
    /// those that stream (capture, trace), act outside the configuration
    /// (ct-save) or belong to the cluster agent.
    pub fn not_transactional(&self) -> Option<&'static str> {
        match self {
            Request::Transaction { .. } => Some("a transaction cannot hold another"),
            Request::CaptureStart { .. }
            | Request::CaptureRead { .. }
            | Request::CaptureStop { .. }
            | Request::TraceStart { .. }
            | Request::TraceRead { .. }
            | Request::TraceStop { .. } => Some("capture and trace stream; run them on their own"),
            Request::CtSave => Some("ct-save writes the connection table, not the configuration"),
            r if r.is_cluster() => Some("cluster commands go to the cluster agent; run them on their own"),
            _ => None,
        }
    }

    /// Requests the cluster agent answers, not the switch's manager.
    pub fn is_cluster(&self) -> bool {
        matches!(
            self,
            Request::NetCreate(_)
                | Request::NetDelete { .. }
                | Request::NetList
                | Request::ClusterStatus
                | Request::ClusterLeave
                | Request::ClusterJoin
        )
    }
}

/// The fields of `Request::NetCreate`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetCreate {
    pub name: String,
    pub subnet: Ipv4Net,
    pub vni: u32,
    /// The size of each host's slice (default 24).
    #[serde(default)]
    pub host_prefix: Option<u8>,
    /// The VXLAN UDP port (default 4789).
    #[serde(default)]
    pub port: Option<u16>,
}

/// The fields of `Request::AddVxlan`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddVxlan {
    pub bridge: String,
    pub vni: u32,
    /// The UDP port (default 4789).
    #[serde(default)]
    pub port: Option<u16>,
    /// The bridge whose uplink carries the tunnel (default: this bridge's).
    #[serde(default)]
    pub underlay: Option<String>,
    /// Remote VTEPs that floods reach.
    #[serde(default)]
    pub remotes: Vec<Ipv4Addr>,
    /// Learn remote MACs from what arrives (default true).
    #[serde(default = "yes")]
    pub learn: bool,
    /// Compute the outer UDP checksum on send (default: zero, as RFC 7348
    /// allows over IPv4).
    #[serde(default)]
    pub udp_csum: bool,
}

fn yes() -> bool {
    true
}

/// The fields of `Request::AddPort`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddPort {
    pub bridge: String,
    pub name: String,
    pub port_type: PortType,
    #[serde(default)]
    pub netns: Option<String>,
    #[serde(default)]
    pub ifname: Option<String>,
    #[serde(default)]
    pub mac: Option<MacAddr>,
    /// AF_XDP only: XDP mode.
    #[serde(default)]
    pub mode: Option<XdpModeRequest>,
    /// AF_XDP only: the interface queue to bind.
    #[serde(default)]
    pub queue: Option<u32>,
    /// AF_XDP only: bind to this existing interface instead of creating a veth pair.
    #[serde(default)]
    pub iface: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Response {
    Ok { result: Reply },
    Error { message: String },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "data", rename_all = "kebab-case")]
pub enum Reply {
    Done,
    Bridges(Vec<String>),
    Ports(Vec<String>),
    Show(Vec<BridgeInfo>),
    Fdb(Vec<FdbEntry>),
    PortStats(Vec<PortStats>),
    PmdStats(Vec<PmdStats>),
    Attached(AttachInfo),
    Neigh(Vec<NeighEntry>),
    Published(Vec<PublishRule>),
    Conns(Vec<ConnEntry>),
    CtStats(CtStatsInfo),
    Flushed(usize),
    /// Connections saved by `ct-save`.
    CtSaved(usize),
    Captured(CaptureChunk),
    Traced(TraceChunk),
    Vteps(Vec<TunnelInfo>),
    Networks(Vec<NetworkInfo>),
    Attachments(Vec<AttachmentInfo>),
    /// None: this vswitchd was started without `--cluster`.
    Cluster(Option<Box<ClusterInfo>>),
    /// A transaction's replies, one per request.
    Replies(Vec<Reply>),
}
