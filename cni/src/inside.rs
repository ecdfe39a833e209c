//! Looking inside the container's namespace (CHECK, and whether it has a
//! default route already): from a thread that has entered it, so the
//! plugin's own namespace never changes. Interfaces come from
//! getifaddrs(3); routes from /proc/thread-self/net/route, which shows the
//! thread's namespace.

use std::collections::HashMap;
use std::fs::File;
use std::net::Ipv4Addr;

use nix::sched::{setns, CloneFlags};
use nix::sys::socket::{AddressFamily, SockaddrLike};

/// One interface: its MAC ("aa:bb:..") and IPv4 addresses with prefix.
#[derive(Debug, Default)]
pub struct Link {
    pub mac: Option<String>,
    pub addrs: Vec<(Ipv4Addr, u8)>,
}

/// What the namespace holds: interfaces by name, and the default routes
/// (interface, gateway).
#[derive(Debug, Default)]
pub struct Seen {
    pub links: HashMap<String, Link>,
    pub default_routes: Vec<(String, Ipv4Addr)>,
}

pub fn look(netns: &str) -> std::io::Result<Seen> {
    let file = File::open(netns)?;
    std::thread::scope(|s| {
        s.spawn(|| {
            setns(&file, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
            read_here()
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("the namespace reader panicked")))
    })
}

fn read_here() -> std::io::Result<Seen> {
    let mut seen = Seen::default();
    for ifa in nix::ifaddrs::getifaddrs().map_err(std::io::Error::from)? {
        let entry = seen.links.entry(ifa.interface_name.clone()).or_default();
        let Some(addr) = ifa.address else { continue };
        match addr.family() {
            Some(AddressFamily::Packet) => {
                if let Some(link) = addr.as_link_addr().and_then(|l| l.addr()) {
                    entry.mac = Some(link.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":"));
                }
            }
            Some(AddressFamily::Inet) => {
                let ip = addr.as_sockaddr_in().map(|a| a.ip());
                let prefix = (ifa.netmask.as_ref())
                    .and_then(|m| m.as_sockaddr_in())
                    .map_or(32, |m| u32::from(m.ip()).count_ones() as u8);
                if let Some(ip) = ip {
                    entry.addrs.push((ip, prefix));
                }
            }
            _ => {}
        }
    }
    // Iface Destination Gateway Flags RefCnt Use Metric Mask ...: addresses
    // are the in-memory bytes of a __be32 printed as a host-order number.
    let routes = std::fs::read_to_string("/proc/thread-self/net/route")?;
    for line in routes.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 || f[1] != "00000000" || f[7] != "00000000" {
            continue;
        }
        if let Ok(gw) = u32::from_str_radix(f[2], 16) {
            seen.default_routes
                .push((f[0].to_string(), Ipv4Addr::from(gw.to_ne_bytes())));
        }
    }
    Ok(seen)
}
