//! `attach` and `detach`: a namespace joins a network with an address.
//!
//! One transaction each: attach creates the port, gives the interface its
//! leased address and a default route via the gateway (netlink, from inside
//! the namespace), and records the lease; if any of it fails, the device is
//! closed and nothing is recorded. Leases are part of the saved state: a
//! namespace attached again gets its address back.
//!
//! A runtime that moves and configures the interface itself (Docker's
//! remote driver: Join names a device of the host namespace) asks for a
//! *handoff*: the device is made in vswitchd's namespace, nothing is
//! configured, and the lease says where it is going. [`Manager::settle_moves`]
//! notices when it got there, so that a restart recreates it in the right
//! place.

use std::net::Ipv4Addr;

use tracing::info;
use vswitch_ctl::{req, AttachInfo, SubnetExt};
use vswitch_vxlan::OVERHEAD;

use super::config::{DesiredState, Lease};
use super::ipam::{lease_mac, next_free};
use super::{fnv1a, ControlError, Manager};
use crate::sys::netlink::{self, LinkChange};
use crate::sys::netns::{self, NetnsError};
use crate::sys::read_mtu;

/// The interface an attached namespace gets unless told otherwise.
const DEFAULT_IFNAME: &str = "eth0";

impl Manager {
    pub(super) fn attach(&mut self, request: req::Attach) -> Result<AttachInfo, ControlError> {
        let req::Attach {
            bridge,
            netns,
            port_type,
            ip,
            ifname,
            mac,
            owner,
            handoff,
            default_route,
            allow_any_src,
            name,
            namespace,
            labels,
        } = request;
        let default_route = default_route.unwrap_or(true);
        let (br, subnet) = self.routed_bridge(&bridge)?;
        let Some(gateway) = br.gateway else {
            return Err(ControlError::NoSubnet(bridge));
        };
        // A runtime may make the namespace after the device (dockerd does).
        if !handoff {
            netns::open_netns(&netns).map_err(ControlError::Address)?;
        }
        let lease = br.leases.iter().find(|l| l.netns == netns).cloned();
        if let Some(lease) = &lease {
            if br.ports.iter().any(|p| p.name == lease.port) {
                return Err(ControlError::AlreadyAttached {
                    netns,
                    bridge,
                    port: lease.port.clone(),
                });
            }
        }
        let ip = match (ip, &lease) {
            (Some(ip), Some(l)) if ip != l.ip => {
                return Err(ControlError::LeaseMismatch {
                    netns,
                    ip: l.ip,
                    bridge,
                })
            }
            (_, Some(l)) => l.ip,
            (Some(ip), None) => {
                if !subnet.is_host(ip) || ip == gateway {
                    return Err(ControlError::BadAddress { ip, subnet, gateway });
                }
                ip
            }
            (None, None) => next_free(subnet, br.ip_range, gateway, &br.leases)
                .ok_or(ControlError::SubnetFull(br.ip_range.unwrap_or(subnet)))?,
        };
        let port = match &lease {
            Some(l) => l.port.clone(),
            None => self.attach_port_name(&bridge, &netns),
        };
        let ifname = match (ifname, handoff) {
            (Some(name), _) => name,
            (None, true) => port.clone(),
            (None, false) => DEFAULT_IFNAME.to_string(),
        };
        let mut config = self.port_config(req::AddPort {
            may_exist: false,
            bridge: bridge.clone(),
            name: port.clone(),
            port_type,
            netns: Some(netns.clone()),
            ifname: Some(ifname.clone()),
            mac: Some(mac.unwrap_or_else(|| lease_mac(ip))),
            mode: None,
            queue: None,
            iface: None,
        })?;
        if handoff {
            config.moves_to = config.netns.take();
        }
        config.allow_any_src = allow_any_src;
        let mtu = overlay_mtu(&self.desired, &bridge);
        let owner = owner.or_else(|| lease.as_ref().and_then(|l| l.owner.clone()));
        // Who policies see: as asked, else as the lease was.
        let name = name.or_else(|| lease.as_ref().and_then(|l| l.name.clone()));
        let namespace = namespace.or_else(|| lease.as_ref().and_then(|l| l.namespace.clone()));
        let labels = match (labels.is_empty(), &lease) {
            (true, Some(l)) => l.labels.clone(),
            _ => labels,
        };
        let identity = Lease {
            ip,
            netns: netns.clone(),
            port: port.clone(),
            owner: owner.clone(),
            no_default_route: !default_route,
            name,
            namespace,
            labels,
        };
        super::policy::check_identity(&self.desired, &identity)?;
        self.commit(|txn| {
            let leases = &mut txn.bridge_mut(&bridge)?.leases;
            leases.retain(|l| l.netns != netns);
            leases.push(identity);
            // Validates the lease with the port, before the device exists.
            txn.add_port(&bridge, config)?;
            if handoff {
                return Ok(());
            }
            let route = default_route.then_some(gateway);
            configure_address(&netns, &ifname, ip, subnet.prefix_len(), route, mtu).map_err(ControlError::Address)
        })?;
        let mac = self.desired.port(&port).and_then(|(_, p)| p.mac);
        info!(bridge = %bridge, netns = %netns, %ip, port = %port, handoff, "namespace attached");
        Ok(AttachInfo {
            port,
            ip,
            prefix: subnet.prefix_len(),
            gateway,
            ifname,
            mac,
        })
    }

