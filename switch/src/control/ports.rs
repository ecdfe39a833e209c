//! Ports and uplinks: `add-port`, `del-port`, `add-uplink`, `del-uplink`,
//! and opening their devices (here and at restore).
//!
//! A device is opened inside the change's transaction, after the edited
//! state has been validated and before it is saved: a device that cannot be
//! opened fails the request with nothing changed, and a device opened for a
//! change that then fails is closed again.

use std::net::Ipv4Addr;

use tracing::{info, warn};
use vswitch_ctl::{req, Ipv4Net, MacAddr, SubnetExt};

use super::config::{AfxdpConfig, BridgeConfig, PortConfig, PortKind, UplinkConfig, XdpChoice};
use super::validate::valid_name;
use super::{fnv1a, gateway_mac, ControlError, Manager, Txn};
use crate::port::afxdp::{AfXdpPort, Attachment};
use crate::port::tap::{self, TapPort, TapSpec};
use crate::port::{PortError, PortIo};
use crate::sys::bpf::{SharedFilter, XdpMode};
use crate::sys::{netlink, read_mac, valid_ifname};

/// Highest interface queue an AF_XDP port may bind.
const MAX_QUEUE: u32 = 255;

impl Manager {
    pub(super) fn add_port(&mut self, request: req::AddPort) -> Result<(), ControlError> {
        let bridge = request.bridge.clone();
        let config = self.port_config(request)?;
        let (name, kind) = (config.name.clone(), config.port_type);
        let (netns, ifname) = (config.netns.clone(), config.ifname.clone());
        self.commit(|txn| txn.add_port(&bridge, config))?;
        if kind == PortKind::Internal {
            route_uplink_via_internal(self.bridge(&bridge)?);
        }
        info!(port = %name, bridge = %bridge, %kind, ?netns, %ifname, "port added");
        Ok(())
    }

    /// Checks an `add-port` request's options and makes its configuration.
    /// What depends on the rest of the switch (names taken, interfaces in
    /// use) is checked with the whole state, in the transaction.
    pub(super) fn port_config(&self, request: req::AddPort) -> Result<PortConfig, ControlError> {
        let req::AddPort {
            may_exist: _,
            bridge,
            name,
            port_type,
            netns,
            ifname,
            mac,
            mode,
            queue,
            iface,
        } = request;
        let (kind, mode): (PortKind, Option<XdpChoice>) = (port_type.into(), mode.map(Into::into));
        if !valid_name(&name, libc::IFNAMSIZ - 1) {
            return Err(ControlError::BadPortName(name));
        }
        let br = self.bridge(&bridge)?;
        let afxdp = match kind {
            PortKind::Internal => {
                if br.subnet.is_none() {
                    return Err(ControlError::NoSubnet(bridge));
                }
                if let Some(other) = br.ports.iter().find(|p| p.port_type == PortKind::Internal) {
                    return Err(ControlError::InternalExists {
                        bridge: bridge.clone(),
                        port: other.name.clone(),
                    });
                }
                if netns.is_some()
                    || ifname.is_some()
                    || mac.is_some()
                    || mode.is_some()
                    || queue.is_some()
                    || iface.is_some()
                {
                    return Err(ControlError::Option(
                        "an internal port lives in the host namespace under its own name, with the gateway's MAC: it takes no options",
                    ));
                }
                None
            }
            PortKind::Tap => {
                if mode.is_some() || queue.is_some() || iface.is_some() {
                    return Err(ControlError::Option(
                        "--mode, --queue and --iface apply to afxdp ports only",
                    ));
                }
                None
            }
            PortKind::Afxdp => {
                if iface.is_some() && (netns.is_some() || ifname.is_some() || mac.is_some()) {
                    return Err(ControlError::Option(
                        "--iface binds to an existing interface; --netns, --ifname and --mac describe a veth pair vswitchd creates",
                    ));
                }
                if iface.is_none() && netns.is_none() {
                    return Err(ControlError::Option(
                        "an afxdp port needs --netns NS (vswitchd creates a veth pair into it) or --iface DEV (an existing interface)",
                    ));
                }
                let queue = queue.unwrap_or(0);
                if queue > MAX_QUEUE {
                    return Err(ControlError::OutOfRange {
                        what: "queue",
                        value: queue.into(),
                        min: 0,
                        max: MAX_QUEUE.into(),
                    });
                }
                Some(AfxdpConfig {
                    mode: mode.unwrap_or_default(),
                    queue,
                    iface: iface.clone(),
                })
            }
        };
        let ifname = iface.or(ifname).unwrap_or_else(|| name.clone());
        if !valid_ifname(&ifname) {
            return Err(ControlError::BadIfname(ifname));
        }
        // An internal port answers for the gateway: it wears the gateway's MAC.
        let mac = match kind {
            PortKind::Internal => Some(MacAddr(gateway_mac(&bridge))),
            _ => mac,
        };
        Ok(PortConfig {
            name,
            port_type: kind,
            netns,
            ifname,
            mac,
            afxdp,
            moves_to: None,
            allow_any_src: false,
        })
    }

