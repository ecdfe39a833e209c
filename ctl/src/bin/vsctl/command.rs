//! vsctl's commands and their options: the grammar clap parses (each
//! command becomes one request in `main.rs`'s `to_request`).

use std::net::Ipv4Addr;
use std::path::PathBuf;

use clap::Subcommand;
use vswitch_ctl::{parse_subnet, Ipv4Net, MacAddr};

use crate::args::{
    parse_cidr, parse_ip_choice, parse_target, CliDirection, CliNatProto, CliPortType, CliXdpMode, IpChoice, NatMode,
};

#[derive(Subcommand)]
pub enum Command {
    /// Create a bridge (an isolated L2 network).
    AddBr {
        name: String,
        /// Seconds a learned MAC address lives without traffic.
        #[arg(long, value_name = "SECS")]
        aging: Option<u64>,
        /// Most MAC addresses the bridge learns; frames from further ones are flooded to, not learned.
        #[arg(long, value_name = "N")]
        max_macs: Option<usize>,
        /// IPv4 subnet of the bridge (e.g. 10.20.0.0/24): vswitchd is its gateway and hands out addresses.
        #[arg(long, value_parser = parse_subnet)]
        subnet: Option<Ipv4Net>,
        /// Gateway address (default: the subnet's first host address).
        #[arg(long, requires = "subnet")]
        gateway: Option<Ipv4Addr>,
        /// Hand out addresses only from this part of the subnet (e.g. 10.20.0.128/25), so hosts sharing a network never hand out the same address.
        #[arg(long, requires = "subnet", value_name = "CIDR", value_parser = parse_subnet)]
        ip_range: Option<Ipv4Net>,
        /// Leave through the uplink of this other bridge: masquerade and published ports use its address (several bridges may share one uplink).
        #[arg(long, requires = "subnet", value_name = "BRIDGE")]
        uplink_via: Option<String>,
    },
    /// Delete a bridge and all its ports.
    DelBr { name: String },
    /// List bridges.
    ListBr,
    /// Create a port on a bridge.
    AddPort {
        bridge: String,
        name: String,
        #[arg(long = "type", value_enum, default_value = "tap")]
        port_type: CliPortType,
        /// Network namespace to move the device into (a name under /run/netns, or a path).
        #[arg(long)]
        netns: Option<String>,
        /// Interface name inside the namespace (default: the port name).
        #[arg(long)]
        ifname: Option<String>,
        /// MAC address of the device (default: chosen by the kernel, then kept across restarts).
        #[arg(long, value_parser = MacAddr::parse_unicast)]
        mac: Option<MacAddr>,
        /// afxdp: where the XDP program runs (auto tries native, then generic).
        #[arg(long, value_enum)]
        mode: Option<CliXdpMode>,
        /// afxdp: the interface queue to bind (default 0).
        #[arg(long)]
        queue: Option<u32>,
        /// afxdp: bind to this existing interface instead of creating a veth pair.
        #[arg(long, value_name = "DEV")]
        iface: Option<String>,
    },
    /// Delete a port.
    DelPort { bridge: String, name: String },
    /// List a bridge's ports.
    ListPorts { bridge: String },
    /// Show bridges and ports.
    Show,
    /// Show a bridge's learned MAC addresses.
    FdbShow { bridge: String },
    /// Show per-port counters.
    PortStats {
        port: Option<String>,
        /// List every drop reason, also those at zero (--json always does).
        #[arg(long)]
        all: bool,
    },
    /// Show per-poll-thread counters.
    PmdStats,
    /// Attach a namespace: create its port, give it an address and a default route.
    Attach {
        bridge: String,
        netns: String,
        #[arg(long = "type", value_enum, default_value = "tap")]
        port_type: CliPortType,
        /// "auto" (the next free address) or a specific one.
        #[arg(long, default_value = "auto", value_parser = parse_ip_choice)]
        ip: IpChoice,
        /// Interface name inside the namespace.
        #[arg(long, default_value = "eth0")]
        ifname: String,
        /// The interface's MAC (default: a random one).
        #[arg(long)]
        mac: Option<MacAddr>,
        /// Who the attachment belongs to (a container ID), for list-attachments.
        #[arg(long)]
        owner: Option<String>,
        /// Leave the namespace's default route alone (a second network).
        #[arg(long)]
        no_default_route: bool,
        /// No source guard: the port may send from any MAC and address (a router, VMs behind it).
        #[arg(long)]
        allow_any_src: bool,
    },
    /// List attached namespaces with their owner, port, address and published ports.
    #[command(alias = "list-attach")]
    ListAttachments,
    /// Detach a namespace: delete its port and release its address.
    Detach { bridge: String, netns: String },
    /// Allow routing between two bridges (off by default).
    LinkBr { a: String, b: String },
    /// Stop routing between two bridges.
    UnlinkBr { a: String, b: String },
    /// Show the gateways' neighbour (ARP) tables.
    NeighShow { bridge: Option<String> },
    /// Attach the interface toward the outside world to a bridge's gateway.
    AddUplink {
        bridge: String,
        iface: String,
        /// The switch's address on the outside, A.B.C.D/NN.
        #[arg(long, value_parser = parse_cidr)]
        ip: (Ipv4Addr, u8),
        /// The next hop toward the outside.
        #[arg(long)]
        gw: Ipv4Addr,
        /// afxdp binds to IFACE (an existing interface); tap creates a TAP named IFACE.
        #[arg(long = "type", value_enum, default_value = "afxdp")]
        port_type: CliPortType,
        #[arg(long, value_enum)]
        mode: Option<CliXdpMode>,
        /// tap: move the TAP into this network namespace (the outside's, or a host stack's).
        #[arg(long)]
        netns: Option<String>,
        /// afxdp: share IFACE with the host's stack; only frames to the uplink's own MAC
        /// and ARP for its address come to the switch.
        #[arg(long)]
        shared: bool,
        /// The uplink's own MAC (--shared or tap; default derived from IFACE's name).
        #[arg(long, value_parser = MacAddr::parse_unicast)]
        mac: Option<MacAddr>,
    },
    /// Remove a bridge's uplink.
    DelUplink { bridge: String },
    /// Masquerade the bridge's connections out of its uplink ("masquerade"), or stop ("off").
    SetNat {
        bridge: String,
        #[arg(value_enum)]
        mode: NatMode,
    },
    /// Forward connections to the uplink address's PORT to a container (IP:PORT).
    Publish {
        bridge: String,
        #[arg(long, value_enum)]
        proto: CliNatProto,
        #[arg(long)]
        port: u16,
        #[arg(long, value_parser = parse_target)]
        to: (Ipv4Addr, u16),
    },
    /// Stop publishing a port.
    Unpublish {
        bridge: String,
        #[arg(long, value_enum)]
        proto: CliNatProto,
        #[arg(long)]
        port: u16,
    },
    /// List a bridge's published ports.
    ListPublished { bridge: String },
    /// Show tracked connections.
    CtShow {
        #[arg(long)]
        bridge: Option<String>,
    },
    /// Forget tracked connections (all, a bridge's, or those of one address).
    CtFlush {
        #[arg(long)]
        bridge: Option<String>,
        #[arg(long)]
        addr: Option<Ipv4Addr>,
    },
    /// Connection tracking counters.
    CtStats,
    /// Save the connection table now (before an upgrade): the next start puts it back (SIGTERM saves it too).
    CtSave,
    /// Show what the pipeline decides for the next frames a port (or any port of a bridge) receives: parse, l2, route, nat, verdict.
    Trace {
        /// A port, or a bridge (any of its ports).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        port: Option<String>,
        /// Any port of the switch.
        #[arg(long)]
        all: bool,
        /// Frames to trace.
        #[arg(long, default_value_t = 1)]
        count: u64,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Copy a port's (or a whole bridge's) frames to a pcap file (-w - for stdout: `vsctl capture p1 -w - | tcpdump -r -`).
    Capture {
        /// A port, or a bridge (all its ports).
        port: String,
        /// Stop after this many frames.
        #[arg(long)]
        count: Option<u64>,
        /// Stop after this many seconds.
        #[arg(long)]
        seconds: Option<u64>,
        #[arg(long, value_enum, default_value = "both")]
        direction: CliDirection,
        /// The pcap file, or - for stdout.
        #[arg(short = 'w', value_name = "FILE")]
        write: PathBuf,
        /// Keep only frames this tcpdump expression matches (e.g. "icmp or port 80").
        #[arg(long, value_name = "EXPR")]
        filter: Option<String>,
    },
    /// Stretch a bridge over VXLAN (the tunnel becomes one of its members).
    AddVxlan {
        bridge: String,
        /// The VXLAN network identifier, 0 to 16777215.
        #[arg(long)]
        vni: u32,
        /// The UDP port: 4789 (IANA), or 8472 to meet Linux's default.
        #[arg(long, default_value_t = 4789)]
        port: u16,
        /// The bridge whose uplink carries the tunnel (default: this bridge's own).
        #[arg(long, value_name = "UPLINK_BR")]
        underlay: Option<String>,
        /// A remote VTEP that floods reach (repeat for more).
        #[arg(long = "remote", value_name = "IP")]
        remotes: Vec<Ipv4Addr>,
        /// Do not learn remote MACs from the tunnel (only fdb-add entries are used).
        #[arg(long)]
        no_learn: bool,
        /// Compute the outer UDP checksum on send (default: zero).
        #[arg(long)]
        udp_csum: bool,
    },
    /// Remove a bridge's tunnel.
    DelVxlan { bridge: String },
    /// Add a remote VTEP to a bridge's tunnel.
    AddVtep { bridge: String, ip: Ipv4Addr },
    /// Remove a remote VTEP (and the MACs learned behind it).
    DelVtep { bridge: String, ip: Ipv4Addr },
    /// A static remote MAC behind a VTEP; never ages.
    FdbAdd {
        bridge: String,
        #[arg(value_parser = MacAddr::parse_unicast)]
        mac: MacAddr,
        #[arg(long)]
        vtep: Ipv4Addr,
    },
    /// Remove a static remote MAC.
    FdbDel {
        bridge: String,
        #[arg(value_parser = MacAddr::parse_unicast)]
        mac: MacAddr,
    },
    /// Show tunnels: VNI, port, underlay, remote VTEPs, MACs.
    VtepShow { bridge: Option<String> },
    /// Define an overlay network for every host of the cluster (vswitchd --cluster).
    NetCreate {
        name: String,
        /// The network's subnet; each host serves one slice of it.
        #[arg(long, value_parser = parse_subnet)]
        subnet: Ipv4Net,
        /// The VXLAN network identifier, 1 to 16777215.
        #[arg(long)]
        vni: u32,
        /// The size of each host's slice.
        #[arg(long, default_value_t = 24, value_name = "LEN")]
        host_prefix: u8,
        /// The VXLAN UDP port.
        #[arg(long, default_value_t = 4789)]
        port: u16,
    },
    /// Delete a cluster network (every host removes its bridge).
    NetDelete { name: String },
    /// List the cluster's networks and which host holds which slice.
    NetList,
    /// This host's part in the cluster: connection, lease, underlay, slices.
    #[command(alias = "cluster-show")]
    ClusterStatus,
    /// Leave the cluster now: the other hosts drop this one at once.
    ClusterLeave,
    /// Join the cluster again after cluster-leave.
    ClusterJoin,
}
