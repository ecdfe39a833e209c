//! vsctl's commands and their options: the grammar clap parses (each
//! command becomes one request in `main.rs`'s `to_request`).
//!
//! One grammar, ovs-vsctl's: `add-X`, `del-X`, `list-X`, `show-X`, `set`,
//! `get`, `show`; the few bare verbs are actions with an exact inverse
//! (`attach`/`detach`, `publish`/`unpublish`, `link-br`/`unlink-br`,
//! `trace`, `capture`). A command that acts on a bridge takes it as its
//! first positional. One spelling per idea: `--gateway`, `--netns`,
//! `--iface`, `--ifname`. Every earlier name and flag is kept as a hidden
//! alias (`fdb-show`, `ct-flush --bridge`, `add-uplink --gw`, ...), so
//! scripts written for them keep working.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use clap::Subcommand;
use vswitch_ctl::{parse_subnet, Ipv4Net, MacAddr};

use crate::args::{
    parse_cidr, parse_ip_choice, parse_setting, parse_target, CliDirection, CliNatProto, CliPortType, CliXdpMode,
    IpChoice, NatMode, Setting, Table,
};

/// `observe --verdict`.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum CliVerdict {
    Allowed,
    Denied,
}

#[derive(Subcommand)]
pub enum Command {
    /// Create a bridge (an isolated L2 network; with --subnet also its gateway, addresses and NAT).
    AddBr {
        /// The bridge's name (1-32 letters, digits, '.', '-', '_').
        name: String,
        /// Seconds a learned MAC address lives without traffic.
        #[arg(long, value_name = "SECS")]
        aging: Option<u64>,
        /// Most MAC addresses the bridge learns; frames from further ones are flooded to, not learned.
        #[arg(long, value_name = "N")]
        max_macs: Option<usize>,
        /// IPv4 subnet of the bridge (e.g. 10.20.0.0/24): vswitchd is its gateway and hands out addresses.
        #[arg(long, value_name = "CIDR", value_parser = parse_subnet)]
        subnet: Option<Ipv4Net>,
        /// Gateway address (default: the subnet's first host address).
        #[arg(long, requires = "subnet", value_name = "IP")]
        gateway: Option<Ipv4Addr>,
        /// Hand out addresses only from this part of the subnet (e.g. 10.20.0.128/25), so hosts sharing a network never hand out the same address.
        #[arg(long, requires = "subnet", value_name = "CIDR", value_parser = parse_subnet)]
        ip_range: Option<Ipv4Net>,
        /// Leave through the uplink of this other bridge: masquerade and published ports use its address (several bridges may share one uplink).
        #[arg(long, requires = "subnet", value_name = "BRIDGE")]
        uplink_via: Option<String>,
        /// Keep the bridge's attachments from reaching each other, at L2 and L3 (Docker's enable_icc=false): only the gateway, the host and the outside.
        #[arg(long)]
        no_icc: bool,
    },
    /// Delete a bridge and all its ports.
    DelBr {
        /// The bridge.
        name: String,
    },
    /// List bridges.
    ListBr,
    /// Change a bridge's settings live: `set bridge BR aging=600 max-macs=4096`.
    Set {
        /// What to change (bridge).
        #[arg(value_enum)]
        table: Table,
        /// Its name.
        name: String,
        /// KEY=VALUE: aging=SECS, max-macs=N, icc=true|false.
        #[arg(required = true, value_parser = parse_setting, value_name = "KEY=VALUE")]
        settings: Vec<Setting>,
    },
    /// Read a bridge's settings: `get bridge BR aging max-macs` (one value a line; every key without any).
    Get {
        /// What to read (bridge).
        #[arg(value_enum)]
        table: Table,
        /// Its name.
        name: String,
        /// aging, max-macs, learned-macs, subnet, gateway, ip-range, masquerade, icc.
        keys: Vec<String>,
    },
    /// Create a port on a bridge.
    AddPort {
        /// The bridge.
        bridge: String,
        /// The port's name (also its device's in the host namespace).
        name: String,
        /// tap, afxdp (a veth pair, or --iface), or internal (the host's leg into the bridge).
        #[arg(long = "type", value_enum, default_value = "tap")]
        port_type: CliPortType,
        /// Network namespace to put the device in (a name under /run/netns, or a path).
        #[arg(long, value_name = "NS")]
        netns: Option<String>,
        /// Interface name inside the namespace (default: the port name).
        #[arg(long, value_name = "NAME")]
        ifname: Option<String>,
        /// MAC address of the device (default: chosen by the kernel, then kept across restarts).
        #[arg(long, value_parser = MacAddr::parse_unicast)]
        mac: Option<MacAddr>,
        /// afxdp: where the XDP program runs (auto tries native, then generic).
        #[arg(long, value_enum)]
        mode: Option<CliXdpMode>,
        /// afxdp: the interface queue to bind (default 0).
        #[arg(long, value_name = "N")]
        queue: Option<u32>,
        /// afxdp: bind to this existing interface instead of creating a veth pair.
        #[arg(long, value_name = "DEV")]
        iface: Option<String>,
    },
    /// Delete a port.
    DelPort {
        /// The bridge.
        bridge: String,
        /// The port.
        name: String,
    },
    /// List a bridge's ports.
    ListPorts {
        /// Only this bridge's (default: every bridge's).
        bridge: Option<String>,
    },
    /// Show bridges and ports (and the cluster, when vswitchd is in one).
    Show,
    /// List a bridge's learned MAC addresses.
    #[command(alias = "fdb-show")]
    ListFdb {
        /// Only this bridge's (default: every bridge's).
        bridge: Option<String>,
    },
    /// Show per-port counters.
    #[command(alias = "port-stats")]
    ShowPortStats {
        /// One port (default: every port).
        port: Option<String>,
        /// List every drop reason, also those at zero (--json always does).
        #[arg(long, alias = "all")]
        zeros: bool,
    },
    /// Show per-poll-thread counters.
    #[command(alias = "pmd-stats")]
    ShowPmdStats,
    /// Attach a namespace: create its port, give it an address and a default route.
    Attach {
        /// The bridge (with a subnet).
        bridge: String,
        #[command(flatten)]
        netns: NetnsArg,
        /// tap or afxdp.
        #[arg(long = "type", value_enum, default_value = "tap")]
        port_type: CliPortType,
        /// "auto" (the next free address) or a specific one.
        #[arg(long, default_value = "auto", value_parser = parse_ip_choice)]
        ip: IpChoice,
        /// Interface name inside the namespace.
        #[arg(long, default_value = "eth0")]
        ifname: String,
        /// The interface's MAC (default: derived from its address, so a re-attached namespace keeps it).
        #[arg(long, value_parser = MacAddr::parse_unicast)]
        mac: Option<MacAddr>,
        /// Who the attachment belongs to (a container ID), for list-attachments.
        #[arg(long, value_name = "ID")]
        owner: Option<String>,
        /// Leave the namespace's default route alone (a second network).
        #[arg(long)]
        no_default_route: bool,
        /// No source guard: the port may send from any MAC and address (a router, VMs behind it).
        #[arg(long)]
        allow_any_src: bool,
        /// The attachment's name, as network policies and `label` name it (default: the netns's).
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// Its namespace, as Kubernetes' (default: "default").
        #[arg(long, value_name = "NS")]
        namespace: Option<String>,
        /// A label policies select by; repeat for more.
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = crate::policy::parse_label)]
        labels: Vec<(String, String)>,
    },
    /// List attached namespaces with their owner, port, address, published ports and labels.
    #[command(alias = "list-attach")]
    ListAttachments,
    /// Detach a namespace: delete its port and release its address.
    Detach {
        /// The bridge.
        bridge: String,
        #[command(flatten)]
        netns: NetnsArg,
    },
    /// Change an attachment's labels: `label NS/NAME app=web tier-` (KEY=VALUE sets, KEY- removes).
    Label {
        /// The attachment, NAMESPACE/NAME (or NAME in "default").
        target: String,
        /// KEY=VALUE to set (a value there already is replaced), KEY- to remove.
        #[arg(required = true, value_name = "KEY=VALUE|KEY-")]
        changes: Vec<String>,
    },
    /// Change a namespace's labels, which namespaceSelectors see: `label-namespace prod env=prod`.
    LabelNamespace {
        /// The namespace.
        namespace: String,
        /// KEY=VALUE to set, KEY- to remove.
        #[arg(required = true, value_name = "KEY=VALUE|KEY-")]
        changes: Vec<String>,
    },
    /// Create or replace NetworkPolicies (and Namespaces' labels) from Kubernetes manifests, YAML or JSON; all or nothing.
    Apply {
        /// The manifest file ('-': standard input).
        #[arg(short = 'f', long = "filename", value_name = "FILE")]
        file: PathBuf,
    },
    /// Delete NetworkPolicies: `delete networkpolicy NS/NAME...` or `delete -f FILE`.
    Delete {
        /// networkpolicy (also netpol, networkpolicies), then the policies as NAMESPACE/NAME or NAME (in "default").
        #[arg(value_name = "KIND NAME")]
        names: Vec<String>,
        /// Delete the NetworkPolicies this manifest defines ('-': standard input).
        #[arg(short = 'f', long = "filename", value_name = "FILE", conflicts_with = "names")]
        file: Option<PathBuf>,
        /// No error for policies that are not there (also --if-exists).
        #[arg(long)]
        ignore_not_found: bool,
    },
    /// List network policies with the attachments each selects.
    #[command(alias = "list-policy")]
    ListPolicies,
    /// One network policy's rules as vswitch reads them, and the attachments it selects.
    ShowPolicy {
        /// NAMESPACE/NAME (or NAME in "default").
        target: String,
    },
    /// What the policies would do to a new connection, and which policy and rule decide, without sending anything (exit 1: denied).
    CheckPolicy {
        /// The opener: NAMESPACE/NAME, NAME (in "default") or an IPv4 address.
        #[arg(long, value_name = "NS/NAME|IP")]
        from: String,
        /// The acceptor: NAMESPACE/NAME, NAME or an IPv4 address.
        #[arg(long, value_name = "NS/NAME|IP")]
        to: String,
        /// PORT[/tcp|udp|sctp] (tcp when not said), or icmp.
        #[arg(long, value_name = "PORT/PROTO", value_parser = crate::check::port)]
        port: (u8, u16),
    },
    /// Connection events of the policy stages (new, denied, closed) with both ends' names and what decided, as Hubble's observe.
    Observe {
        /// Keep printing events as they come (Ctrl-C stops).
        #[arg(long, short = 'f')]
        follow: bool,
        /// Only connections allowed (new, closed) or only those denied.
        #[arg(long, value_enum)]
        verdict: Option<CliVerdict>,
        /// How many recent events to print first.
        #[arg(long, default_value_t = 20, value_name = "N")]
        last: usize,
        /// With --follow, stop after this many seconds.
        #[arg(long, requires = "follow", value_name = "SECS")]
        seconds: Option<u64>,
    },
    /// Allow routing between two bridges (off by default).
    LinkBr {
        /// One bridge.
        a: String,
        /// The other.
        b: String,
    },
    /// Stop routing between two bridges.
    UnlinkBr {
        /// One bridge.
        a: String,
        /// The other.
        b: String,
    },
    /// List the gateways' neighbour (ARP) tables.
    #[command(alias = "neigh-show")]
    ListNeigh {
        /// Only this bridge's.
        bridge: Option<String>,
    },
    /// Attach the interface toward the outside world to a bridge's gateway.
    AddUplink {
        /// The bridge (with a subnet).
        bridge: String,
        /// The interface (afxdp: an existing one; tap: the TAP to create); or --iface.
        #[arg(
            required_unless_present = "iface_opt",
            conflicts_with = "iface_opt",
            value_name = "IFACE"
        )]
        iface: Option<String>,
        #[arg(long = "iface", id = "iface_opt", value_name = "IFACE", hide = true)]
        iface_opt: Option<String>,
        /// The switch's address on the outside, A.B.C.D/NN.
        #[arg(long, value_parser = parse_cidr, value_name = "IP/LEN")]
        ip: (Ipv4Addr, u8),
        /// The next hop toward the outside.
        #[arg(long, alias = "gw", value_name = "IP")]
        gateway: Ipv4Addr,
        /// afxdp binds to IFACE (an existing interface); tap creates a TAP named IFACE.
        #[arg(long = "type", value_enum, default_value = "afxdp")]
        port_type: CliPortType,
        /// afxdp: where the XDP program runs (auto tries native, then generic).
        #[arg(long, value_enum)]
        mode: Option<CliXdpMode>,
        /// tap: move the TAP into this network namespace (the outside's, or a host stack's).
        #[arg(long, value_name = "NS")]
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
    DelUplink {
        /// The bridge.
        bridge: String,
    },
    /// Masquerade the bridge's connections out of its uplink ("masquerade"), or stop ("off").
    SetNat {
        /// The bridge.
        bridge: String,
        /// masquerade or off.
        #[arg(value_enum)]
        mode: NatMode,
    },
    /// Forward connections to the uplink address's PORT to a container (IP:PORT), as `docker run -p`.
    Publish {
        /// The bridge whose uplink address is published on.
        bridge: String,
        /// tcp or udp.
        #[arg(long, value_enum)]
        proto: CliNatProto,
        /// The port on the uplink address.
        #[arg(long)]
        port: u16,
        /// Where connections go: the container's IP:PORT.
        #[arg(long, value_parser = parse_target, value_name = "IP:PORT")]
        to: (Ipv4Addr, u16),
    },
    /// Stop publishing a port.
    Unpublish {
        /// The bridge.
        bridge: String,
        /// tcp or udp.
        #[arg(long, value_enum)]
        proto: CliNatProto,
        /// The published port.
        #[arg(long)]
        port: u16,
    },
    /// List published ports: a bridge's, or every bridge's (with the bridge).
    ListPublished {
        /// Only this bridge's.
        bridge: Option<String>,
    },
    /// List tracked connections.
    #[command(alias = "ct-show")]
    ListConns {
        #[command(flatten)]
        bridge: BridgeFilter,
    },
    /// Forget tracked connections (all, a bridge's, or those of one address).
    #[command(alias = "ct-flush")]
    DelConns {
        #[command(flatten)]
        bridge: BridgeFilter,
        /// Only the connections from or to this address.
        #[arg(long, value_name = "IP")]
        addr: Option<Ipv4Addr>,
    },
    /// Show connection tracking counters.
    #[command(alias = "ct-stats")]
    ShowCtStats,
    /// Show the control plane's counters: changes committed, saves that failed.
    ShowControlStats,
    /// Save the connection table now (before an upgrade): the next start puts it back (SIGTERM saves it too).
    #[command(alias = "ct-save")]
    SaveConns,
    /// Show what the pipeline decides for the next frames a port (or any port of a bridge) receives: parse, l2, route, nat, verdict.
    Trace {
        /// A port, or a bridge (any of its ports).
        #[arg(required_unless_present = "any", conflicts_with = "any")]
        port: Option<String>,
        /// Any port of the switch.
        #[arg(long, alias = "all")]
        any: bool,
        /// Frames to trace.
        #[arg(long, default_value_t = 1, value_name = "N")]
        count: u64,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 10, value_name = "SECS")]
        seconds: u64,
    },
    /// Copy a port's (or a whole bridge's) frames to a pcap file (-w - for stdout: `vsctl capture p1 -w - | tcpdump -r -`).
    Capture {
        /// A port, or a bridge (all its ports).
        port: String,
        /// Stop after this many frames.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// Stop after this many seconds.
        #[arg(long, value_name = "SECS")]
        seconds: Option<u64>,
        /// rx, tx or both.
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
        /// The bridge.
        bridge: String,
        /// The VXLAN network identifier, 1 to 16777215.
        #[arg(long)]
        vni: u32,
        /// The UDP port: 4789 (IANA), or 8472 to meet Linux's default.
        #[arg(long, alias = "port", default_value_t = 4789)]
        udp_port: u16,
        /// The bridge whose uplink carries the tunnel (default: this bridge's own).
        #[arg(long, value_name = "BRIDGE")]
        underlay: Option<String>,
        /// A remote VTEP that floods reach (repeat for more).
        #[arg(long = "remote", value_name = "IP")]
        remotes: Vec<Ipv4Addr>,
        /// Do not learn remote MACs from the tunnel (only add-fdb entries are used).
        #[arg(long)]
        no_learn: bool,
        /// Compute the outer UDP checksum on send (default: zero).
        #[arg(long)]
        udp_csum: bool,
    },
    /// Remove a bridge's tunnel.
    DelVxlan {
        /// The bridge.
        bridge: String,
    },
    /// Add a remote VTEP to a bridge's tunnel.
    AddVtep {
        /// The bridge.
        bridge: String,
        /// The VTEP's underlay address.
        ip: Ipv4Addr,
    },
    /// Remove a remote VTEP (and the MACs learned behind it).
    DelVtep {
        /// The bridge.
        bridge: String,
        /// The VTEP's underlay address.
        ip: Ipv4Addr,
    },
    /// A static remote MAC behind a VTEP; never ages.
    #[command(alias = "fdb-add")]
    AddFdb {
        /// The bridge (with a tunnel).
        bridge: String,
        /// The remote MAC.
        #[arg(value_parser = MacAddr::parse_unicast)]
        mac: MacAddr,
        /// The VTEP it is behind.
        #[arg(long, value_name = "IP")]
        vtep: Ipv4Addr,
    },
    /// Remove a static remote MAC.
    #[command(alias = "fdb-del")]
    DelFdb {
        /// The bridge.
        bridge: String,
        /// The remote MAC.
        #[arg(value_parser = MacAddr::parse_unicast)]
        mac: MacAddr,
    },
    /// List tunnels: VNI, port, underlay, remote VTEPs, MACs.
    #[command(alias = "vtep-show")]
    ListVteps {
        /// Only this bridge's.
        bridge: Option<String>,
    },
    /// Define an overlay network for every host of the cluster (vswitchd --cluster).
    #[command(alias = "net-create")]
    AddNet {
        /// The network's name (every host's bridge of it is named so).
        name: String,
        /// The network's subnet; each host serves one slice of it.
        #[arg(long, value_name = "CIDR", value_parser = parse_subnet)]
        subnet: Ipv4Net,
        /// The VXLAN network identifier, 1 to 16777215.
        #[arg(long)]
        vni: u32,
        /// The size of each host's slice.
        #[arg(long, default_value_t = 24, value_name = "LEN")]
        host_prefix: u8,
        /// The VXLAN UDP port.
        #[arg(long, alias = "port", default_value_t = 4789)]
        udp_port: u16,
    },
    /// Delete a cluster network (every host removes its bridge).
    #[command(alias = "net-delete")]
    DelNet {
        /// The network.
        name: String,
    },
    /// List the cluster's networks and which host holds which slice.
    #[command(alias = "net-list")]
    ListNets,
    /// This host's part in the cluster: connection, lease, underlay, slices.
    #[command(alias = "cluster-status", alias = "cluster-show")]
    ShowCluster,
    /// Leave the cluster now: the other hosts drop this one at once.
    #[command(alias = "cluster-leave")]
    LeaveCluster,
    /// Join the cluster again after leave-cluster.
    #[command(alias = "cluster-join")]
    JoinCluster,
}

