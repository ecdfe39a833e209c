//! The requests: [`Request`], and one struct per request holding its
//! variant's fields, named by the variant (`Request::AddBr(req::AddBr {
//! .. })`). vsctl, the runtimes and the cluster agent build them; vswitchd's control plane hands each to
//! the one function that handles it. On the wire a request is one JSON
//! object, its `cmd` tag beside these fields (`{"cmd":"add-br","name":"br0"}`).

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::proto::{PortType, XdpModeRequest};
use crate::records::{CaptureDirection, NatProto, PublishRule};
use crate::{Ipv4Net, MacAddr};
use vswitch_policy::model::{Labels, Policy};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum Request {
    AddBr(AddBr),
    DelBr(DelBr),
    ListBr,
    /// Changes a bridge's settings in place (`vsctl set bridge BR aging=600`).
    SetBridge(SetBridge),
    AddPort(AddPort),
    DelPort(DelPort),
    ListPorts(ListPorts),
    Show,
    FdbShow(FdbShow),
    PortStats(PortStats),
    PmdStats,
    /// Creates a port into namespace `netns`, gives it an address from the
    /// bridge's subnet and a default route via the gateway.
    Attach(Attach),
    /// Deletes the port attached for `netns`, releases its address and
    /// unpublishes the ports that led to it.
    Detach(Detach),
    /// Every attachment (lease) of every bridge, with its owner.
    ListAttachments,
    /// Changes the labels of an attachment (`vsctl label NS/NAME K=V K-`).
    Label(Label),
    /// Changes the labels of a namespace, which `namespaceSelector`s see
    /// (`vsctl label-namespace NS K=V K-`).
    LabelNamespace(LabelNamespace),
    /// Network policies and namespaces, as Kubernetes manifests give them
    /// (`vsctl apply -f`): all applied, or none.
    ApplyPolicies(ApplyPolicies),
    /// Deletes network policies (`vsctl delete networkpolicy NS/NAME`,
    /// `vsctl delete -f`).
    DeletePolicies(DeletePolicies),
    /// Every network policy, with the attachments it selects.
    ListPolicies,
    /// What the policies would do to a new connection, and why, without
    /// traffic (`vsctl check-policy`).
    CheckPolicy(CheckPolicy),
    /// The policy stages' connection events after a point (`vsctl
    /// observe`): new, denied and closed connections, named.
    ObserveRead(ObserveRead),
    /// The cluster's policies, namespaces' labels and other hosts'
    /// attachments, whole, as etcd holds them: sent by the cluster agent
    /// only (with `--cluster`, `apply`, `delete` and `label-namespace` go
    /// to etcd through the agent, and come back to every host this way).
    ClusterPolicies(ClusterPolicies),
    /// Allows routing between two bridges.
    LinkBr(LinkBr),
    UnlinkBr(UnlinkBr),
    /// Attaches the interface toward the outside world to a bridge's gateway.
    AddUplink(AddUplink),
    DelUplink(DelUplink),
    /// Masquerade a bridge's connections out of its uplink (or stop).
    SetNat(SetNat),
    /// Publish a container's port on the uplink address.
    Publish(Publish),
    Unpublish(Unpublish),
    ListPublished(ListPublished),
    CtShow(CtShow),
    CtFlush(CtFlush),
    CtStats,
    /// The control plane's own counters: changes, failed saves.
    ControlStats,
    /// Saves the connection table next to the configuration now (before an
    /// upgrade); the next start puts it back.
    CtSave,
    /// Starts copying a port's frames (`vsctl capture`).
    CaptureStart(CaptureStart),
    /// The frames captured since the last read.
    CaptureRead(CaptureRead),
    CaptureStop(CaptureStop),
    /// Notes what the pipeline decides for the next `count` frames a port
    /// receives (`vsctl trace`).
    TraceStart(TraceStart),
    TraceRead(TraceRead),
    TraceStop(TraceStop),
    /// The neighbour (ARP) tables.
    NeighShow(NeighShow),
    /// Stretch a bridge over VXLAN.
    AddVxlan(AddVxlan),
    DelVxlan(DelVxlan),
    /// A remote VTEP that floods reach.
    AddVtep(AddVtep),
    DelVtep(DelVtep),
    /// A static remote MAC, behind `vtep`; never ages.
    FdbAdd(FdbAdd),
    FdbDel(FdbDel),
    VtepShow(VtepShow),
    /// Defines an overlay network for every host of the cluster (etcd).
    NetCreate(NetCreate),
    NetDelete(NetDelete),
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
    Transaction(Transaction),
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
            Request::ClusterPolicies(_) => Some("cluster policies come from the cluster agent"),
            r if r.is_cluster() => Some("cluster commands go to the cluster agent; run them on their own"),
            _ => None,
        }
    }

    /// Requests the cluster agent answers, not the switch's manager.
    /// Policy changes that, with `--cluster`, are the cluster's: they go
    /// to etcd through the agent.
    pub fn is_shared_policy(&self) -> bool {
        matches!(
            self,
            Request::ApplyPolicies(_) | Request::DeletePolicies(_) | Request::LabelNamespace(_)
        )
    }

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

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddBr {
    pub name: String,
    /// Seconds a learned MAC lives without being seen again.
    #[serde(default)]
    pub aging_secs: Option<u64>,
    /// Cap on learned MACs; beyond it new sources are flooded to, not learned.
    #[serde(default)]
    pub max_macs: Option<usize>,
    /// The bridge's IPv4 subnet: vswitchd becomes its gateway and hands out addresses.
    #[serde(default)]
    pub subnet: Option<Ipv4Net>,
    /// The gateway address (default: the subnet's first host address).
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
    /// Where in the subnet this host's addresses come from (default: all of it).
    #[serde(default)]
    pub ip_range: Option<Ipv4Net>,
    /// Leave through this other bridge's uplink (masquerade and published
    /// ports on its address); routes between the two.
    #[serde(default)]
    pub uplink_via: Option<String>,
    /// Inter-container communication (Docker's `enable_icc`): false, and
    /// the bridge's attachments reach only the gateway, the host and the
    /// outside, not each other (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icc: Option<bool>,
    /// Nothing to do, and no error, if it is already there (ovs-vsctl's
    /// `--may-exist`); one of the same name but other settings still fails.
    #[serde(default, skip_serializing_if = "is_false")]
    pub may_exist: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelBr {
    pub name: String,
    /// Nothing to do, and no error, if it is not there (`--if-exists`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub if_exists: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelPort {
    pub bridge: String,
    pub name: String,
    /// Nothing to do, and no error, if it is not there (`--if-exists`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub if_exists: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListPorts {
    /// Only this bridge's (every bridge's when None).
    #[serde(default)]
    pub bridge: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdbShow {
    /// Only this bridge's (every bridge's when None).
    #[serde(default)]
    pub bridge: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortStats {
    #[serde(default)]
    pub port: Option<String>,
}

/// Creates a port into namespace `netns`, gives it an address from the
/// bridge's subnet and a default route via the gateway.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attach {
    pub bridge: String,
    pub netns: String,
    pub port_type: PortType,
    /// A specific address; None picks the next free one.
    #[serde(default)]
    pub ip: Option<Ipv4Addr>,
    /// Default eth0 (with `handoff`, the port's name).
    #[serde(default)]
    pub ifname: Option<String>,
    #[serde(default)]
    pub mac: Option<MacAddr>,
    /// The runtime's ID for this attachment (container, endpoint).
    #[serde(default)]
    pub owner: Option<String>,
    /// Leave the device in vswitchd's namespace, unconfigured, for the
    /// runtime to move into `netns` itself (Docker's Join).
    #[serde(default)]
    pub handoff: bool,
    /// Set the namespace's default route via the gateway (default
    /// true; false for a second network of a container).
    #[serde(default)]
    pub default_route: Option<bool>,
    /// No source guard: the port may send from any MAC and address.
    #[serde(default)]
    pub allow_any_src: bool,
    /// The attachment's name for policies (`NS/NAME`); default the netns's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its namespace; default `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Its labels, which policies' selectors see.
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
}

/// Label changes: `set` added or replaced, then `remove` taken away.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelChange {
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub set: Labels,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

/// Changes the labels of the attachment `namespace`/`name` (on every
/// bridge it is attached to).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    pub namespace: String,
    pub name: String,
    #[serde(flatten)]
    pub change: LabelChange,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelNamespace {
    pub namespace: String,
    #[serde(flatten)]
    pub change: LabelChange,
}

/// Policies created or replaced (by `namespace`/`name`), and namespaces
/// whose labels become these.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyPolicies {
    #[serde(default)]
    pub policies: Vec<Policy>,
    #[serde(default)]
    pub namespaces: Vec<(String, Labels)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletePolicies {
    /// `(namespace, name)` pairs.
    pub policies: Vec<(String, String)>,
    /// Nothing to do, and no error, for those not there (`--ignore-not-found`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub if_exists: bool,
}

/// Deletes the port attached for `netns`, releases its address and
/// unpublishes the ports that led to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detach {
    pub bridge: String,
    pub netns: String,
    /// Nothing to do, and no error, if it is not there (`--if-exists`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub if_exists: bool,
}

/// Allows routing between two bridges.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkBr {
    pub a: String,
    pub b: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnlinkBr {
    pub a: String,
    pub b: String,
}

/// Attaches the interface toward the outside world to a bridge's gateway.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddUplink {
    pub bridge: String,
    pub iface: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gw: Ipv4Addr,
    pub port_type: PortType,
    #[serde(default)]
    pub mode: Option<XdpModeRequest>,
    /// A TAP uplink moved into this network namespace.
    #[serde(default)]
    pub netns: Option<String>,
    /// An AF_XDP uplink on an interface the host keeps using: only the
    /// uplink's MAC and ARP for its address go to vswitchd.
    #[serde(default)]
    pub shared: bool,
    /// The uplink's own MAC (a shared or TAP uplink; default derived
    /// from the interface's name).
    #[serde(default)]
    pub mac: Option<MacAddr>,
    /// Nothing to do, and no error, if it is already there (ovs-vsctl's
    /// `--may-exist`); one of the same name but other settings still fails.
    #[serde(default, skip_serializing_if = "is_false")]
    pub may_exist: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelUplink {
    pub bridge: String,
    /// Nothing to do, and no error, if it is not there (`--if-exists`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub if_exists: bool,
}

/// Masquerade a bridge's connections out of its uplink (or stop).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetNat {
    pub bridge: String,
    pub masquerade: bool,
}

