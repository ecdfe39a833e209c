//! The rules every desired state keeps, checked on every change before it
//! is saved (`Manager::commit`), so no request can break them whatever its
//! own checks miss: names unique (bridges; ports and uplinks share one
//! namespace of names), interfaces unique where they live, subnets apart
//! from each other and from uplink networks, links only between routed
//! bridges, one rule per published port, one lease per address.

use hashbrown::{HashMap, HashSet};
use std::net::Ipv4Addr;

use vswitch_ctl::Ipv4Net;

use super::config::{DesiredState, L4Proto};
use crate::sys::netns;

/// A rule every desired state keeps, broken. Checked on every change
/// before it is saved (`DesiredState::validate`); the texts are the ones
/// vsctl shows.
#[derive(Debug, thiserror::Error)]
pub enum Invalid {
    #[error("bridge '{0}' already exists")]
    BridgeExists(String),
    #[error("port '{port}' already exists on bridge '{bridge}'")]
    PortExists { port: String, bridge: String },
    #[error("'{0}' is already the name of a port or an uplink")]
    NameTaken(String),
    #[error("interface '{ifname}' in {place} is already port '{port}'")]
    IfnameTaken {
        ifname: String,
        place: String,
        port: String,
    },
    #[error("subnet {new} of bridge '{bridge}' overlaps {existing} of bridge '{other}'")]
    SubnetOverlap {
        bridge: String,
        new: Ipv4Net,
        other: String,
        existing: Ipv4Net,
    },
    #[error("uplink network {new} of bridge '{bridge}' overlaps subnet {existing} of bridge '{other}'")]
    UplinkOverlap {
        bridge: String,
        new: Ipv4Net,
        other: String,
        existing: Ipv4Net,
    },
    #[error("port {proto}/{port} is already published on bridge '{bridge}'")]
    AlreadyPublished { bridge: String, proto: L4Proto, port: u16 },
    #[error("bridge '{bridge}' leaves through bridge '{via}', which is not a routed bridge of its own way out (it must exist, have a subnet and no --uplink-via; del-br the bridges that leave through it first)")]
    BadUplinkVia { bridge: String, via: String },
    #[error("bridge '{0}' leaves through another bridge's uplink: it cannot have one of its own")]
    UplinkAndVia(String),
    #[error("{ip} is already leased to network namespace '{netns}'")]
    AddressTaken { ip: Ipv4Addr, netns: String },
    #[error("bridges '{a}' and '{b}' are linked but one of them has no subnet")]
    BadLink { a: String, b: String },
    #[error("the tunnel of bridge '{bridge}' needs the uplink of bridge '{underlay}' (add-uplink first; del-vxlan before removing it)")]
    NoUnderlay { bridge: String, underlay: String },
    #[error("VNI {vni} on port {port} of the uplink of bridge '{underlay}' is already the tunnel of bridge '{other}'")]
    VniTaken {
        vni: u32,
        port: u16,
        underlay: String,
        other: String,
    },
}

/// Names of bridges and ports: letters, digits, '.', '-', '_'.
pub(super) fn valid_name(name: &str, max_len: usize) -> bool {
    !name.is_empty() && name.len() <= max_len && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Two networks share addresses.
pub fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(b) || b.contains(a)
}