    pub(super) fn del_port(&mut self, bridge: &str, name: &str) -> Result<(), ControlError> {
        self.bridge(bridge)?;
        match self.desired.port(name) {
            None => return Err(ControlError::NoPort(name.to_string())),
            Some((br, _)) if br.name != bridge => {
                return Err(ControlError::WrongBridge {
                    port: name.to_string(),
                    actual: br.name.clone(),
                    asked: bridge.to_string(),
                })
            }
            Some(_) => {}
        }
        self.commit(|txn| {
            txn.bridge_mut(bridge)?.ports.retain(|p| p.name != name);
            Ok(())
        })?;
        info!(port = %name, bridge = %bridge, "port deleted");
        Ok(())
    }

    pub(super) fn add_uplink(&mut self, request: req::AddUplink) -> Result<(), ControlError> {
        let req::AddUplink {
            may_exist: _,
            bridge,
            iface,
            ip,
            prefix,
            gw,
            port_type,
            mode,
            netns,
            shared,
            mac,
        } = request;
        let (kind, mode): (PortKind, XdpChoice) = (port_type.into(), mode.unwrap_or_default().into());
        let (br, _) = self.routed_bridge(&bridge)?;
        if let Some(u) = &br.uplink {
            return Err(ControlError::UplinkExists {
                bridge,
                iface: u.iface.clone(),
            });
        }
        if !valid_ifname(&iface) {
            return Err(ControlError::BadIfname(iface));
        }
        if !matches!(kind, PortKind::Afxdp | PortKind::Tap) {
            return Err(ControlError::UplinkType(kind));
        }
        if netns.is_some() && kind != PortKind::Tap {
            return Err(ControlError::Option(
                "--netns moves a TAP uplink; an afxdp uplink binds to an interface of vswitchd's namespace",
            ));
        }
        if shared && kind != PortKind::Afxdp {
            return Err(ControlError::Option(
                "--shared shares an afxdp uplink's interface with the host; a TAP is the uplink's alone",
            ));
        }
        if mac.is_some() && kind == PortKind::Afxdp && !shared {
            return Err(ControlError::Option(
                "--mac: an afxdp uplink that is not --shared has its interface's MAC",
            ));
        }
        if mac.is_some_and(|m| m.0[0] & 1 != 0 || m.0 == [0; 6]) {
            return Err(ControlError::Option("--mac must be a unicast, non-zero address"));
        }
        let valid = Ipv4Net::new(ip, prefix).is_ok_and(|n| n.is_host(ip) && n.is_host(gw) && ip != gw);
        if !valid {
            return Err(ControlError::BadUplinkAddress { ip, prefix, gw });
        }
        let cfg = UplinkConfig {
            iface: iface.clone(),
            port_type: kind,
            mode,
            ip,
            prefix,
            gw,
            // A shared interface's MAC stays the host's; the uplink gets
            // one of its own.
            mac: mac.or_else(|| shared.then(|| MacAddr(uplink_mac(&iface)))),
            netns,
            shared,
        };
        self.commit(|txn| {
            txn.bridge_mut(&bridge)?.uplink = Some(cfg.clone());
            txn.validate()?;
            let (io, mac) = open_uplink_io(&cfg)?;
            if let Some(up) = txn.bridge_mut(&bridge)?.uplink.as_mut() {
                up.mac = Some(mac);
            }
            txn.open(&cfg.iface, io);
            Ok(())
        })?;
        let name = bridge.clone();
        self.when_committed(move |m| {
            if let Ok(br) = m.bridge(&name) {
                route_uplink_via_internal(br);
            }
        });
        info!(bridge, iface = %iface, ip = %ip, gw = %gw, "uplink added");
        Ok(())
    }