/// Publish a container's port on the uplink address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publish {
    pub bridge: String,
    pub rule: PublishRule,
    /// Nothing to do, and no error, if it is already there (ovs-vsctl's
    /// `--may-exist`); one of the same name but other settings still fails.
    #[serde(default, skip_serializing_if = "is_false")]
    pub may_exist: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unpublish {
    pub bridge: String,
    pub proto: NatProto,
    pub port: u16,
    /// Nothing to do, and no error, if it is not there (`--if-exists`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub if_exists: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListPublished {
    pub bridge: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtShow {
    #[serde(default)]
    pub bridge: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtFlush {
    #[serde(default)]
    pub bridge: Option<String>,
    #[serde(default)]
    pub addr: Option<Ipv4Addr>,
}

/// Starts copying a port's frames (`vsctl capture`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureStart {
    pub port: String,
    /// Frames to take before stopping (None: until stopped).
    #[serde(default)]
    pub count: Option<u64>,
    pub direction: CaptureDirection,
    /// Only frames matching this tcpdump expression are returned
    /// (compiled by vswitchd's libpcap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
}

/// The frames captured since the last read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureRead {
    pub port: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureStop {
    pub port: String,
}

/// Notes what the pipeline decides for the next `count` frames a port
/// receives (`vsctl trace`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceStart {
    pub port: String,
    pub count: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceRead {
    pub port: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceStop {
    pub port: String,
}

/// The neighbour (ARP) tables.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeighShow {
    #[serde(default)]
    pub bridge: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelVxlan {
    pub bridge: String,
    /// Nothing to do, and no error, if it is not there (`--if-exists`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub if_exists: bool,
}

/// A remote VTEP that floods reach.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddVtep {
    pub bridge: String,
    pub ip: Ipv4Addr,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelVtep {
    pub bridge: String,
    pub ip: Ipv4Addr,
    /// Nothing to do, and no error, if it is not there (`--if-exists`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub if_exists: bool,
}

/// A static remote MAC, behind `vtep`; never ages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdbAdd {
    pub bridge: String,
    pub mac: MacAddr,
    pub vtep: Ipv4Addr,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdbDel {
    pub bridge: String,
    pub mac: MacAddr,
    /// Nothing to do, and no error, if it is not there (`--if-exists`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub if_exists: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VtepShow {
    #[serde(default)]
    pub bridge: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetDelete {
    pub name: String,
}

/// Several changes applied as one (`vsctl A -- B`): one save, one
/// snapshot, all or nothing. Answered with `Reply::Replies`, one per
/// request, in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    pub requests: Vec<Request>,
}

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
    /// Nothing to do, and no error, if it is already there (ovs-vsctl's
    /// `--may-exist`); one of the same name but other settings still fails.
    #[serde(default, skip_serializing_if = "is_false")]
    pub may_exist: bool,
}

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
    /// Nothing to do, and no error, if it is already there (ovs-vsctl's
    /// `--may-exist`); one of the same name but other settings still fails.
    #[serde(default, skip_serializing_if = "is_false")]
    pub may_exist: bool,
}