/// A namespace, positional (`attach br0 ns1`) or as `--netns ns1`.
#[derive(clap::Args)]
pub struct NetnsArg {
    /// The namespace (a name under /run/netns, or a path); or --netns.
    #[arg(
        required_unless_present = "netns_opt",
        conflicts_with = "netns_opt",
        value_name = "NS"
    )]
    netns: Option<String>,
    #[arg(long = "netns", id = "netns_opt", value_name = "NS", hide = true)]
    netns_opt: Option<String>,
}

impl NetnsArg {
    /// The one given (clap asks for exactly one).
    pub fn name(self) -> anyhow::Result<String> {
        self.netns
            .or(self.netns_opt)
            .ok_or_else(|| anyhow::anyhow!("the namespace is missing"))
    }
}

/// An optional bridge filter, positional or as the earlier `--bridge BR`.
#[derive(clap::Args)]
pub struct BridgeFilter {
    /// Only this bridge's.
    #[arg(conflicts_with = "bridge_opt")]
    bridge: Option<String>,
    #[arg(long = "bridge", id = "bridge_opt", value_name = "BRIDGE", hide = true)]
    bridge_opt: Option<String>,
}

impl BridgeFilter {
    pub fn bridge(self) -> Option<String> {
        self.bridge.or(self.bridge_opt)
    }
}