    pub(super) fn del_uplink(&mut self, bridge: &str) -> Result<(), ControlError> {
        let Some(up) = self.bridge(bridge)?.uplink.clone() else {
            return Err(ControlError::NoUplink(bridge.to_string()));
        };
        let iface = up.iface;
        self.commit(|txn| {
            txn.bridge_mut(bridge)?.uplink = None;
            Ok(())
        })?;
        let (name, dev) = (bridge.to_string(), iface.clone());
        self.when_committed(move |m| {
            if up.port_type == PortKind::Tap {
                // It outlives vswitchd's descriptor, on purpose, until now.
                if let Err(err) = tap::delete_persistent(&dev, up.netns.as_deref()) {
                    warn!(bridge = %name, iface = %dev, error = ?err, "the TAP uplink's device is left behind");
                }
            }
            // What was learned on that link may not hold on the next one (a
            // new peer device has a new MAC).
            if let Some(live) = m.bridges.get(&name) {
                live.uplink_neigh.clear();
            }
        });
        info!(bridge, iface = %iface, "uplink deleted");
        Ok(())
    }
}

impl Txn {
    /// Adds port `config` to `bridge` and opens its device: an internal
    /// port also gets the gateway address.
    pub(super) fn add_port(&mut self, bridge: &str, config: PortConfig) -> Result<(), ControlError> {
        let br = self.bridge_mut(bridge)?;
        let gateway = br.subnet.zip(br.gateway);
        br.ports.push(config.clone());
        self.validate()?;
        let (io, mac) = open_port_io(&config, false).map_err(|source| ControlError::CreatePort {
            port: config.name.clone(),
            source,
        })?;
        if let Some(p) = self.bridge_mut(bridge)?.ports.last_mut() {
            p.mac = mac;
        }
        if let (PortKind::Internal, Some((subnet, gateway))) = (config.port_type, gateway) {
            configure_internal(&config.ifname, gateway, subnet.prefix_len()).map_err(ControlError::InternalAddress)?;
        }
        self.open(&config.name, io);
        Ok(())
    }
}

/// The XDP modes to try, in order, for what the user asked.
fn xdp_modes(choice: XdpChoice) -> &'static [XdpMode] {
    match choice {
        XdpChoice::Auto => &[XdpMode::Native, XdpMode::Generic],
        XdpChoice::Native => &[XdpMode::Native],
        XdpChoice::Generic => &[XdpMode::Generic],
    }
}

/// Opens the device of a configured port. `restoring`: the port existed
/// before this start-up, so a veth pair left by the previous run is taken
/// over instead of refused. Returns the device and its MAC, when it has one
/// of ours.
pub(super) fn open_port_io(
    port: &PortConfig,
    restoring: bool,
) -> Result<(Box<dyn PortIo>, Option<MacAddr>), PortError> {
    match (port.port_type, &port.afxdp) {
        (PortKind::Tap | PortKind::Internal, _) => {
            let netns = match port.port_type {
                PortKind::Tap => port.netns.as_deref(),
                _ => None,
            };
            let spec = TapSpec {
                ifname: &port.ifname,
                netns,
                mac: port.mac,
                tunnel_gso: false,
                persist: false,
            };
            let (tap, mac) = TapPort::create(spec)?;
            Ok((Box::new(tap), Some(mac)))
        }
        (PortKind::Afxdp, Some(cfg)) => {
            let modes = xdp_modes(cfg.mode);
            let at = match (&cfg.iface, &port.netns) {
                (Some(iface), _) => Attachment::Iface(iface),
                (None, Some(netns)) => Attachment::Veth {
                    host: &port.name,
                    netns: Some(netns),
                    ifname: &port.ifname,
                    mac: port.mac,
                    adopt: restoring,
                },
                // Left for a runtime to move (not seen moved yet).
                (None, None) if port.moves_to.is_some() => Attachment::Veth {
                    host: &port.name,
                    netns: None,
                    ifname: &port.ifname,
                    mac: port.mac,
                    adopt: restoring,
                },
                (None, None) => return Err(PortError::Incomplete(port.name.clone())),
            };
            let (xsk, mac) = AfXdpPort::open(at, cfg.queue, modes)?;
            Ok((Box::new(xsk), mac))
        }
        (PortKind::Afxdp, None) => Err(PortError::Incomplete(port.name.clone())),
    }
}