/// `vsctl set bridge NAME KEY=VALUE...`: the settings named change, live
/// (the learned MACs stay; an entry older than a shorter aging time goes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetBridge {
    pub name: String,
    /// Seconds a learned MAC lives without being seen again.
    #[serde(default)]
    pub aging_secs: Option<u64>,
    /// Cap on learned MACs.
    #[serde(default)]
    pub max_macs: Option<usize>,
    /// Inter-container communication (see [`AddBr::icc`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icc: Option<bool>,
}

/// See [`Request::ClusterPolicies`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterPolicies {
    pub policies: Vec<Policy>,
    pub namespaces: std::collections::BTreeMap<String, Labels>,
    pub remote: Vec<crate::records::RemoteMember>,
}

/// See [`Request::ObserveRead`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObserveRead {
    /// Events after this sequence number; None: the `last` most recent.
    #[serde(default)]
    pub after: Option<u64>,
    #[serde(default = "twenty")]
    pub last: usize,
    /// Only connections allowed (`new`, `closed`) or only those denied.
    #[serde(default)]
    pub verdict: Option<FlowVerdict>,
}

fn twenty() -> usize {
    20
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowVerdict {
    Allowed,
    Denied,
}

/// One end of a connection `check-policy` asks about: an attachment by
/// `namespace`/`name`, or an address (an attachment's, a gateway's, or
/// one outside).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Party {
    Attachment { namespace: String, name: String },
    Address(Ipv4Addr),
}

