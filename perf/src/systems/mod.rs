//! The three systems under test, each building the same topology for a
//! scenario: two containers on one network (`l2`), on two networks
//! (`routed`), or a container and an "outside" namespace that has no route
//! back to the containers (`nat-out`: masquerade; `nat-in`: a published
//! port, 8080 -> container:80, and 8081 -> :81 for the latency server).
//!
//! `overlay`: container 1 on an overlay network with a container behind a
//! kernel VTEP on "another host" (namespace `r`, the vxlan device itself
//! standing in for the container), VNI 42 on port 4789 over an underlay.
//!
//! - vswitch: vswitchd on the switch cores; containers attached as TAP or
//!   AF_XDP ports; the uplink (`--uplink`) AF_XDP on a veth, or a TAP moved
//!   into the outside namespace; for
//!   `overlay`, a TAP moved into the remote host (the kernel's UDP-tunnel
//!   GSO carries super-frames whole).
//! - bridge: the Docker model, as `shared/anchors/baseline_a_docker_bridge.sh`
//!   builds it: a "host" namespace with a Linux bridge per network, veth
//!   pairs, ip_forward, br_netfilter and Docker 28's iptables ruleset with
//!   MASQUERADE and DNAT. For `routed`, Docker isolates networks from each
//!   other; DOCKER-USER rules let the two talk, as a user would add them
//!   (and Docker's MASQUERADE then applies between them too).
//! - ovs: Open vSwitch's userspace datapath (datapath_type=netdev), as
//!   `shared/anchors/baseline_b_ovs_userspace.sh` builds it: ovsdb-server and
//!   ovs-vswitchd of the run's own, in a namespace, pinned to the switch
//!   cores; TAP ports (created by OVS, moved into the containers) or AF_XDP
//!   ports (PMD on the switch cores) on veth pairs; the gateway, routing and
//!   conntrack NAT are OpenFlow rules; the uplink is an OVS TAP. For
//!   `overlay`, OVS's native tunnel: a vxlan port on the bridge, its local
//!   endpoint the address of a second netdev bridge whose port is a veth to
//!   the remote host (its offloads off: the anchor found OVS dropping the
//!   kernel's partial outer checksums).
//! - bridge, for `overlay`: flannel's data path: a vxlan device on the
//!   container bridge, over a veth to the remote host.
//!
//! - direct: the floor, the two namespaces on one veth pair, nothing between.
//!
//! The port type applies to the containers' ports of vswitch and OVS; the
//! Linux bridge and direct have only veth pairs and are measured the same
//! way for both.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::Serialize;

use crate::cmd::{self, CmdError};
use crate::lab::Lab;

mod bridge;
mod direct;
mod ovs;
mod vswitch;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    L2,
    Routed,
    NatOut,
    NatIn,
    Overlay,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum PortKind {
    Tap,
    Afxdp,
}

/// vswitch's uplink in the NAT scenarios.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum UplinkKind {
    /// A TAP moved into the outside namespace (super-frames cross whole).
    Tap,
    /// AF_XDP on the host end of a veth to the outside.
    Afxdp,
}

impl UplinkKind {
    pub fn name(self) -> &'static str {
        match self {
            UplinkKind::Tap => "tap",
            UplinkKind::Afxdp => "afxdp",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum System {
    Vswitch,
    Bridge,
    Ovs,
    /// No switch: one veth pair between the two namespaces.
    Direct,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::L2 => "l2",
            Scenario::Routed => "routed",
            Scenario::NatOut => "nat-out",
            Scenario::NatIn => "nat-in",
            Scenario::Overlay => "overlay",
        }
    }

    fn is_nat(self) -> bool {
        matches!(self, Scenario::NatOut | Scenario::NatIn)
    }
}

impl PortKind {
    pub fn name(self) -> &'static str {
        match self {
            PortKind::Tap => "tap",
            PortKind::Afxdp => "afxdp",
        }
    }
}

