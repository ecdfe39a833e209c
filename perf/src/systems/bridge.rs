//! The Docker model: a "host" namespace with Linux bridges, veth pairs,
//! br_netfilter and Docker 28's iptables ruleset; for `overlay`, flannel's
//! data path (a vxlan device on the bridge).

use super::*;

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

pub(super) fn build(scenario: Scenario, lab: &mut Lab) -> Result<Path, SetupError> {
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
            outside(&x, "eth0")?;
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
    Ok(veth_path(scenario, &c1, &peer))
}
