//! What container runtimes need beyond `attach`: their attachments listed
//! by owner (`list-attachments`), and handoff ports followed to where the
//! runtime moved them.
//!
//! Docker's remote driver protocol names, at Join, a device of the host
//! namespace that dockerd then moves into the container and renames; it
//! never says where it went. vswitchd finds it itself (by MAC, in the
//! namespace the lease names) a moment later, and records the place, so a
//! restart recreates the device there with its address rather than in its
//! own namespace, where it would be of no use.
//!
//! A TAP made inside a namespace holds it alive while its descriptor is
//! open; when the namespace's name goes (`ip netns del`, a runtime's
//! cleanup, the process of `/proc/PID/ns/net` exiting), housekeeping closes
//! the port ([`Manager::release_orphans`]), the namespace goes with it, and
//! the port shows why, as a port whose device went away does. Housekeeping
//! looks at the names without the manager's lock ([`Manager::homes`]):
//! with 2000 ports the look takes milliseconds, which every request
//! arriving meanwhile waited for.

use tracing::{debug, info};
use vswitch_ctl::{AttachmentInfo, PublishRule};

use super::{Manager, NotLive, PortEntry, Retired};
use crate::sys::find_by_mac;
use crate::sys::netns::Home;

impl Manager {
    pub(super) fn list_attachments(&self) -> Vec<AttachmentInfo> {
        let mut out = Vec::new();
        for br in &self.desired.bridges {
            let prefix = br.subnet.map_or(32, |s| s.prefix_len());
            for lease in &br.leases {
                let port = br.ports.iter().find(|p| p.name == lease.port);
                let state = match self.ports.get(&lease.port) {
                    Some(entry) => Self::port_state(entry),
                    None => "no port".to_string(),
                };
                out.push(AttachmentInfo {
                    bridge: br.name.clone(),
                    owner: lease.owner.clone(),
                    netns: lease.netns.clone(),
                    port: lease.port.clone(),
                    port_type: port.map(|p| p.port_type.into()),
                    ifname: port.map(|p| p.ifname.clone()),
                    moved: port.is_some_and(|p| p.moves_to.is_none()),
                    ip: lease.ip,
                    prefix,
                    mac: port.and_then(|p| p.mac),
                    state,
                    published: (br.published.iter())
                        .filter(|r| r.to_ip == lease.ip)
                        .map(|&r| PublishRule::from(r))
                        .collect(),
                    namespace: lease.namespace().to_string(),
                    name: lease.name().to_string(),
                    labels: lease.labels.clone(),
                });
            }
        }
        out
    }

    /// The namespaces open ports hold alive, by port uid, to be looked at
    /// without the lock.
    pub fn homes(&self) -> Vec<(u64, Home)> {
        (self.ports.values())
            .filter_map(|e| e.live.as_ref().ok())
            .filter_map(|live| live.io.home().map(|home| (live.uid, home.clone())))
            .collect()
    }

    /// Closes the ports of `orphans` (uids from [`Manager::homes`] whose
    /// namespace was found deleted; see the module comment) that are still
    /// open. They stay configured, shown with the reason; the configuration
    /// is not changed.
    pub fn release_orphans(&mut self, orphans: &[u64]) {
        let gone: Vec<String> = (self.ports.iter())
            .filter(|(_, e)| e.live.as_ref().is_ok_and(|live| orphans.contains(&live.uid)))
            .map(|(name, _)| name.clone())
            .collect();
        if gone.is_empty() {
            return;
        }
        let mut retired = Retired::default();
        for name in &gone {
            let Some(entry) = self.ports.get_mut(name) else {
                continue;
            };
            let live = std::mem::replace(&mut entry.live, Err(NotLive::NamespaceGone));
            let fdb = self.bridges.get(&entry.bridge).map(|b| b.fdb.clone());
            let closed = PortEntry {
                bridge: entry.bridge.clone(),
                slot: entry.slot,
                live,
                uplink: entry.uplink,
            };
            retired.ports.push((closed, fdb));
            info!(port = %name, "the port's network namespace was deleted: port closed");
        }
        self.publish();
        self.retire(retired);
    }

    /// True when some handoff port has not been seen in its namespace yet:
    /// housekeeping then calls [`Manager::settle_moves`].
    pub fn moves_pending(&self) -> bool {
        (self.desired.bridges.iter()).any(|b| b.ports.iter().any(|p| p.moves_to.is_some()))
    }

    /// Records where handoff ports went: each one whose device is no longer
    /// in vswitchd's namespace and is found, by its MAC, in the namespace
    /// it was handed to. One transaction for all of them.
    pub fn settle_moves(&mut self) {
        let mut found = Vec::new();
        for br in &self.desired.bridges {
            for port in br.ports.iter().filter(|p| p.moves_to.is_some()) {
                let (Some(netns), Some(mac)) = (&port.moves_to, port.mac) else {
                    continue;
                };
                if nix::net::if_::if_nametoindex(port.ifname.as_str()).is_ok() {
                    continue; // Not moved yet.
                }
                match find_by_mac(netns, mac) {
                    Ok(Some(ifname)) => found.push((br.name.clone(), port.name.clone(), netns.clone(), ifname)),
                    Ok(None) => debug!(port = %port.name, %netns, "handoff port not in its namespace (yet)"),
                    Err(err) => debug!(port = %port.name, %netns, %err, "handoff namespace not readable"),
                }
            }
        }
        if found.is_empty() {
            return;
        }
        let result = self.commit(|txn| {
            for (bridge, name, netns, ifname) in &found {
                if let Some(p) = txn.bridge_mut(bridge)?.ports.iter_mut().find(|p| &p.name == name) {
                    p.netns = Some(netns.clone());
                    p.ifname = ifname.clone();
                    p.moves_to = None;
                }
            }
            Ok(())
        });
        match result {
            Ok(()) => {
                for (bridge, port, netns, ifname) in &found {
                    info!(%bridge, %port, %netns, %ifname, "handoff port settled where the runtime moved it");
                }
            }
            Err(err) => debug!(%err, "handoff ports not settled"),
        }
    }
}
