//! From what the cluster says to the control requests that make this host
//! match it. Pure: the agent feeds it `vsctl show`'s bridges and applies
//! what it returns, so every decision here is unit-tested without etcd.
//!
//! The overlay is layer 2: a network is one bridge per host with the whole
//! subnet, stretched over VXLAN to every other host holding a slice (head-end
//! replication, remote MACs learned from what arrives). Each host hands out
//! addresses from its own slice and is the gateway at the slice's first
//! address, so no two hosts answer for the same gateway address.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use vswitch_ctl::{req, BridgeInfo, Ipv4Net, Request};

use crate::model::{slice_gateway, NetworkDef};

/// What this host should have for one network.
#[derive(Clone, Debug)]
pub struct Want<'a> {
    pub name: &'a str,
    pub def: &'a NetworkDef,
    pub slice: Ipv4Net,
    /// The bridge whose uplink carries the tunnel.
    pub underlay: &'a str,
    pub remotes: &'a BTreeSet<Ipv4Addr>,
}

/// Why the agent leaves a network alone on this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Conflict {
    /// A bridge of the network's name that the cluster did not make.
    NotOurs,
    /// Our bridge serves another subnet or slice and still has containers.
    Rehome {
        subnet: Option<Ipv4Net>,
        range: Option<Ipv4Net>,
    },
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Conflict::NotOurs => f.write_str("a local bridge of this name exists that the cluster did not create"),
            Conflict::Rehome { subnet, range } => write!(
                f,
                "the local bridge serves {} (range {}) and has containers: detach them to move it to the cluster's slice",
                show(subnet),
                show(range)
            ),
        }
    }
}

fn show(net: &Option<Ipv4Net>) -> String {
    net.map_or_else(|| "none".to_string(), |n| n.to_string())
}

/// The requests that turn `have` (this host's bridge of the network's
/// name, if any; `ours` when the cluster made it) into `want`.
pub fn plan(want: &Want, have: Option<&BridgeInfo>, ours: bool) -> Result<Vec<Request>, Conflict> {
    let mut out = Vec::new();
    let Some(have) = have else {
        out.push(add_br(want));
        out.push(add_vxlan(want));
        return Ok(out);
    };
    if !ours {
        return Err(Conflict::NotOurs);
    }
    let gateway = slice_gateway(&want.slice);
    if have.subnet != Some(want.def.subnet) || have.ip_range != Some(want.slice) || have.gateway != Some(gateway) {
        if !have.leases.is_empty() {
            return Err(Conflict::Rehome {
                subnet: have.subnet,
                range: have.ip_range,
            });
        }
        out.push(Request::DelBr(req::DelBr {
            if_exists: false,
            name: want.name.to_string(),
        }));
        out.push(add_br(want));
        out.push(add_vxlan(want));
        return Ok(out);
    }
    match &have.tunnel {
        None => out.push(add_vxlan(want)),
        Some(t) if t.vni != want.def.vni || t.port != want.def.port || t.underlay != want.underlay => {
            out.push(Request::DelVxlan(req::DelVxlan {
                if_exists: false,
                bridge: want.name.to_string(),
            }));
            out.push(add_vxlan(want));
        }
        Some(t) => {
            let have: BTreeSet<Ipv4Addr> = t.remotes.iter().copied().collect();
            for ip in have.difference(want.remotes) {
                out.push(Request::DelVtep(req::DelVtep {
                    if_exists: false,
                    bridge: want.name.to_string(),
                    ip: *ip,
                }));
            }
            for ip in want.remotes.difference(&have) {
                out.push(Request::AddVtep(req::AddVtep {
                    bridge: want.name.to_string(),
                    ip: *ip,
                }));
            }
        }
    }
    Ok(out)
}

fn add_br(want: &Want) -> Request {
    Request::AddBr(req::AddBr {
        may_exist: false,
        name: want.name.to_string(),
        aging_secs: None,
        max_macs: None,
        subnet: Some(want.def.subnet),
        gateway: Some(slice_gateway(&want.slice)),
        ip_range: Some(want.slice),
        uplink_via: None,
        icc: None,
    })
}