/// `vsctl check-policy --from A --to B --port 80/tcp`: a new connection
/// from A to B, to `port` over IP protocol `protocol` (6 TCP, 17 UDP,
/// 1 ICMP with port 0).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckPolicy {
    pub from: Party,
    pub to: Party,
    pub protocol: u8,
    pub port: u16,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn yes() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wire spelling vswitchd, vsctl and the runtimes already speak:
    /// one object, the `cmd` tag beside the request's fields.
    #[test]
    fn a_request_is_one_object_with_its_tag_beside_its_fields() {
        let del = Request::DelBr(DelBr {
            name: "br0".into(),
            if_exists: false,
        });
        assert_eq!(
            serde_json::to_string(&del).expect("json"),
            r#"{"cmd":"del-br","name":"br0"}"#
        );
        let txn = Request::Transaction(Transaction {
            requests: vec![del.clone(), Request::Show],
        });
        assert_eq!(
            serde_json::to_string(&txn).expect("json"),
            r#"{"cmd":"transaction","requests":[{"cmd":"del-br","name":"br0"},{"cmd":"show"}]}"#
        );
        let back: Request = serde_json::from_str(r#"{"cmd":"del-br","name":"br0"}"#).expect("parses");
        assert_eq!(back, del);
    }

    #[test]
    fn fields_left_out_take_their_defaults() {
        let r: Request =
            serde_json::from_str(r#"{"cmd":"attach","bridge":"br0","netns":"c1","port_type":"tap","ip":"10.20.0.9"}"#)
                .expect("parses");
        let Request::Attach(a) = r else { panic!("attach: {r:?}") };
        assert_eq!((a.bridge.as_str(), a.netns.as_str()), ("br0", "c1"));
        assert_eq!(a.ip, Some(Ipv4Addr::new(10, 20, 0, 9)));
        assert_eq!((a.handoff, a.default_route, a.mac), (false, None, None));
        let r: Request = serde_json::from_str(r#"{"cmd":"add-vxlan","bridge":"br0","vni":7}"#).expect("parses");
        let Request::AddVxlan(v) = r else {
            panic!("add-vxlan: {r:?}")
        };
        assert!(v.learn && !v.udp_csum && v.remotes.is_empty());
    }

    #[test]
    fn a_missing_field_or_a_wrong_type_is_refused() {
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"del-br"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"add-vtep","bridge":"b","ip":"not-an-ip"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"no-such-command"}"#).is_err());
    }
}