impl System {
    pub fn name(self) -> &'static str {
        match self {
            System::Vswitch => "vswitch",
            System::Bridge => "bridge",
            System::Ovs => "ovs",
            System::Direct => "direct",
        }
    }

    /// Why this system cannot be measured on this machine, if it cannot.
    pub fn missing(self, opts: &Opts) -> Option<String> {
        let tools: &[&str] = match self {
            System::Vswitch | System::Direct => &[],
            System::Bridge => &["iptables-restore"],
            System::Ovs => &["ovs-vswitchd", "ovsdb-server", "ovs-vsctl", "ovs-ofctl", "ovsdb-tool"],
        };
        if let Some(t) = tools.iter().find(|t| !cmd::have(t)) {
            return Some(format!("{t} is not installed"));
        }
        if self == System::Vswitch {
            for bin in [&opts.vswitchd, &opts.vsctl] {
                if !bin.exists() {
                    return Some(format!("{} not found (cargo build --release)", bin.display()));
                }
            }
        }
        None
    }
}

/// How the systems are run.
#[derive(Clone, Debug)]
pub struct Opts {
    /// Cores of the switch (vswitchd --cores, OVS pmd-cpu-mask and pinning).
    pub switch_cores: Vec<usize>,
    pub vswitchd: PathBuf,
    pub vsctl: PathBuf,
    pub spin_us: u32,
}

/// The networks (/24): the containers' first and second, the outside, and
/// the underlay of the overlay (local VTEP .1, remote .2).
const NET_A: [u8; 3] = [10, 210, 1];
const NET_B: [u8; 3] = [10, 210, 2];
const OUTSIDE: [u8; 3] = [10, 210, 200];
const UNDERLAY: [u8; 3] = [10, 210, 250];
const VNI: u32 = 42;
const VXLAN_PORT: u16 = 4789;
const GW_MAC: &str = "02:d2:01:00:00:01";
const C1_MAC: &str = "02:d2:01:00:00:02";
const C2_MAC: &str = "02:d2:01:00:00:03";
const UPLINK_MAC: &str = "02:d2:c8:00:00:01";
const OUTSIDE_MAC: &str = "02:d2:c8:00:00:02";
/// Ports: iperf3 and sockperf servers, and the published ports.
pub const IPERF_PORT: u16 = 5201;
pub const RR_PORT: u16 = 11111;
const PUBLISHED: u16 = 8080;
const PUBLISHED_RR: u16 = 8081;
const CONTAINER_PORT: u16 = 80;
const CONTAINER_RR_PORT: u16 = 81;

fn ip(net: [u8; 3], host: u8) -> Ipv4Addr {
    Ipv4Addr::new(net[0], net[1], net[2], host)
}

fn cidr(net: [u8; 3]) -> String {
    format!("{}/24", ip(net, 0))
}