fn add_vxlan(want: &Want) -> Request {
    Request::AddVxlan(req::AddVxlan {
        may_exist: false,
        bridge: want.name.to_string(),
        vni: want.def.vni,
        port: Some(want.def.port),
        underlay: Some(want.underlay.to_string()),
        remotes: want.remotes.iter().copied().collect(),
        learn: true,
        udp_csum: false,
    })
}

/// The bridge that carries the overlay: the one named with
/// `--cluster-underlay`, else the only bridge with an uplink that is not a
/// cluster network. Returns it with its uplink address, or why there is none.
pub fn pick_underlay<'a>(
    bridges: &'a [BridgeInfo],
    named: Option<&str>,
    is_cluster_bridge: impl Fn(&str) -> bool,
) -> Result<(&'a str, Ipv4Addr), String> {
    if let Some(name) = named {
        let bridge = bridges
            .iter()
            .find(|b| b.name == name)
            .ok_or_else(|| format!("the underlay bridge '{name}' does not exist yet"))?;
        let uplink = bridge
            .uplink
            .as_ref()
            .ok_or_else(|| format!("the underlay bridge '{name}' has no uplink yet"))?;
        return Ok((&bridge.name, uplink.ip));
    }
    let mut candidates = bridges
        .iter()
        .filter(|b| !is_cluster_bridge(&b.name))
        .filter_map(|b| b.uplink.as_ref().map(|u| (b.name.as_str(), u.ip)));
    match (candidates.next(), candidates.next()) {
        (Some(one), None) => Ok(one),
        (None, _) => Err("no bridge with an uplink to carry the overlay (vsctl add-uplink)".to_string()),
        (Some(_), Some(_)) => {
            Err("several bridges have an uplink: choose the underlay with --cluster-underlay".to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vswitch_ctl::{LeaseInfo, PortType, TunnelInfo, UplinkInfo};

    fn net(s: &str) -> Ipv4Net {
        s.parse().expect("test subnet")
    }

    fn def() -> NetworkDef {
        NetworkDef {
            subnet: net("10.200.0.0/16"),
            vni: 42,
            host_prefix: 24,
            port: 4789,
        }
    }

    fn bridge(name: &str) -> BridgeInfo {
        BridgeInfo {
            name: name.into(),
            aging_secs: 300,
            max_macs: 8192,
            learned_macs: 0,
            learn_limit_hits: 0,
            mac_moves: 0,
            ports: vec![],
            subnet: None,
            gateway: None,
            gateway_mac: None,
            ip_range: None,
            leases: vec![],
            linked: vec![],
            uplink_via: None,
            icc: true,
            uplink: None,
            masquerade: false,
            published: vec![],
            tunnel: None,
        }
    }

    fn ours(remotes: &[Ipv4Addr]) -> BridgeInfo {
        let mut b = bridge("blue");
        b.subnet = Some(net("10.200.0.0/16"));
        b.gateway = Some(Ipv4Addr::new(10, 200, 3, 1));
        b.ip_range = Some(net("10.200.3.0/24"));
        b.tunnel = Some(TunnelInfo {
            bridge: "blue".into(),
            vni: 42,
            port: 4789,
            underlay: "ul".into(),
            uplink: None,
            local_ip: None,
            remotes: remotes.to_vec(),
            learn: true,
            udp_csum: false,
            path: String::new(),
            static_macs: vec![],
            learned_macs: 0,
        });
        b
    }

    /// Network "blue" over underlay "ul" on `slice`.
    fn want<'a>(def: &'a NetworkDef, slice: &str, remotes: &'a BTreeSet<Ipv4Addr>) -> Want<'a> {
        Want {
            name: "blue",
            def,
            slice: net(slice),
            underlay: "ul",
            remotes,
        }
    }

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(192, 0, 2, last)
    }

    #[test]
    fn a_new_network_gets_a_bridge_on_the_slice_and_a_tunnel_to_every_remote() {
        let d = def();
        let remotes: BTreeSet<_> = [ip(12), ip(13)].into();
        let want = want(&d, "10.200.3.0/24", &remotes);
        let reqs = plan(&want, None, false).expect("plan");
        assert_eq!(reqs.len(), 2);
        assert!(matches!(
            &reqs[0],
            Request::AddBr(req::AddBr { name, subnet: Some(s), gateway: Some(g), ip_range: Some(r), .. })
                if name == "blue" && *s == d.subnet && *g == Ipv4Addr::new(10, 200, 3, 1) && *r == want.slice
        ));
        assert!(matches!(
            &reqs[1],
            Request::AddVxlan(v) if v.vni == 42 && v.underlay.as_deref() == Some("ul") && v.remotes == vec![ip(12), ip(13)]
        ));
    }

    #[test]
    fn remotes_are_diffed() {
        let d = def();
        let remotes: BTreeSet<_> = [ip(12), ip(14)].into();
        let want = want(&d, "10.200.3.0/24", &remotes);
        let have = ours(&[ip(12), ip(13)]);
        let reqs = plan(&want, Some(&have), true).expect("plan");
        assert_eq!(
            reqs,
            vec![
                Request::DelVtep(req::DelVtep {
                    if_exists: false,
                    bridge: "blue".into(),
                    ip: ip(13)
                }),
                Request::AddVtep(req::AddVtep {
                    bridge: "blue".into(),
                    ip: ip(14)
                }),
            ]
        );
        let same: BTreeSet<_> = [ip(12), ip(13)].into();
        let want = Want { remotes: &same, ..want };
        assert!(plan(&want, Some(&have), true).expect("plan").is_empty());
    }

    #[test]
    fn a_bridge_not_made_by_the_cluster_is_left_alone() {
        let d = def();
        let remotes = BTreeSet::new();
        let want = want(&d, "10.200.3.0/24", &remotes);
        assert_eq!(plan(&want, Some(&bridge("blue")), false), Err(Conflict::NotOurs));
    }

    #[test]
    fn a_moved_slice_rebuilds_an_empty_bridge_but_never_one_with_containers() {
        let d = def();
        let remotes = BTreeSet::new();
        let want = want(&d, "10.200.9.0/24", &remotes);
        let mut have = ours(&[]);
        let reqs = plan(&want, Some(&have), true).expect("plan");
        assert!(matches!(&reqs[0], Request::DelBr(_)));
        assert!(matches!(&reqs[1], Request::AddBr(req::AddBr { ip_range: Some(r), .. }) if *r == want.slice));
        have.leases.push(LeaseInfo {
            ip: Ipv4Addr::new(10, 200, 3, 2),
            netns: "c1".into(),
            port: "p".into(),
            owner: None,
        });
        assert!(matches!(plan(&want, Some(&have), true), Err(Conflict::Rehome { .. })));
    }

    #[test]
    fn a_changed_vni_replaces_the_tunnel() {
        let mut d = def();
        d.vni = 43;
        let remotes = BTreeSet::new();
        let want = want(&d, "10.200.3.0/24", &remotes);
        let reqs = plan(&want, Some(&ours(&[])), true).expect("plan");
        assert!(matches!(&reqs[0], Request::DelVxlan(_)));
        assert!(matches!(&reqs[1], Request::AddVxlan(v) if v.vni == 43));
    }

    #[test]
    fn the_underlay_is_the_one_uplink_or_the_named_one() {
        let uplink = |last| UplinkInfo {
            iface: "u".into(),
            port_type: PortType::Tap,
            ip: ip(last),
            prefix: 24,
            gw: ip(1),
            mac: None,
            state: "up".into(),
            detail: None,
            netns: None,
            shared: false,
        };
        let mut ul = bridge("ul");
        ul.uplink = Some(uplink(11));
        let mut blue = bridge("blue");
        blue.uplink = Some(uplink(99));
        let bridges = vec![ul.clone(), blue, bridge("other")];
        let cluster = |n: &str| n == "blue";
        assert_eq!(pick_underlay(&bridges, None, cluster), Ok(("ul", ip(11))));
        assert_eq!(pick_underlay(&bridges, Some("ul"), cluster), Ok(("ul", ip(11))));
        assert!(pick_underlay(&bridges, Some("other"), cluster)
            .unwrap_err()
            .contains("no uplink"));
        assert!(pick_underlay(&[], None, cluster).unwrap_err().contains("no bridge"));
        let mut second = bridge("ul2");
        second.uplink = Some(uplink(21));
        assert!(pick_underlay(&[ul, second], None, cluster)
            .unwrap_err()
            .contains("--cluster-underlay"));
    }
}
