//! Requests, replies and the records they carry.
//!
//! Wire format: one JSON object per line. A request is tagged by `cmd`
//! (`{"cmd":"add-br","name":"br0"}`); a response is either
//! `{"status":"ok","result":{"kind":...,"data":...}}` or
//! `{"status":"error","message":"..."}`.

use serde::{Deserialize, Serialize};

use crate::records::*;
use crate::req;

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
    AddBr(req::AddBr),
    DelBr(req::DelBr),
    ListBr,
    AddPort(req::AddPort),
    DelPort(req::DelPort),
    ListPorts(req::ListPorts),
    Show,
    FdbShow(req::FdbShow),
    PortStats(req::PortStats),
    PmdStats,
    /// Creates a port into namespace `netns`, gives it an address from the
    /// bridge's subnet and a default route via the gateway.
    Attach(req::Attach),
    /// Deletes the port attached for `netns`, releases its address and
    /// unpublishes the ports that led to it.
    Detach(req::Detach),
    /// Every attachment (lease) of every bridge, with its owner.
    ListAttachments,
    /// Allows routing between two bridges.
    LinkBr(req::LinkBr),
    UnlinkBr(req::UnlinkBr),
    /// Attaches the interface toward the outside world to a bridge's gateway.
    AddUplink(req::AddUplink),
    DelUplink(req::DelUplink),
    /// Masquerade a bridge's connections out of its uplink (or stop).
    SetNat(req::SetNat),
    /// Publish a container's port on the uplink address.
    Publish(req::Publish),
    Unpublish(req::Unpublish),
    ListPublished(req::ListPublished),
    CtShow(req::CtShow),
    CtFlush(req::CtFlush),
    CtStats,
    /// Saves the connection table next to the configuration now (before an
    /// upgrade); the next start puts it back.
    CtSave,
    /// Starts copying a port's frames (`vsctl capture`).
    CaptureStart(req::CaptureStart),
    /// The frames captured since the last read.
    CaptureRead(req::CaptureRead),
    CaptureStop(req::CaptureStop),
    /// Notes what the pipeline decides for the next `count` frames a port
    /// receives (`vsctl trace`).
    TraceStart(req::TraceStart),
    TraceRead(req::TraceRead),
    TraceStop(req::TraceStop),
    /// The neighbour (ARP) tables.
    NeighShow(req::NeighShow),
    /// Stretch a bridge over VXLAN.
    AddVxlan(req::AddVxlan),
    DelVxlan(req::DelVxlan),
    /// A remote VTEP that floods reach.
    AddVtep(req::AddVtep),
    DelVtep(req::DelVtep),
    /// A static remote MAC, behind `vtep`; never ages.
    FdbAdd(req::FdbAdd),
    FdbDel(req::FdbDel),
    VtepShow(req::VtepShow),
    /// Defines an overlay network for every host of the cluster (etcd).
    NetCreate(req::NetCreate),
    NetDelete(req::NetDelete),
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
    Transaction(req::Transaction),
}

impl Request {
    /// Why this request cannot be one of a transaction's, if it cannot:
    /// those that stream (capture, trace), act outside the configuration
    /// (ct-save) or belong to the cluster agent.
    pub fn not_transactional(&self) -> Option<&'static str> {
        match self {
            Request::Transaction(_) => Some("a transaction cannot hold another"),
            Request::CaptureStart(_)
            | Request::CaptureRead(_)
            | Request::CaptureStop(_)
            | Request::TraceStart(_)
            | Request::TraceRead(_)
            | Request::TraceStop(_) => Some("capture and trace stream; run them on their own"),
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
                | Request::NetDelete(_)
                | Request::NetList
                | Request::ClusterStatus
                | Request::ClusterLeave
                | Request::ClusterJoin
        )
    }
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
