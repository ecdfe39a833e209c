//! The driver: Docker's network calls turned into vswitchd requests.
//!
//! - network = a vswitch bridge with the subnet and gateway Docker's IPAM
//!   chose, an internal port (the host reaches its containers, as through
//!   docker0), masquerade and a way out through another bridge's uplink
//!   when asked (`-o com.vswitch.masquerade=true -o com.vswitch.uplink=BR`);
//! - endpoint = Docker's address and a MAC; at Join, an `attach` in
//!   handoff mode: vswitchd makes the device in its namespace, dockerd
//!   moves it into the container and configures it (the address stays
//!   Docker's: no second allocation);
//! - `-p` = ports published on the uplink address by vswitchd's NAT, and
//!   a proxy on the host for 127.0.0.1 and the host's own addresses.
//!
//! One request at a time (the caller holds the driver's lock); every
//! change is saved before it is answered.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tracing::{info, warn};
use vswitch_ctl::client::{call, ClientError};
use vswitch_ctl::network::RuntimeNetwork;
use vswitch_ctl::{parse_subnet, req, MacAddr, NatProto, Reply, Request, SubnetExt};

use crate::api::{self, CreateEndpoint, CreateNetwork, EndpointRef, Join, NetworkOnly, PortBinding};
use crate::options::{self, Identity, NetworkOptions};
use crate::proxy::Proxy;
use crate::state::{Endpoint, Network, Published, State, StateError};