/// Opens an uplink's device; returns it and the MAC frames to it must carry.
pub(super) fn open_uplink_io(cfg: &UplinkConfig) -> Result<(Box<dyn PortIo>, MacAddr), ControlError> {
    let create = |source| ControlError::CreatePort {
        port: cfg.iface.clone(),
        source,
    };
    match cfg.port_type {
        PortKind::Afxdp => {
            let at = match cfg.mac.filter(|_| cfg.shared) {
                Some(mac) => Attachment::Shared {
                    iface: &cfg.iface,
                    filter: SharedFilter { mac: mac.0, ip: cfg.ip },
                },
                None => Attachment::Iface(&cfg.iface),
            };
            let (port, _) = AfXdpPort::open(at, 0, xdp_modes(cfg.mode)).map_err(|e| create(e.into()))?;
            if port.mode() == XdpMode::Generic {
                // The stack's XDP sees a TSO peer's super-frames whole; they
                // do not fit a UMEM chunk and the kernel drops them.
                warn!(
                    iface = %cfg.iface,
                    "uplink in generic XDP mode: frames larger than the MTU (a peer's TSO) are dropped by the kernel \
                     (xsk-rx-dropped in port-stats); native mode does not have this limit"
                );
            }
            if let Some(mac) = cfg.mac.filter(|_| cfg.shared) {
                return Ok((Box::new(port), mac));
            }
            let mac = read_mac(&cfg.iface).map_err(|source| {
                create(PortError::Mac {
                    iface: cfg.iface.clone(),
                    source,
                })
            })?;
            Ok((Box::new(port), mac))
        }
        PortKind::Tap => {
            // The kernel's side of the TAP has a MAC of its own; vswitchd's
            // side (the uplink's frames) another, kept in the state.
            let spec = TapSpec {
                ifname: &cfg.iface,
                netns: cfg.netns.as_deref(),
                mac: None,
                tunnel_gso: true,
                persist: true,
            };
            let (tap, _) = TapPort::create(spec).map_err(|e| create(e.into()))?;
            Ok((
                Box::new(tap),
                cfg.mac.unwrap_or_else(|| MacAddr(uplink_mac(&cfg.iface))),
            ))
        }
        PortKind::Internal => Err(ControlError::UplinkType(cfg.port_type)),
    }
}

/// vswitchd's MAC on a TAP or shared uplink: locally administered, 02:76:74 and three
/// bytes of a hash of the interface name (stable across restarts).
fn uplink_mac(iface: &str) -> [u8; 6] {
    let h = fnv1a(iface.as_bytes());
    [0x02, 0x76, 0x74, (h >> 16) as u8, (h >> 8) as u8, h as u8]
}

/// Routes a bridge's uplink address through its internal port, so the host
/// reaches the ports published there.
pub(super) fn route_uplink_via_internal(br: &BridgeConfig) {
    let Some(up) = &br.uplink else { return };
    let Some(internal) = br.ports.iter().find(|p| p.port_type == PortKind::Internal) else {
        return;
    };
    let result = nix::net::if_::if_nametoindex(internal.ifname.as_str())
        .map_err(std::io::Error::from)
        .and_then(|index| netlink::set_host_route(index, up.ip));
    if let Err(err) = result {
        warn!(bridge = %br.name, uplink = %up.ip, %err, "host route to the uplink address not set");
    }
}

/// Gives an internal port the gateway address in the host namespace.
pub(super) fn configure_internal(ifname: &str, gateway: Ipv4Addr, prefix: u8) -> std::io::Result<()> {
    let index = nix::net::if_::if_nametoindex(ifname).map_err(std::io::Error::from)?;
    netlink::add_address(index, gateway, prefix)
}
