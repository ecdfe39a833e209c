//! Published ports (`-p`): ProgramExternalConnectivity publishes an
//! endpoint's bindings on the way out's uplink address (vswitchd's NAT)
//! and on the host (a proxy per port); RevokeExternalConnectivity, Leave
//! and DeleteEndpoint take them back.

use std::net::{Ipv4Addr, SocketAddrV4};

use serde_json::{json, Value};
use tracing::{info, warn};
use vswitch_ctl::client::ClientError;
use vswitch_ctl::{req, PublishRule, Reply, Request};

use super::{short, Driver, DriverError};
use crate::api::{self, ExternalConnectivity, PortBinding};
use crate::options;
use crate::proxy::Proxy;
use crate::state::{Endpoint, Network, Published};

/// Where Docker's automatic host ports come from (its own default range).
const EPHEMERAL: (u16, u16) = (49153, 60999);

impl Driver {
    pub(super) fn program(&mut self, req: ExternalConnectivity) -> Result<Value, DriverError> {
        let ep = self.endpoint(&req.network_id, &req.endpoint_id)?.clone();
        let net = self.network(&req.network_id)?.clone();
        let bindings = match req.options.contains_key(api::PORTMAP) {
            true => options::portmap(&req.options).map_err(DriverError::Invalid)?,
            false => ep.portmap.clone(),
        };
        // Programmed again: what was published before goes first.
        self.unpublish(&req.endpoint_id)?;
        let uplink_ip = self.uplink_ip(&net);
        let mut done = Vec::new();
        for b in &bindings {
            match self.publish_one(&net, &ep, b, uplink_ip, &req.endpoint_id) {
                Ok(Some(p)) => done.push(p),
                Ok(None) => {}
                Err(err) => {
                    if let Some(e) = self.state.endpoints.get_mut(&req.endpoint_id) {
                        e.published = done;
                    }
                    let _ = self.unpublish(&req.endpoint_id);
                    return Err(err);
                }
            }
        }
        if let Some(e) = self.state.endpoints.get_mut(&req.endpoint_id) {
            e.published = done;
        }
        self.save()?;
        Ok(json!({}))
    }

    /// The address of the network's way out, if it has one.
    pub(super) fn uplink_ip(&self, net: &Network) -> Option<Ipv4Addr> {
        let way_out = net.uplink.as_deref().unwrap_or(&net.bridge);
        match self.vsctl(&Request::Show) {
            Ok(Reply::Show(bridges)) => bridges
                .into_iter()
                .find(|b| b.name == way_out)
                .and_then(|b| b.uplink)
                .map(|u| u.ip),
            _ => None,
        }
    }

    /// Publishes one binding: the first host port of its range that both
    /// the uplink address (vswitchd) and the host (a proxy) have free.
    /// None: a binding this driver does not serve (IPv6 host address).
    pub(super) fn publish_one(
        &mut self,
        net: &Network,
        ep: &Endpoint,
        b: &PortBinding,
        uplink_ip: Option<Ipv4Addr>,
        id: &str,
    ) -> Result<Option<Published>, DriverError> {
        let proto = options::proto(b.proto).map_err(DriverError::Invalid)?;
        let host_ip = match b.host_ip.as_str() {
            "" | "0.0.0.0" => None,
            text => match text.parse::<Ipv4Addr>() {
                Ok(ip) => Some(ip),
                Err(_) => {
                    warn!(host_ip = text, "binding to a non-IPv4 host address skipped");
                    return Ok(None);
                }
            },
        };
        // Through the uplink only when the binding is for every address or
        // for the uplink's own.
        let on_uplink = host_ip.is_none() || host_ip == uplink_ip;
        let (first, last) = match (b.host_port, b.host_port_end) {
            (0, _) => EPHEMERAL,
            (p, e) if e < p => (p, p),
            (p, e) => (p, e),
        };
        for host_port in first..=last {
            let published = Published {
                proto,
                host_ip,
                host_port,
                port: b.port,
            };
            let Ok(proxy) = start_proxy(&published, ep.ip) else {
                continue; // Taken on the host.
            };
            if on_uplink {
                let rule = PublishRule {
                    proto,
                    port: host_port,
                    to_ip: ep.ip,
                    to_port: b.port,
                };
                match self.vsctl(&Request::Publish(req::Publish {
                    may_exist: false,
                    bridge: net.bridge.clone(),
                    rule,
                })) {
                    Ok(_) => {}
                    Err(DriverError::Vswitch(ClientError::Refused(msg))) if msg.contains("already published") => {
                        continue; // Taken on the uplink address.
                    }
                    Err(err) => return Err(err),
                }
            }
            self.proxies.entry(id.to_string()).or_default().push(proxy);
            info!(endpoint = short(id, 12), %proto, host_port, port = b.port, on_uplink, "port published");
            return Ok(Some(published));
        }
        Err(DriverError::Invalid(format!(
            "no free host port for {proto}/{} in {first}-{last}",
            b.port
        )))
    }

    pub(super) fn revoke(&mut self, req: ExternalConnectivity) -> Result<Value, DriverError> {
        self.endpoint(&req.network_id, &req.endpoint_id)?;
        self.unpublish(&req.endpoint_id)?;
        self.save()?;
        Ok(json!({}))
    }

    /// Removes the endpoint's published ports and stops their proxies. The
    /// caller saves.
    pub(super) fn unpublish(&mut self, id: &str) -> Result<(), DriverError> {
        self.proxies.remove(id);
        let Some(ep) = self.state.endpoints.get(id) else {
            return Ok(());
        };
        let bridge = self.network(&ep.network)?.bridge.clone();
        let list = ep.published.clone();
        for p in &list {
            match self.vsctl(&Request::Unpublish(req::Unpublish {
                if_exists: false,
                bridge: bridge.clone(),
                proto: p.proto,
                port: p.host_port,
            })) {
                Ok(_) => {}
                Err(DriverError::Vswitch(ClientError::Refused(msg))) if msg.contains("not published") => {}
                Err(err) => return Err(err),
            }
        }
        if let Some(ep) = self.state.endpoints.get_mut(id) {
            ep.published.clear();
        }
        Ok(())
    }
}

pub(super) fn start_proxy(p: &Published, to: Ipv4Addr) -> std::io::Result<Proxy> {
    let listen = SocketAddrV4::new(p.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED), p.host_port);
    Proxy::start(p.proto, listen, SocketAddrV4::new(to, p.port))
}