mod publish;
use publish::start_proxy;

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("malformed request: {0}")]
    BadRequest(String),
    #[error("unknown method {0}")]
    UnknownMethod(String),
    #[error("network {0} is not a vswitch network this driver knows")]
    UnknownNetwork(String),
    #[error("endpoint {0} is not one this driver knows")]
    UnknownEndpoint(String),
    #[error("{0}")]
    Invalid(String),
    #[error("vswitchd: {0}")]
    Vswitch(#[from] ClientError),
    #[error(transparent)]
    State(#[from] StateError),
}

pub struct Driver {
    vswitchd: PathBuf,
    state_dir: PathBuf,
    state: State,
    /// Host-side proxies of published ports, by endpoint.
    proxies: HashMap<String, Vec<Proxy>>,
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, DriverError> {
    serde_json::from_slice(body).map_err(|e| DriverError::BadRequest(e.to_string()))
}

/// "172.18.0.2/16" -> the address (Docker sends addresses with their prefix).
fn address(text: &str, what: &str) -> Result<Ipv4Addr, DriverError> {
    let ip = text.split('/').next().unwrap_or_default();
    ip.parse()
        .map_err(|_| DriverError::Invalid(format!("{what} '{text}' is not an IPv4 address")))
}

/// The first `n` characters of a Docker ID, for device and bridge names
/// (by character: a malformed ID must not split one).
fn short(id: &str, n: usize) -> &str {
    id.char_indices().nth(n).map_or(id, |(i, _)| &id[..i])
}

/// A MAC for an endpoint Docker gave none: locally administered, the rest
/// from the endpoint ID (random hex).
fn endpoint_mac(id: &str) -> MacAddr {
    let hex = |i: usize| {
        id.get(2 * i..2 * i + 2)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .unwrap_or(0)
    };
    MacAddr([0x02, hex(0), hex(1), hex(2), hex(3), hex(4)])
}

impl Driver {
    /// Loads the saved state and starts the proxies of published ports.
    pub fn new(vswitchd: PathBuf, state_dir: PathBuf) -> Result<Driver, StateError> {
        let state = State::load(&state_dir)?;
        let mut driver = Driver {
            vswitchd,
            state_dir,
            state,
            proxies: HashMap::new(),
        };
        let published: Vec<(String, Ipv4Addr, Vec<Published>)> = (driver.state.endpoints.iter())
            .filter(|(_, ep)| !ep.published.is_empty())
            .map(|(id, ep)| (id.clone(), ep.ip, ep.published.clone()))
            .collect();
        for (id, ip, list) in published {
            for p in list {
                match start_proxy(&p, ip) {
                    Ok(proxy) => driver.proxies.entry(id.clone()).or_default().push(proxy),
                    Err(err) => warn!(endpoint = short(&id, 12), port = p.host_port, %err, "host proxy not restarted"),
                }
            }
        }
        info!(
            networks = driver.state.networks.len(),
            endpoints = driver.state.endpoints.len(),
            "driver state loaded"
        );
        Ok(driver)
    }

    fn vsctl(&self, request: &Request) -> Result<Reply, DriverError> {
        Ok(call(&self.vswitchd, request)?)
    }

    fn save(&self) -> Result<(), DriverError> {
        Ok(self.state.save(&self.state_dir)?)
    }

    /// Answers one call: `method` is the URL path (`/NetworkDriver.Join`).
    pub fn handle(&mut self, method: &str, body: &[u8]) -> Result<Value, DriverError> {
        match method {
            "/Plugin.Activate" => Ok(json!({ "Implements": ["NetworkDriver"] })),
            "/NetworkDriver.GetCapabilities" => Ok(json!({ "Scope": "local", "ConnectivityScope": "local" })),
            "/NetworkDriver.CreateNetwork" => self.create_network(parse(body)?),
            "/NetworkDriver.DeleteNetwork" => self.delete_network(parse(body)?),
            "/NetworkDriver.CreateEndpoint" => self.create_endpoint(parse(body)?),
            "/NetworkDriver.DeleteEndpoint" => self.delete_endpoint(parse(body)?),
            "/NetworkDriver.EndpointOperInfo" => self.endpoint_info(parse(body)?),
            "/NetworkDriver.Join" => self.join(parse(body)?),
            "/NetworkDriver.Leave" => self.leave(parse(body)?),
            "/NetworkDriver.ProgramExternalConnectivity" => self.program(parse(body)?),
            "/NetworkDriver.RevokeExternalConnectivity" => self.revoke(parse(body)?),
            // Node discovery is for multi-host drivers; nothing to do here.
            "/NetworkDriver.DiscoverNew" | "/NetworkDriver.DiscoverDelete" => Ok(json!({})),
            other => Err(DriverError::UnknownMethod(other.to_string())),
        }
    }

    fn network(&self, id: &str) -> Result<&Network, DriverError> {
        self.state
            .networks
            .get(id)
            .ok_or_else(|| DriverError::UnknownNetwork(id.to_string()))
    }

    fn endpoint(&self, net: &str, id: &str) -> Result<&Endpoint, DriverError> {
        self.network(net)?;
        self.state
            .endpoints
            .get(id)
            .filter(|ep| ep.network == net)
            .ok_or_else(|| DriverError::UnknownEndpoint(id.to_string()))
    }

    fn create_network(&mut self, req: CreateNetwork) -> Result<Value, DriverError> {
        if self.state.networks.contains_key(&req.network_id) {
            return Ok(json!({}));
        }
        let opts = NetworkOptions::from_docker(&req.options).map_err(DriverError::Invalid)?;
        if req
            .ipv6_data
            .as_ref()
            .is_some_and(|v| v.iter().any(|d| !d.pool.is_empty()))
        {
            return Err(DriverError::Invalid(
                "IPv6 is not supported on vswitch networks yet (create the network without --ipv6)".into(),
            ));
        }
        let pools = req.ipv4_data.unwrap_or_default();
        let [data] = pools.as_slice() else {
            return Err(DriverError::Invalid(format!(
                "a vswitch network has exactly one IPv4 subnet (Docker gave {})",
                pools.len()
            )));
        };
        let subnet = parse_subnet(&data.pool).map_err(|e| DriverError::Invalid(e.to_string()))?;
        let gateway = match data.gateway.as_str() {
            "" => subnet.first_host(),
            gw => address(gw, "gateway")?,
        };
        let bridge = opts
            .bridge
            .clone()
            .unwrap_or_else(|| format!("dk-{}", short(&req.network_id, 12)));
        let internal = format!("vsn{}", short(&req.network_id, 12));
        let network = Network {
            bridge: bridge.clone(),
            subnet,
            gateway,
            internal: internal.clone(),
            port_type: opts.port_type,
            masquerade: opts.masquerade,
            uplink: opts.uplink.clone(),
            identity: opts.identity.clone(),
        };
        // The bridge, its internal port and masquerade: one transaction,
        // as the CNI plugin makes its networks.
        let made = RuntimeNetwork {
            bridge: bridge.clone(),
            subnet,
            gateway: Some(gateway),
            uplink_via: opts.uplink,
            internal,
            masquerade: network.masquerade,
            icc: opts.icc,
        };
        self.vsctl(&made.create())?;
        self.state.networks.insert(req.network_id.clone(), network);
        if let Err(err) = self.save() {
            // A failed create leaves nothing behind.
            self.state.networks.remove(&req.network_id);
            let _ = self.vsctl(&Request::DelBr(req::DelBr {
                if_exists: false,
                name: bridge,
            }));
            return Err(err);
        }
        info!(network = short(&req.network_id, 12), %bridge, %subnet, %gateway, "network created");
        Ok(json!({}))
    }

    fn delete_network(&mut self, req: NetworkOnly) -> Result<Value, DriverError> {
        let Some(net) = self.state.networks.get(&req.network_id).cloned() else {
            return Ok(json!({})); // Already gone: deleting is idempotent.
        };
        let left: Vec<String> = (self.state.endpoints.iter())
            .filter(|(_, ep)| ep.network == req.network_id)
            .map(|(id, _)| id.clone())
            .collect();
        for id in left {
            self.forget_endpoint(&id)?;
        }
        match self.vsctl(&Request::DelBr(req::DelBr {
            if_exists: false,
            name: net.bridge.clone(),
        })) {
            Ok(_) => {}
            Err(DriverError::Vswitch(ClientError::Refused(msg))) if msg.contains("does not exist") => {}
            Err(err) => return Err(err),
        }
        self.state.networks.remove(&req.network_id);
        self.save()?;
        info!(network = short(&req.network_id, 12), bridge = %net.bridge, "network deleted");
        Ok(json!({}))
    }

    fn create_endpoint(&mut self, req: CreateEndpoint) -> Result<Value, DriverError> {
        let net = self.network(&req.network_id)?;
        let iface = req.interface.unwrap_or_default();
        if iface.address.is_empty() {
            return Err(DriverError::Invalid(
                "Docker gave the endpoint no IPv4 address (vswitch networks take Docker's IPAM address)".into(),
            ));
        }
        let ip = address(&iface.address, "endpoint address")?;
        if !net.subnet.is_host(ip) || ip == net.gateway {
            return Err(DriverError::Invalid(format!(
                "{ip} is not a host address of {} besides its gateway",
                net.subnet
            )));
        }
        let given_mac = !iface.mac_address.is_empty();
        let mac = match given_mac {
            true => iface
                .mac_address
                .parse()
                .map_err(|_| DriverError::Invalid(format!("MAC '{}' is not a MAC address", iface.mac_address)))?,
            false => endpoint_mac(&req.endpoint_id),
        };
        let portmap = options::portmap(&req.options).map_err(DriverError::Invalid)?;
        let identity = Identity::of_endpoint(&net.identity, &req.options).map_err(DriverError::Invalid)?;
        self.state.endpoints.insert(
            req.endpoint_id.clone(),
            Endpoint {
                network: req.network_id.clone(),
                ip,
                mac,
                portmap,
                identity,
                sandbox: None,
                sandbox_seen: false,
                published: Vec::new(),
            },
        );
        if let Err(err) = self.save() {
            self.state.endpoints.remove(&req.endpoint_id);
            return Err(err);
        }
        // Docker refuses an answer that repeats what it gave.
        Ok(match given_mac {
            true => json!({}),
            false => json!({ "Interface": { "MacAddress": mac.to_string() } }),
        })
    }

    fn delete_endpoint(&mut self, req: EndpointRef) -> Result<Value, DriverError> {
        if self.state.endpoints.contains_key(&req.endpoint_id) {
            self.forget_endpoint(&req.endpoint_id)?;
            self.save()?;
        }
        Ok(json!({}))
    }

    /// Undoes whatever the endpoint still has (ports, attachment) and
    /// forgets it. The caller saves.
    fn forget_endpoint(&mut self, id: &str) -> Result<(), DriverError> {
        self.unpublish(id)?;
        self.detach(id)?;
        self.state.endpoints.remove(id);
        Ok(())
    }

    fn endpoint_info(&self, req: EndpointRef) -> Result<Value, DriverError> {
        let ep = self.endpoint(&req.network_id, &req.endpoint_id)?;
        let net = self.network(&ep.network)?;
        // The keys Docker reads (`docker port`, `docker ps` show the ports
        // actually published), and ours for `docker network inspect`.
        let ports: Vec<PortBinding> = (ep.published.iter())
            .map(|p| PortBinding {
                proto: match p.proto {
                    NatProto::Tcp => 6,
                    NatProto::Udp => 17,
                },
                ip: ep.ip.to_string(),
                port: p.port,
                host_ip: p.host_ip.map_or_else(|| "0.0.0.0".to_string(), |ip| ip.to_string()),
                host_port: p.host_port,
                host_port_end: p.host_port,
            })
            .collect();
        Ok(json!({ "Value": {
            api::PORTMAP: ports,
            "com.vswitch.bridge": net.bridge,
        }}))
    }

    fn join(&mut self, req: Join) -> Result<Value, DriverError> {
        let net = self.network(&req.network_id)?.clone();
        let ep = self.endpoint(&req.network_id, &req.endpoint_id)?.clone();
        if req.sandbox_key.is_empty() {
            return Err(DriverError::BadRequest("Join without a SandboxKey".into()));
        }
        let reply = self.vsctl(&Request::Attach(req::Attach {
            bridge: net.bridge.clone(),
            netns: req.sandbox_key.clone(),
            port_type: net.port_type,
            ip: Some(ep.ip),
            ifname: Some(format!("vsd{}", short(&req.endpoint_id, 12))),
            mac: Some(ep.mac),
            owner: Some(req.endpoint_id.clone()),
            handoff: true,
            default_route: None,
            allow_any_src: false,
            name: ep.identity.name.clone(),
            namespace: ep.identity.namespace.clone(),
            labels: ep.identity.labels.clone(),
        }))?;
        let Reply::Attached(attached) = reply else {
            return Err(DriverError::Invalid(
                "vswitchd answered attach with something else".into(),
            ));
        };
        if let Some(ep) = self.state.endpoints.get_mut(&req.endpoint_id) {
            ep.sandbox = Some(req.sandbox_key.clone());
            ep.sandbox_seen = false;
        }
        if let Err(err) = self.save() {
            let _ = self.detach(&req.endpoint_id);
            return Err(err);
        }
        info!(endpoint = short(&req.endpoint_id, 12), ip = %ep.ip, device = %attached.ifname, "joined");
        Ok(serde_json::to_value(api::JoinResponse {
            interface_name: api::InterfaceName {
                src_name: attached.ifname,
                dst_prefix: "eth".into(),
            },
            gateway: net.gateway.to_string(),
        })
        .unwrap_or_default())
    }

    fn leave(&mut self, req: EndpointRef) -> Result<Value, DriverError> {
        self.network(&req.network_id)?;
        if !self.state.endpoints.contains_key(&req.endpoint_id) {
            return Ok(json!({})); // Cleaned up already (see collect_garbage).
        }
        self.unpublish(&req.endpoint_id)?;
        self.detach(&req.endpoint_id)?;
        self.save()?;
        Ok(json!({}))
    }

    /// Detaches the endpoint's container, if it is attached.
    fn detach(&mut self, id: &str) -> Result<(), DriverError> {
        let Some(ep) = self.state.endpoints.get(id) else {
            return Ok(());
        };
        let Some(sandbox) = ep.sandbox.clone() else {
            return Ok(());
        };
        let bridge = self.network(&ep.network)?.bridge.clone();
        match self.vsctl(&Request::Detach(req::Detach {
            if_exists: false,
            bridge,
            netns: sandbox,
        })) {
            Ok(_) => {}
            // Gone already (a previous try, or vswitchd's state lost it).
            Err(DriverError::Vswitch(ClientError::Refused(msg))) if msg.contains("not attached") => {}
            Err(err) => return Err(err),
        }
        if let Some(ep) = self.state.endpoints.get_mut(id) {
            ep.sandbox = None;
            ep.sandbox_seen = false;
        }
        info!(endpoint = short(id, 12), "left");
        Ok(())
    }

    /// Containers that died without a Leave: dockerd killed and restarted
    /// kills them and deletes their interfaces without telling the driver.
    /// An endpoint is dead when its namespace file, once seen, is gone, or
    /// when vswitchd's port for it lost its device after dockerd had moved
    /// it. Its ports and attachment go, so Docker may hand the address out
    /// again.
    pub fn collect_garbage(&mut self) {
        if self.state.endpoints.values().all(|ep| ep.sandbox.is_none()) {
            return;
        }
        // Attachments whose device is gone, by owner.
        let broken: Vec<String> = match self.vsctl(&Request::ListAttachments) {
            Ok(Reply::Attachments(list)) => (list.into_iter())
                .filter(|a| a.moved && a.state != "up")
                .filter_map(|a| a.owner)
                .collect(),
            _ => Vec::new(),
        };
        let mut dead = Vec::new();
        let mut seen_now = false;
        for (id, ep) in self.state.endpoints.iter_mut() {
            let Some(sandbox) = &ep.sandbox else { continue };
            match (Path::new(sandbox).exists(), ep.sandbox_seen) {
                (true, false) => {
                    ep.sandbox_seen = true;
                    seen_now = true;
                }
                (false, true) => dead.push(id.clone()),
                _ if broken.contains(id) => dead.push(id.clone()),
                _ => {}
            }
        }
        if dead.is_empty() {
            if seen_now {
                if let Err(err) = self.save() {
                    warn!(%err, "state not saved");
                }
            }
            return;
        }
        for id in &dead {
            // Forgotten too: dockerd makes new endpoints for a restarted
            // container, and a late Leave or DeleteEndpoint is answered.
            match self.forget_endpoint(id) {
                Ok(()) => info!(endpoint = short(id, 12), "container gone without a Leave: detached"),
                Err(err) => warn!(endpoint = short(id, 12), %err, "cannot clean up after a container that is gone"),
            }
        }
        if let Err(err) = self.save() {
            warn!(%err, "state not saved after cleaning up");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_ids_never_split_a_character() {
        assert_eq!(short("0123456789abcdef", 12), "0123456789ab");
        assert_eq!(short("abc", 12), "abc");
        assert_eq!(short("ééééééééééééé", 12), "éééééééééééé");
        assert_eq!(endpoint_mac("0a1b2c3d4e5f").to_string(), "02:0a:1b:2c:3d:4e");
        assert_eq!(endpoint_mac("zz").to_string(), "02:00:00:00:00:00");
    }
}