impl DesiredState {
    /// Checks the rules that hold across requests: names unique (bridges;
    /// ports and uplinks share one namespace of names), interfaces unique
    /// where they live, subnets and uplink networks apart, links between
    /// routed bridges, one rule per published port, one lease per address.
    /// What was added last is named as the offender.
    pub fn validate(&self) -> Result<(), Invalid> {
        // Sized up front: every change validates the whole state, and with
        // thousands of ports growing the maps was a good part of it.
        let ports: usize = self.bridges.iter().map(|b| b.ports.len() + 1).sum();
        let mut bridges = HashSet::with_capacity(self.bridges.len());
        // Port and uplink names: name -> (bridge, is a port).
        let mut names: HashMap<&str, (&str, bool)> = HashMap::with_capacity(ports);
        // Interfaces: (namespace, name) -> the port that owns it.
        let mut ifaces: HashMap<(Option<&str>, &str), &str> = HashMap::with_capacity(2 * ports);
        // Subnets seen so far, with their bridge.
        let mut subnets: Vec<(Ipv4Net, &str)> = Vec::new();
        for br in &self.bridges {
            if !bridges.insert(br.name.as_str()) {
                return Err(Invalid::BridgeExists(br.name.clone()));
            }
            let uplink = br.uplink.as_ref().map(|u| (u.iface.as_str(), false));
            for (name, is_port) in br.ports.iter().map(|p| (p.name.as_str(), true)).chain(uplink) {
                match names.insert(name, (&br.name, is_port)) {
                    Some((bridge, true)) if is_port => {
                        return Err(Invalid::PortExists {
                            port: name.to_string(),
                            bridge: bridge.to_string(),
                        })
                    }
                    Some(_) => return Err(Invalid::NameTaken(name.to_string())),
                    None => {}
                }
            }
            for p in &br.ports {
                // A veth's host end is named after its port.
                let host_end = p.afxdp.as_ref().is_some_and(|a| a.iface.is_none());
                let own = (p.netns.as_deref(), p.ifname.as_str());
                let extra = host_end.then_some((None, p.name.as_str())).filter(|e| *e != own);
                for key in std::iter::once(own).chain(extra) {
                    if let Some(other) = ifaces.insert(key, &p.name) {
                        return Err(Invalid::IfnameTaken {
                            ifname: key.1.to_string(),
                            place: netns::place(key.0),
                            port: other.to_string(),
                        });
                    }
                }
            }
            if let Some(net) = br.subnet {
                if let Some((existing, other)) = subnets.iter().find(|(n, _)| overlaps(n, &net)) {
                    return Err(Invalid::SubnetOverlap {
                        bridge: br.name.clone(),
                        new: net,
                        other: other.to_string(),
                        existing: *existing,
                    });
                }
                subnets.push((net, &br.name));
            }
            if let Some(via) = &br.uplink_via {
                let ok = self
                    .bridge(via)
                    .is_some_and(|v| v.subnet.is_some() && v.uplink_via.is_none() && v.name != br.name);
                if !ok || br.subnet.is_none() {
                    return Err(Invalid::BadUplinkVia {
                        bridge: br.name.clone(),
                        via: via.clone(),
                    });
                }
                if br.uplink.is_some() {
                    return Err(Invalid::UplinkAndVia(br.name.clone()));
                }
            }
            let mut leased: HashMap<Ipv4Addr, &str> = HashMap::with_capacity(br.leases.len());
            for l in &br.leases {
                if let Some(netns) = leased.insert(l.ip, &l.netns) {
                    return Err(Invalid::AddressTaken {
                        ip: l.ip,
                        netns: netns.to_string(),
                    });
                }
            }
        }
        // One rule per published port of an uplink address: the bridges
        // that leave through one uplink publish on one address.
        let rules = self.bridges.iter().map(|b| b.published.len()).sum();
        let mut published: HashMap<(&str, L4Proto, u16), &str> = HashMap::with_capacity(rules);
        for br in &self.bridges {
            for r in &br.published {
                if let Some(other) = published.insert((br.way_out(), r.proto, r.port), &br.name) {
                    return Err(Invalid::AlreadyPublished {
                        bridge: other.to_string(),
                        proto: r.proto,
                        port: r.port,
                    });
                }
            }
        }
        // An uplink's network is outside every bridge; uplinks may share one.
        for br in &self.bridges {
            let Some(net) = br
                .uplink
                .as_ref()
                .and_then(|u| Ipv4Net::new(u.ip, u.prefix).ok().map(|n| n.trunc()))
            else {
                continue;
            };
            if let Some((existing, other)) = subnets.iter().find(|(n, _)| overlaps(n, &net)) {
                return Err(Invalid::UplinkOverlap {
                    bridge: br.name.clone(),
                    new: net,
                    other: other.to_string(),
                    existing: *existing,
                });
            }
        }
        // Tunnels: over an uplink that exists; one bridge per (uplink, port, VNI).
        let mut tunnels: HashMap<(&str, u16, u32), &str> = HashMap::new();
        for br in &self.bridges {
            let (Some(t), Some(underlay)) = (&br.vxlan, br.underlay()) else {
                continue;
            };
            if self.bridge(underlay).is_none_or(|u| u.uplink.is_none()) {
                return Err(Invalid::NoUnderlay {
                    bridge: br.name.clone(),
                    underlay: underlay.to_string(),
                });
            }
            if let Some(other) = tunnels.insert((underlay, t.port, t.vni), &br.name) {
                return Err(Invalid::VniTaken {
                    vni: t.vni,
                    port: t.port,
                    underlay: underlay.to_string(),
                    other: other.to_string(),
                });
            }
        }
        for (a, b) in &self.links {
            let routed = |name: &str| self.bridge(name).is_some_and(|br| br.subnet.is_some());
            if !routed(a) || !routed(b) || a == b {
                return Err(Invalid::BadLink {
                    a: a.clone(),
                    b: b.clone(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::config::tests::sample;
    use crate::control::config::{AfxdpConfig, PortConfig, PortKind, XdpChoice};

    fn port(name: &str, netns: Option<&str>, ifname: &str, afxdp: bool) -> PortConfig {
        PortConfig {
            name: name.into(),
            port_type: if afxdp { PortKind::Afxdp } else { PortKind::Tap },
            netns: netns.map(Into::into),
            ifname: ifname.into(),
            mac: None,
            afxdp: afxdp.then_some(AfxdpConfig {
                mode: XdpChoice::Auto,
                queue: 0,
                iface: None,
            }),
            moves_to: None,
            allow_any_src: false,
        }
    }

    /// The sample without its link to a bridge it does not have.
    fn valid_sample() -> DesiredState {
        DesiredState {
            links: Vec::new(),
            ..sample()
        }
    }

    #[test]
    fn validation_names_the_offender() {
        assert!(matches!(sample().validate(), Err(Invalid::BadLink { .. })));
        valid_sample().validate().unwrap();
        let broken = |f: &dyn Fn(&mut DesiredState)| {
            let mut s = valid_sample();
            f(&mut s);
            s.validate().unwrap_err().to_string()
        };
        assert_eq!(
            broken(&|s| s.bridges[0].ports.push(port("p1", Some("c2"), "eth0", false))),
            "port 'p1' already exists on bridge 'br0'"
        );
        assert_eq!(
            broken(&|s| s.bridges[0].ports.push(port("up0", Some("c2"), "eth0", false))),
            "'up0' is already the name of a port or an uplink"
        );
        assert_eq!(
            broken(&|s| s.bridges[0].ports.push(port("p2", Some("c1"), "eth0", false))),
            "interface 'eth0' in network namespace 'c1' is already port 'p1'"
        );
        // An AF_XDP port's veth has a host end named after the port.
        assert_eq!(
            broken(&|s| {
                s.bridges[0].ports.push(port("vx", Some("c3"), "eth0", true));
                s.bridges[0].ports.push(port("p3", None, "vx", false));
            }),
            "interface 'vx' in the host namespace is already port 'vx'"
        );
        assert_eq!(
            broken(&|s| s.bridges[0].uplink.as_mut().unwrap().ip = "10.20.0.200".parse().unwrap()),
            "uplink network 10.20.0.0/24 of bridge 'br0' overlaps subnet 10.20.0.0/24 of bridge 'br0'"
        );
        assert_eq!(
            broken(&|s| s.links.push(("br0".into(), "gone".into()))),
            "bridges 'br0' and 'gone' are linked but one of them has no subnet"
        );
        assert_eq!(
            broken(&|s| {
                let mut twin = s.bridges[0].leases[0].clone();
                twin.netns = "c9".into();
                s.bridges[0].leases.push(twin);
            }),
            "10.20.0.2 is already leased to network namespace 'c1'"
        );
        // Two bridges may leave through uplinks on one outside network.
        let mut shared = valid_sample();
        let mut other = shared.bridges[0].clone();
        other.name = "br1".into();
        other.subnet = Some("10.21.0.0/24".parse().unwrap());
        other.ports.clear();
        other.leases.clear();
        other.uplink.as_mut().unwrap().iface = "up1".into();
        shared.bridges.push(other);
        shared.validate().unwrap();
    }
}
