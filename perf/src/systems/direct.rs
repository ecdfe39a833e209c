//! The physical floor: the scenario's two namespaces joined by one veth
//! pair, nothing between them (no switch, no NAT: the client dials the
//! server's own address and port). What the best data path this machine
//! offers costs, measured in the same run as the systems.

use super::*;

pub(super) fn build(scenario: Scenario, lab: &mut Lab) -> Result<Path, SetupError> {
    let c1 = lab.netns("c1")?;
    let peer = lab.netns(match scenario {
        Scenario::NatOut | Scenario::NatIn => "x",
        Scenario::Overlay => "r",
        Scenario::L2 | Scenario::Routed => "c2",
    })?;
    lab.veth(Some(&c1), "eth0", &peer, "eth0", None)?;
    let (peer_net, peer_host) = peer_of(scenario);
    let (c1_ip, peer_ip) = (ip(NET_A, 2), ip(peer_net, peer_host));
    for (ns, addr, other) in [(&c1, c1_ip, peer_net), (&peer, peer_ip, NET_A)] {
        let ns = Some(ns.as_str());
        cmd::run(ns, &format!("ip addr add {addr}/24 dev eth0"))?;
        cmd::run(ns, "ip link set eth0 up")?;
        if peer_net != NET_A {
            // Two networks on one wire: each reaches the other's on-link.
            cmd::run(ns, &format!("ip route add {} dev eth0", cidr(other)))?;
        }
    }
    let mut path = path_for(scenario, &c1, "eth0", &peer, "eth0", peer_ip);
    path.target = path.server_addr;
    path.tcp_ports = (path.tcp_ports.0, path.tcp_ports.0);
    path.rr_ports = (path.rr_ports.0, path.rr_ports.0);
    Ok(path)
}
