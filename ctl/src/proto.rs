//! Replies, and the kinds of port both ends name (the requests are in
//! `req`, the records replies carry in `records`).
//!
//! Wire format: one JSON object per line. A request is tagged by `cmd`
//! (`{"cmd":"add-br","name":"br0"}`); a response is either
//! `{"status":"ok","result":{"kind":...,"data":...}}` or
//! `{"status":"error","message":"..."}`.

use serde::{Deserialize, Serialize};

use crate::records::*;

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
    ControlStats(ControlStatsInfo),
    Flushed(usize),
    /// Connections saved by `ct-save`.
    CtSaved(usize),
    Captured(CaptureChunk),
    Traced(TraceChunk),
    Vteps(Vec<TunnelInfo>),
    Networks(Vec<NetworkInfo>),
    Attachments(Vec<AttachmentInfo>),
    Policies(Vec<PolicyInfo>),
    PolicyChecked(Box<PolicyCheck>),
    Flows(FlowChunk),
    Applied(Applied),
    /// Policies deleted by `delete`.
    Deleted(Vec<String>),
    /// None: this vswitchd was started without `--cluster`.
    Cluster(Option<Box<ClusterInfo>>),
    /// A transaction's replies, one per request.
    Replies(Vec<Reply>),
}