    /// A port name for an attached namespace: short enough for an interface
    /// of the host namespace (AF_XDP names its veth after it), unique.
    fn attach_port_name(&self, bridge: &str, netns: &str) -> String {
        let base = fnv1a(format!("{bridge}/{netns}").as_bytes());
        (0u32..)
            .map(|n| format!("vsa{:08x}", base.wrapping_add(n)))
            .find(|name| {
                self.desired.port(name).is_none()
                    && !self
                        .desired
                        .bridges
                        .iter()
                        .any(|b| b.leases.iter().any(|l| &l.port == name))
            })
            .unwrap_or_else(|| format!("vsa{base:08x}"))
    }

    /// Removes the namespace's port, releases its address and forgets its
    /// connections.
    pub(super) fn detach(&mut self, bridge: &str, netns: &str) -> Result<(), ControlError> {
        let Some(lease) = self.bridge(bridge)?.leases.iter().find(|l| l.netns == netns).cloned() else {
            return Err(ControlError::NotAttached {
                netns: netns.to_string(),
                bridge: bridge.to_string(),
            });
        };
        let zone = self.zone(bridge)?;
        self.commit(|txn| {
            let br = txn.bridge_mut(bridge)?;
            br.ports.retain(|p| p.name != lease.port);
            br.leases.retain(|l| l.netns != netns);
            // A published port must not lead to whoever gets the address next.
            br.published.retain(|r| r.to_ip != lease.ip);
            Ok(())
        })?;
        // A container that comes back must not meet its old connections
        // (stale UDP entries are a known pain of the kernel model).
        let ip = lease.ip;
        self.when_committed(move |m| {
            m.ct.flush(|c| c.orig.zone == zone && (c.orig.src == ip || c.reply.src == ip));
        });
        info!(bridge = %bridge, netns = %netns, ip = %lease.ip, "namespace detached");
        Ok(())
    }
}

/// The largest TCP super-frame a container on an overlay bridge may send:
/// with 50 bytes of outer headers and its own Ethernet header it still fits
/// one IPv4 packet (65535), so the underlay can carry it whole.
const OVERLAY_GSO_MAX_SIZE: u32 = 65_000;

/// The MTU of a container on bridge `name` when it is stretched over a
/// tunnel: the underlay's less the 50 bytes of outer headers.
pub(super) fn overlay_mtu(desired: &DesiredState, name: &str) -> Option<u32> {
    let underlay = desired.bridge(name)?.underlay()?;
    let up = desired.bridge(underlay)?.uplink.as_ref()?;
    let mtu = read_mtu(up.netns.as_deref(), &up.iface).ok()?;
    // The container's MTU counts from its IP header: the whole overhead goes.
    u32::try_from(mtu.checked_sub(OVERHEAD)?).ok()
}

/// Puts `ip/prefix` on `ifname` in `netns`, with a default route via
/// `gateway` when one is given (and the MTU, when one is given), through
/// netlink from inside the namespace.
pub(super) fn configure_address(
    netns: &str,
    ifname: &str,
    ip: Ipv4Addr,
    prefix: u8,
    gateway: Option<Ipv4Addr>,
    mtu: Option<u32>,
) -> Result<(), NetnsError> {
    netns::run_in(netns, || {
        let index = nix::net::if_::if_nametoindex(ifname).map_err(std::io::Error::from)?;
        if let Some(mtu) = mtu {
            // Super-frames must fit one IPv4 packet with the outer headers.
            let change = LinkChange {
                index: index as i32,
                mtu: Some(mtu),
                gso_max_size: Some(OVERLAY_GSO_MAX_SIZE),
                ..Default::default()
            };
            netlink::set_link(&change)?;
        }
        netlink::add_address(index, ip, prefix)?;
        match gateway {
            Some(gw) => netlink::set_default_route(index, gw),
            None => Ok(()),
        }
    })
}