/// Who talks to whom in a built topology, and what to watch.
#[derive(Clone, Debug, Serialize)]
pub struct Path {
    pub client: String,
    pub client_if: String,
    pub server: String,
    pub server_if: String,
    /// The address the servers bind to.
    pub server_addr: Ipv4Addr,
    /// The address the client dials (the server's, or the published one).
    pub target: Ipv4Addr,
    /// (server's port, port the client dials) for throughput and for latency.
    pub tcp_ports: (u16, u16),
    pub rr_ports: (u16, u16),
    /// The switch process, for CPU accounting (None: the kernel bridge).
    pub switch_pid: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Cmd(#[from] CmdError),
    #[error("{0}")]
    Unsupported(String),
    #[error("{what} did not come up: {detail}")]
    NotReady { what: String, detail: String },
}

/// Builds `scenario` with `port` ports on `system` inside `lab`.
pub fn build(
    system: System,
    scenario: Scenario,
    port: PortKind,
    uplink: UplinkKind,
    lab: &mut Lab,
    opts: &Opts,
) -> Result<Path, SetupError> {
    let path = match system {
        System::Vswitch => vswitch::build(scenario, port, uplink, lab, opts)?,
        System::Bridge => bridge::build(scenario, lab)?,
        System::Ovs => ovs::build(scenario, port, lab, opts)?,
        System::Direct => direct::build(scenario, lab)?,
    };
    // The first packets resolve neighbours, learn MACs and create
    // connections; none of that belongs in the measurements.
    let ping = format!("ping -c 3 -i 0.2 -W 1 -q {}", path.target);
    if scenario != Scenario::NatIn {
        cmd::run(Some(&path.client), &ping).map_err(|e| SetupError::NotReady {
            what: format!("{} {} {}", system.name(), scenario.name(), port.name()),
            detail: e.to_string(),
        })?;
    }
    Ok(path)
}

fn path_for(scenario: Scenario, c1: &str, c1_if: &str, peer: &str, peer_if: &str, peer_addr: Ipv4Addr) -> Path {
    let same = |p| (p, p);
    match scenario {
        Scenario::NatIn => Path {
            client: peer.into(),
            client_if: peer_if.into(),
            server: c1.into(),
            server_if: c1_if.into(),
            server_addr: ip(NET_A, 2),
            target: ip(OUTSIDE, 1),
            tcp_ports: (CONTAINER_PORT, PUBLISHED),
            rr_ports: (CONTAINER_RR_PORT, PUBLISHED_RR),
            switch_pid: None,
        },
        _ => Path {
            client: c1.into(),
            client_if: c1_if.into(),
            server: peer.into(),
            server_if: peer_if.into(),
            server_addr: peer_addr,
            target: peer_addr,
            tcp_ports: same(IPERF_PORT),
            rr_ports: same(RR_PORT),
            switch_pid: None,
        },
    }
}

/// The peer of container 1 in `scenario`: (its network, host number).
fn peer_of(scenario: Scenario) -> ([u8; 3], u8) {
    match scenario {
        Scenario::L2 | Scenario::Overlay => (NET_A, 3),
        Scenario::Routed => (NET_B, 2),
        Scenario::NatOut | Scenario::NatIn => (OUTSIDE, 2),
    }
}

/// The path between container 1 and its peer, both on their eth0 (or the
/// peer the kernel VTEP on the overlay's remote host).
fn veth_path(scenario: Scenario, c1: &str, peer: &str) -> Path {
    let (peer_net, peer_host) = peer_of(scenario);
    path_for(scenario, c1, "eth0", peer, peer_link(scenario), ip(peer_net, peer_host))
}

/// The peer's interface: the kernel VTEP itself on the overlay's remote host.
fn peer_link(scenario: Scenario) -> &'static str {
    match scenario {
        Scenario::Overlay => "vx0",
        _ => "eth0",
    }
}

/// Makes namespace `r` the remote host of the overlay: `link` its underlay
/// interface (.2), and a kernel VTEP over it with the peer container's
/// address (.3 of the overlay network) and MAC.
fn remote_host(r: &str, link: &str) -> Result<(), SetupError> {
    let rs = Some(r);
    cmd::run(rs, &format!("ip addr add {}/24 dev {link}", ip(UNDERLAY, 2)))?;
    cmd::run(rs, &format!("ip link set {link} up"))?;
    cmd::run(
        rs,
        &format!(
            "ip link add vx0 address {C2_MAC} type vxlan id {VNI} dstport {VXLAN_PORT} remote {} local {} dev {link}",
            ip(UNDERLAY, 1),
            ip(UNDERLAY, 2)
        ),
    )?;
    cmd::run(rs, &format!("ip addr add {}/24 dev vx0", ip(NET_A, 3)))?;
    cmd::run(rs, "ip link set vx0 up")?;
    Ok(())
}

/// Makes `link` in namespace `x` the "outside" of the NAT scenarios:
/// 10.210.200.2, no route to the container networks, its offloads as the
/// kernel set them (every system finishes the checksums it leaves open).
fn outside(x: &str, link: &str) -> Result<(), SetupError> {
    cmd::run(Some(x), &format!("ip link set {link} address {OUTSIDE_MAC}"))?;
    cmd::run(Some(x), &format!("ip addr add {}/24 dev {link}", ip(OUTSIDE, 2)))?;
    cmd::run(Some(x), &format!("ip link set {link} up"))?;
    Ok(())
}

/// Gives `link` (already inside container namespace `ns`) `mac`, `addr`/24
/// and a default route via `gw`.
fn container_addr(ns: &str, link: &str, mac: &str, addr: Ipv4Addr, gw: Ipv4Addr) -> Result<(), SetupError> {
    cmd::run(Some(ns), &format!("ip link set {link} address {mac}"))?;
    cmd::run(Some(ns), &format!("ip addr add {addr}/24 dev {link}"))?;
    cmd::run(Some(ns), &format!("ip link set {link} up"))?;
    cmd::run(Some(ns), &format!("ip route add default via {gw}"))?;
    Ok(())
}
