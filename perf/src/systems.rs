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
//!   AF_XDP ports; the uplink is AF_XDP (generic XDP) on a veth; for
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
//! The port type applies to the containers' ports of vswitch and OVS; the
//! Linux bridge has only veth pairs and is measured the same way for both.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::cmd::{self, CmdError};
use crate::lab::Lab;

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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum System {
    Vswitch,
    Bridge,
    Ovs,
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
        }
    }

    /// Why this system cannot be measured on this machine, if it cannot.
    pub fn missing(self, opts: &Opts) -> Option<String> {
        let tools: &[&str] = match self {
            System::Vswitch => &[],
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
    lab: &mut Lab,
    opts: &Opts,
) -> Result<Path, SetupError> {
    let path = match system {
        System::Vswitch => vswitch(scenario, port, lab, opts)?,
        System::Bridge => bridge(scenario, lab)?,
        System::Ovs => ovs(scenario, port, lab, opts)?,
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
/// 10.210.200.2, no route to the container networks. Facing an AF_XDP
/// uplink its transmit checksum offload goes off (a real NIC would finish
/// the checksums that AF_XDP cannot).
fn outside(x: &str, link: &str, tx_offload: bool) -> Result<(), SetupError> {
    cmd::run(Some(x), &format!("ip link set {link} address {OUTSIDE_MAC}"))?;
    cmd::run(Some(x), &format!("ip addr add {}/24 dev {link}", ip(OUTSIDE, 2)))?;
    cmd::run(Some(x), &format!("ip link set {link} up"))?;
    if !tx_offload {
        cmd::run(Some(x), &format!("ethtool -K {link} tx off"))?;
    }
    Ok(())
}

// ---- vswitch ---------------------------------------------------------------

fn vswitch(scenario: Scenario, port: PortKind, lab: &mut Lab, opts: &Opts) -> Result<Path, SetupError> {
    let sock = lab.dir().join("vswitchd.sock");
    let state = lab.dir().join("state");
    let cores: Vec<String> = opts.switch_cores.iter().map(|c| c.to_string()).collect();
    let daemon = cmd::spawn(
        None,
        &format!(
            "{} --cores {} --spin-us {} --socket {} --state-dir {} --log-level warn",
            opts.vswitchd.display(),
            cores.join(","),
            opts.spin_us,
            sock.display(),
            state.display()
        ),
    )?;
    let pid = lab.own_process(daemon);
    let vsctl = |args: &str| {
        cmd::run(
            None,
            &format!("{} --socket {} {args}", opts.vsctl.display(), sock.display()),
        )
    };
    let mut up = false;
    for _ in 0..100 {
        if vsctl("show").is_ok() {
            up = true;
            break;
        }
        cmd::sleep(Duration::from_millis(50))?;
    }
    if !up {
        return Err(SetupError::NotReady {
            what: "vswitchd".into(),
            detail: format!("no answer on {}", sock.display()),
        });
    }
    let t = port.name();
    let c1 = lab.netns("c1")?;
    vsctl(&format!("add-br a --subnet {}", cidr(NET_A)))?;
    vsctl(&format!("attach a {c1} --type {t} --ip {}", ip(NET_A, 2)))?;
    let (peer_net, peer_host) = peer_of(scenario);
    let peer = match scenario {
        Scenario::L2 => {
            let c2 = lab.netns("c2")?;
            vsctl(&format!("attach a {c2} --type {t} --ip {}", ip(NET_A, 3)))?;
            c2
        }
        Scenario::Routed => {
            let c2 = lab.netns("c2")?;
            vsctl(&format!("add-br b --subnet {}", cidr(NET_B)))?;
            vsctl("link-br a b")?;
            vsctl(&format!("attach b {c2} --type {t} --ip {}", ip(NET_B, 2)))?;
            c2
        }
        Scenario::Overlay => {
            // The container was attached before the tunnel: again, for the
            // overlay's MTU and super-frame size.
            vsctl(&format!("detach a {c1}"))?;
            let uplink = lab.name("up");
            let r = lab.netns("r")?;
            vsctl(&format!(
                "add-uplink a {uplink} --type tap --netns {r} --ip {}/24 --gw {}",
                ip(UNDERLAY, 1),
                ip(UNDERLAY, 254)
            ))?;
            remote_host(&r, &uplink)?;
            vsctl(&format!(
                "add-vxlan a --vni {VNI} --port {VXLAN_PORT} --remote {}",
                ip(UNDERLAY, 2)
            ))?;
            vsctl(&format!("attach a {c1} --type {t} --ip {}", ip(NET_A, 2)))?;
            r
        }
        Scenario::NatOut | Scenario::NatIn => {
            let uplink = lab.name("up");
            let x = lab.netns("x")?;
            lab.veth(None, &uplink, &x, "eth0", None)?;
            outside(&x, "eth0", false)?;
            vsctl(&format!(
                "add-uplink a {uplink} --ip {}/24 --gw {} --mode generic",
                ip(OUTSIDE, 1),
                ip(OUTSIDE, 2)
            ))?;
            vsctl("set-nat a masquerade")?;
            let c = ip(NET_A, 2);
            vsctl(&format!(
                "publish a --proto tcp --port {PUBLISHED} --to {c}:{CONTAINER_PORT}"
            ))?;
            vsctl(&format!(
                "publish a --proto udp --port {PUBLISHED} --to {c}:{CONTAINER_PORT}"
            ))?;
            vsctl(&format!(
                "publish a --proto tcp --port {PUBLISHED_RR} --to {c}:{CONTAINER_RR_PORT}"
            ))?;
            x
        }
    };
    let mut path = path_for(
        scenario,
        &c1,
        "eth0",
        &peer,
        peer_link(scenario),
        ip(peer_net, peer_host),
    );
    path.switch_pid = Some(pid);
    Ok(path)
}

// ---- the Docker model ----------------------------------------------------------

/// Docker 28's bridge-driver ruleset for networks `bridges` (name, subnet)
/// with `docker run -p 8080:80 -p 8080:80/udp -p 8081:81` on the first
/// network's container .2 (shared/anchors/baseline_a_docker_bridge.sh), plus
/// DOCKER-USER rules letting the networks talk when `connect` is set.
fn docker_rules(bridges: &[(&str, String)], connect: bool) -> String {
    let (br0, _) = &bridges[0];
    let c1 = ip(NET_A, 2);
    let raw = format!("-A PREROUTING -d {c1}/32 ! -i {br0} -j DROP");
    let mut filter = vec![
        "-A FORWARD -j DOCKER-USER".to_string(),
        "-A FORWARD -j DOCKER-FORWARD".to_string(),
        format!("-A DOCKER -d {c1}/32 ! -i {br0} -o {br0} -p tcp -m tcp --dport {CONTAINER_PORT} -j ACCEPT"),
        format!("-A DOCKER -d {c1}/32 ! -i {br0} -o {br0} -p udp -m udp --dport {CONTAINER_PORT} -j ACCEPT"),
        format!("-A DOCKER -d {c1}/32 ! -i {br0} -o {br0} -p tcp -m tcp --dport {CONTAINER_RR_PORT} -j ACCEPT"),
        "-A DOCKER-FORWARD -j DOCKER-CT".to_string(),
        "-A DOCKER-FORWARD -j DOCKER-ISOLATION-STAGE-1".to_string(),
        "-A DOCKER-FORWARD -j DOCKER-BRIDGE".to_string(),
    ];
    let mut nat = vec![
        "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER".to_string(),
        "-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER".to_string(),
    ];
    for (br, subnet) in bridges {
        filter.push(format!("-A DOCKER ! -i {br} -o {br} -j DROP"));
        filter.push(format!("-A DOCKER-BRIDGE -o {br} -j DOCKER"));
        filter.push(format!(
            "-A DOCKER-CT -o {br} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
        ));
        filter.push(format!("-A DOCKER-FORWARD -i {br} -j ACCEPT"));
        filter.push(format!(
            "-A DOCKER-ISOLATION-STAGE-1 -i {br} ! -o {br} -j DOCKER-ISOLATION-STAGE-2"
        ));
        filter.push(format!("-A DOCKER-ISOLATION-STAGE-2 -o {br} -j DROP"));
        nat.push(format!("-A POSTROUTING -s {subnet} ! -o {br} -j MASQUERADE"));
        nat.push(format!("-A DOCKER -i {br} -j RETURN"));
    }
    if connect {
        for (a, _) in bridges {
            for (b, _) in bridges.iter().filter(|(b, _)| b != a) {
                filter.push(format!("-A DOCKER-USER -i {a} -o {b} -j ACCEPT"));
            }
        }
    }
    filter.push("-A DOCKER-USER -j RETURN".to_string());
    for (proto, port, to) in [
        ("tcp", PUBLISHED, CONTAINER_PORT),
        ("udp", PUBLISHED, CONTAINER_PORT),
        ("tcp", PUBLISHED_RR, CONTAINER_RR_PORT),
    ] {
        nat.push(format!(
            "-A DOCKER ! -i {br0} -p {proto} -m {proto} --dport {port} -j DNAT --to-destination {c1}:{to}"
        ));
    }
    let chains = |names: &[&str]| names.iter().map(|n| format!(":{n} - [0:0]\n")).collect::<String>();
    format!(
        "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n{raw}\nCOMMIT\n\
         *filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n{}{}\nCOMMIT\n\
         *nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n{}{}\nCOMMIT\n",
        chains(&[
            "DOCKER",
            "DOCKER-BRIDGE",
            "DOCKER-CT",
            "DOCKER-FORWARD",
            "DOCKER-ISOLATION-STAGE-1",
            "DOCKER-ISOLATION-STAGE-2",
            "DOCKER-USER",
        ]),
        filter.join("\n"),
        chains(&["DOCKER"]),
        nat.join("\n"),
    )
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

fn bridge(scenario: Scenario, lab: &mut Lab) -> Result<Path, SetupError> {
    let h = lab.netns("h")?;
    let hs = Some(h.as_str());
    let mut bridges = vec![("br0", cidr(NET_A))];
    cmd::run(hs, &format!("ip link add br0 address {GW_MAC} type bridge"))?;
    cmd::run(hs, &format!("ip addr add {}/24 dev br0", ip(NET_A, 1)))?;
    cmd::run(hs, "ip link set br0 up")?;
    let c1 = lab.netns("c1")?;
    lab.veth(hs, "v1", &c1, "eth0", None)?;
    cmd::run(hs, "ip link set v1 master br0")?;
    container_addr(&c1, "eth0", C1_MAC, ip(NET_A, 2), ip(NET_A, 1))?;
    let (peer_net, peer_host) = peer_of(scenario);
    let peer = match scenario {
        Scenario::L2 | Scenario::Routed => {
            let c2 = lab.netns("c2")?;
            lab.veth(hs, "v2", &c2, "eth0", None)?;
            let br = if scenario == Scenario::L2 {
                "br0"
            } else {
                cmd::run(hs, "ip link add br1 type bridge")?;
                cmd::run(hs, &format!("ip addr add {}/24 dev br1", ip(NET_B, 1)))?;
                cmd::run(hs, "ip link set br1 up")?;
                bridges.push(("br1", cidr(NET_B)));
                "br1"
            };
            cmd::run(hs, &format!("ip link set v2 master {br}"))?;
            container_addr(&c2, "eth0", C2_MAC, ip(peer_net, peer_host), ip(peer_net, 1))?;
            c2
        }
        Scenario::NatOut | Scenario::NatIn => {
            let x = lab.netns("x")?;
            lab.veth(hs, "upl", &x, "eth0", None)?;
            cmd::run(hs, &format!("ip addr add {}/24 dev upl", ip(OUTSIDE, 1)))?;
            outside(&x, "eth0", true)?;
            x
        }
        Scenario::Overlay => {
            let r = lab.netns("r")?;
            lab.veth(hs, "upl", &r, "eth0", None)?;
            cmd::run(hs, &format!("ip addr add {}/24 dev upl", ip(UNDERLAY, 1)))?;
            cmd::run(hs, "ip link set upl up")?;
            remote_host(&r, "eth0")?;
            cmd::run(
                hs,
                &format!(
                    "ip link add vx0 type vxlan id {VNI} dstport {VXLAN_PORT} remote {} local {} dev upl",
                    ip(UNDERLAY, 2),
                    ip(UNDERLAY, 1)
                ),
            )?;
            cmd::run(hs, "ip link set vx0 master br0 up")?;
            // The overlay's MTU, as flannel gives its containers.
            cmd::run(Some(&c1), "ip link set eth0 mtu 1450")?;
            r
        }
    };
    cmd::run(hs, "sysctl -qw net.ipv4.ip_forward=1")?;
    // Docker turns br_netfilter on, so bridged traffic crosses iptables too.
    if cmd::run(hs, "sysctl -qw net.bridge.bridge-nf-call-iptables=1").is_err() {
        let _ = cmd::run(None, "modprobe br_netfilter");
        cmd::run(hs, "sysctl -qw net.bridge.bridge-nf-call-iptables=1").map_err(|e| {
            SetupError::Unsupported(format!(
                "br_netfilter is not available, so the Docker model cannot be built: {e}"
            ))
        })?;
    }
    cmd::run_with_input(
        hs,
        "iptables-restore",
        &docker_rules(&bridges, scenario == Scenario::Routed),
    )?;
    Ok(path_for(
        scenario,
        &c1,
        "eth0",
        &peer,
        peer_link(scenario),
        ip(peer_net, peer_host),
    ))
}

// ---- Open vSwitch, userspace datapath ----------------------------------------------

const OVS_BRIDGE: &str = "vpbr";
/// The underlay bridge of the overlay scenario (its internal port is the
/// local tunnel endpoint).
const OVS_UNDERLAY: &str = "vpul";
const OVS_SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";
const UPLINK_OFPORT: u16 = 9;

/// An OpenFlow ARP responder answering for `ip` with `mac`.
fn arp_responder(ip: Ipv4Addr, mac: &str) -> String {
    let hex_mac = mac.replace(':', "");
    format!(
        "move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],mod_dl_src:{mac},load:0x2->NXM_OF_ARP_OP[],\
         move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],\
         load:0x{hex_mac}->NXM_NX_ARP_SHA[],load:0x{:08x}->NXM_OF_ARP_SPA[],in_port",
        u32::from(ip)
    )
}

/// The OpenFlow rules of `scenario`: MAC learning (NORMAL) for `l2`; for
/// `routed` a gateway on each network answering ARP and routing by
/// destination; for NAT the anchor's conntrack pipeline (SNAT out of port
/// 9, DNAT of the published ports in).
fn ovs_flows(scenario: Scenario) -> String {
    let c1 = ip(NET_A, 2);
    let route = |mac: &str, port: u16| format!("mod_dl_src:{GW_MAC},mod_dl_dst:{mac},dec_ttl,output:{port}");
    let mut flows = Vec::new();
    match scenario {
        Scenario::L2 | Scenario::Overlay => {}
        Scenario::Routed => {
            for (net, mac, port) in [(NET_A, C1_MAC, 1), (NET_B, C2_MAC, 2)] {
                flows.push(format!(
                    "table=0,priority=200,arp,arp_op=1,arp_tpa={},actions={}",
                    ip(net, 1),
                    arp_responder(ip(net, 1), GW_MAC)
                ));
                flows.push(format!(
                    "table=0,priority=100,ip,dl_dst={GW_MAC},nw_dst={},actions={}",
                    ip(net, 2),
                    route(mac, port)
                ));
            }
        }
        Scenario::NatOut | Scenario::NatIn => {
            let up = UPLINK_OFPORT;
            let to_ext = format!("mod_dl_src:{UPLINK_MAC},mod_dl_dst:{OUTSIDE_MAC},dec_ttl,output:{up}");
            let to_c1 = route(C1_MAC, 1);
            let (gw, upl) = (ip(NET_A, 1), ip(OUTSIDE, 1));
            flows.extend([
                format!(
                    "table=0,priority=200,arp,arp_op=1,arp_tpa={gw},actions={}",
                    arp_responder(gw, GW_MAC)
                ),
                format!(
                    "table=0,priority=200,in_port={up},arp,arp_op=1,arp_tpa={upl},actions={}",
                    arp_responder(upl, UPLINK_MAC)
                ),
                format!("table=0,priority=150,in_port={up},ip,nw_dst={upl},actions=ct(zone=1,nat,table=20)"),
                format!("table=0,priority=140,in_port={up},actions=drop"),
                format!(
                    "table=0,priority=100,ip,dl_dst={GW_MAC},nw_dst={},actions=ct(zone=1,nat,table=10)",
                    cidr(OUTSIDE)
                ),
                "table=10,priority=110,ct_state=+trk+inv,actions=drop".into(),
                format!("table=10,priority=105,ct_state=+trk+snat,ip,actions={to_ext}"),
                format!("table=10,priority=100,ct_state=+trk+new,ip,actions=ct(commit,zone=1,nat(src={upl})),{to_ext}"),
                format!("table=10,priority=90,ct_state=+trk+est,ip,actions={to_ext}"),
                format!("table=10,priority=90,ct_state=+trk+rel,ip,actions={to_ext}"),
                "table=10,priority=0,actions=drop".into(),
                "table=20,priority=110,ct_state=+trk+inv,actions=drop".into(),
                "table=20,priority=105,ct_state=+trk+dnat,ip,actions=resubmit(,30)".into(),
            ]);
            for (proto, port, to) in [
                ("tcp", PUBLISHED, CONTAINER_PORT),
                ("udp", PUBLISHED, CONTAINER_PORT),
                ("tcp", PUBLISHED_RR, CONTAINER_RR_PORT),
            ] {
                flows.push(format!(
                    "table=20,priority=100,ct_state=+trk+new,{proto},tp_dst={port},\
                     actions=ct(commit,zone=1,nat(dst={c1}:{to})),{to_c1}"
                ));
            }
            flows.extend([
                "table=20,priority=90,ct_state=+trk+est,ip,actions=resubmit(,30)".into(),
                "table=20,priority=90,ct_state=+trk+rel,ip,actions=resubmit(,30)".into(),
                "table=20,priority=0,actions=drop".into(),
                format!("table=30,priority=100,ip,nw_dst={c1},actions={to_c1}"),
                "table=30,priority=0,actions=drop".into(),
            ]);
        }
    }
    flows.push("table=0,priority=0,actions=NORMAL".into());
    flows.join("\n") + "\n"
}

fn ovs(scenario: Scenario, port: PortKind, lab: &mut Lab, opts: &Opts) -> Result<Path, SetupError> {
    let d = lab.dir().join("ovs");
    std::fs::create_dir_all(&d).map_err(|source| CmdError::Spawn {
        cmd: format!("mkdir {}", d.display()),
        source,
    })?;
    let d = d.display().to_string();
    let env = format!("env OVS_RUNDIR={d} OVS_LOGDIR={d} OVS_DBDIR={d} OVS_SYSCONFDIR={d}");
    // ovs-vswitchd lives in a namespace of its own, so the devices the
    // userspace datapath creates never appear in the root namespace.
    let sw = lab.netns("sw")?;
    let sws = Some(sw.as_str());
    cmd::run(None, &format!("ovsdb-tool create {d}/conf.db {OVS_SCHEMA}"))?;
    cmd::run(
        sws,
        &format!(
            "{env} ovsdb-server {d}/conf.db --remote=punix:{d}/db.sock --pidfile={d}/ovsdb-server.pid \
             --unixctl={d}/ovsdb-server.ctl --log-file={d}/ovsdb-server.log --detach --no-chdir"
        ),
    )?;
    lab.on_cleanup(format!("ovs-appctl -t {d}/ovsdb-server.ctl exit"));
    let vsctl = |args: &str| {
        cmd::run(
            None,
            &format!("{env} ovs-vsctl --db=unix:{d}/db.sock --timeout=30 {args}"),
        )
    };
    vsctl("--no-wait init")?;
    let mask: u64 = opts.switch_cores.iter().map(|c| 1u64 << c).sum();
    vsctl(&format!(
        "--no-wait set Open_vSwitch . other_config:pmd-cpu-mask=0x{mask:x}"
    ))?;
    let cores: Vec<String> = opts.switch_cores.iter().map(|c| c.to_string()).collect();
    cmd::run(
        sws,
        &format!(
            "{env} taskset -c {} ovs-vswitchd unix:{d}/db.sock --pidfile={d}/ovs-vswitchd.pid \
             --unixctl={d}/ovs-vswitchd.ctl --log-file={d}/ovs-vswitchd.log --detach --no-chdir",
            cores.join(",")
        ),
    )?;
    lab.on_cleanup(format!("ovs-appctl -t {d}/ovs-vswitchd.ctl exit --cleanup"));
    let pid = std::fs::read_to_string(format!("{d}/ovs-vswitchd.pid"))
        .ok()
        .and_then(|p| p.trim().parse().ok());
    vsctl(&format!(
        "add-br {OVS_BRIDGE} -- set bridge {OVS_BRIDGE} datapath_type=netdev fail-mode=secure"
    ))?;
    cmd::run(sws, &format!("ip link set {OVS_BRIDGE} up"))?;

    // A container port: OVS's TAP moved into the container, or a veth
    // whose host end is an AF_XDP port (checksum offload off inside, as
    // OVS's AF_XDP needs: see the anchor).
    let attach = |lab: &mut Lab, ns: &str, ofport: u16| -> Result<String, SetupError> {
        match port {
            PortKind::Tap => {
                let tap = format!("t{ofport}");
                vsctl(&format!(
                    "add-port {OVS_BRIDGE} {tap} -- set Interface {tap} type=tap ofport_request={ofport}"
                ))?;
                wait_for_link(&sw, &tap)?;
                cmd::run(sws, &format!("ip link set {tap} netns {ns}"))?;
                Ok(tap)
            }
            PortKind::Afxdp => {
                let host = format!("x{ofport}");
                lab.veth(sws, &host, ns, "eth0", None)?;
                cmd::run(Some(ns), "ethtool -K eth0 tx off")?;
                vsctl(&format!(
                    "add-port {OVS_BRIDGE} {host} -- set Interface {host} type=afxdp ofport_request={ofport} \
                     options:xdp-mode=native options:n_rxq=1"
                ))?;
                Ok("eth0".to_string())
            }
        }
    };
    let c1 = lab.netns("c1")?;
    let c1_if = attach(lab, &c1, 1)?;
    container_addr(&c1, &c1_if, C1_MAC, ip(NET_A, 2), ip(NET_A, 1))?;
    let (peer_net, peer_host) = peer_of(scenario);
    let (peer, peer_if) = if scenario == Scenario::Overlay {
        let r = lab.netns("r")?;
        ovs_underlay(lab, &sw, &vsctl, &r)?;
        // The overlay's MTU: OVS does not cut what does not fit.
        cmd::run(Some(&c1), &format!("ip link set {c1_if} mtu 1450"))?;
        (r, "vx0".to_string())
    } else if scenario.is_nat() {
        let x = lab.netns("x")?;
        let tap = "t9";
        vsctl(&format!(
            "add-port {OVS_BRIDGE} {tap} -- set Interface {tap} type=tap ofport_request={UPLINK_OFPORT}"
        ))?;
        wait_for_link(&sw, tap)?;
        cmd::run(sws, &format!("ip link set {tap} netns {x}"))?;
        outside(&x, tap, true)?;
        (x, tap.to_string())
    } else {
        let c2 = lab.netns("c2")?;
        let c2_if = attach(lab, &c2, 2)?;
        container_addr(&c2, &c2_if, C2_MAC, ip(peer_net, peer_host), ip(peer_net, 1))?;
        (c2, c2_if)
    };
    let flows = lab.dir().join("flows.txt");
    std::fs::write(&flows, ovs_flows(scenario)).map_err(|source| CmdError::Spawn {
        cmd: format!("write {}", flows.display()),
        source,
    })?;
    cmd::run(
        None,
        &format!("{env} ovs-ofctl add-flows {OVS_BRIDGE} {}", flows.display()),
    )?;
    if port == PortKind::Afxdp {
        // The AF_XDP sockets take a moment; an error shows in the database.
        cmd::sleep(Duration::from_secs(1))?;
        let error = vsctl("get Interface x1 error")?;
        if error.trim() != "[]" {
            return Err(SetupError::NotReady {
                what: "OVS AF_XDP port".into(),
                detail: error.trim().to_string(),
            });
        }
    }
    let mut path = path_for(scenario, &c1, &c1_if, &peer, &peer_if, ip(peer_net, peer_host));
    path.switch_pid = pid;
    Ok(path)
}

/// OVS's native VXLAN toward remote host `r`: an underlay netdev bridge
/// whose internal port carries the local endpoint and whose port is a veth
/// to `r`, and a vxlan port on the container bridge (as the anchor builds
/// it). A ping over the underlay lets OVS learn the remote's MAC.
fn ovs_underlay(
    lab: &mut Lab,
    sw: &str,
    vsctl: &dyn Fn(&str) -> Result<String, CmdError>,
    r: &str,
) -> Result<(), SetupError> {
    let sws = Some(sw);
    vsctl(&format!(
        "add-br {OVS_UNDERLAY} -- set bridge {OVS_UNDERLAY} datapath_type=netdev"
    ))?;
    lab.veth(sws, "ul", r, "eth0", None)?;
    cmd::run(sws, "ip link set ul up")?;
    vsctl(&format!("add-port {OVS_UNDERLAY} ul"))?;
    cmd::run(sws, &format!("ip addr add {}/24 dev {OVS_UNDERLAY}", ip(UNDERLAY, 1)))?;
    cmd::run(sws, &format!("ip link set {OVS_UNDERLAY} up"))?;
    remote_host(r, "eth0")?;
    cmd::run(Some(r), "ethtool -K eth0 tx off")?;
    vsctl(&format!(
        "add-port {OVS_BRIDGE} vx -- set Interface vx type=vxlan ofport_request=5          options:remote_ip={} options:local_ip={} options:key={VNI}",
        ip(UNDERLAY, 2),
        ip(UNDERLAY, 1)
    ))?;
    cmd::sleep(Duration::from_secs(1))?;
    cmd::run(sws, &format!("ping -c 2 -i 0.2 -W 1 -q {}", ip(UNDERLAY, 2)))?;
    Ok(())
}

/// Waits until `link` exists in namespace `ns` (OVS creates its TAPs
/// asynchronously).
fn wait_for_link(ns: &str, link: &str) -> Result<(), SetupError> {
    for _ in 0..100 {
        if cmd::run(Some(ns), &format!("ip link show {link}")).is_ok() {
            return Ok(());
        }
        cmd::sleep(Duration::from_millis(50))?;
    }
    Err(SetupError::NotReady {
        what: format!("OVS port {link}"),
        detail: "the device never appeared".into(),
    })
}
