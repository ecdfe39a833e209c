//! Open vSwitch's userspace datapath (datapath_type=netdev): ovsdb-server
//! and ovs-vswitchd of the run's own in a namespace, OpenFlow rules for the
//! gateway, routing and conntrack NAT, its native tunnel for `overlay`.

use std::time::Duration;

use super::*;

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

pub(super) fn build(scenario: Scenario, port: PortKind, lab: &mut Lab, opts: &Opts) -> Result<Path, SetupError> {
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
        outside(&x, tap)?;
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
