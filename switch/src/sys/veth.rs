//! The veth pair behind an AF_XDP container port.
//!
//! The container end is made in the container's namespace by the request
//! that creates the pair (with its name and MAC), then gets its transmit
//! checksum offload switched off and is brought up from a thread inside
//! that namespace. Why the checksum: through veth into
//! AF_XDP, a frame whose L4 checksum the container left to "the hardware"
//! arrives unfinished, and nothing says so (DESIGN.md: TCP dies silently
//! while ping works). Without checksum offload the kernel also drops TSO, so
//! the container's frames arrive MTU-sized and complete.
//!
//! The pair lives as long as its [`VethPair`]: dropping it deletes the host
//! end, and the kernel deletes the other end with it.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use tracing::warn;
use vswitch_ctl::MacAddr;

use super::netlink::{self, LinkChange};
use super::netns::{self, NetnsError};
use super::read_mac_here;

// ethtool commands from include/uapi/linux/ethtool.h.
const ETHTOOL_STXCSUM: u32 = 0x17;
const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GSSET_INFO: u32 = 0x37;
const ETHTOOL_SFEATURES: u32 = 0x3b;
const ETH_SS_FEATURES: u32 = 4;
const ETH_GSTRING_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum VethError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("interface '{ifname}' already exists in {place}")]
    Exists { ifname: String, place: String },
    #[error("cannot create veth pair '{name}'")]
    Create {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot turn off transmit checksum and segmentation offload on the container end")]
    OffloadOff(#[source] io::Error),
    #[error("cannot configure interface '{ifname}' in {place}")]
    Configure {
        ifname: String,
        place: String,
        #[source]
        source: io::Error,
    },
    #[error("interface '{0}' does not exist")]
    Missing(String),
}

pub struct VethPair {
    host: String,
    index: u32,
}

fn ifindex(name: &str) -> Option<u32> {
    nix::net::if_::if_nametoindex(name).ok()
}

/// A socket to send ethtool ioctls on.
fn ethtool_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: raw is a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// SIOCETHTOOL on `ifname` with `data` (a struct starting with `cmd`).
fn ethtool(sock: &OwnedFd, ifname: &str, data: &mut [u32]) -> io::Result<()> {
    let mut req = super::ifreq_with_name(ifname);
    req.ifr_ifru.ifru_data = data.as_mut_ptr().cast();
    // SAFETY: the kernel reads and writes at most the command's struct,
    // which the caller sized `data` for; both live across the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Turns off transmit checksum offload and every kind of segmentation
/// offload except the software one on `ifname`.
///
/// Checksum offload off takes TSO with it, but not the kinds newer kernels
/// add (6.18: `tx-tcp-accecn-segmentation`), and the legacy TSO switch does
/// not reach those either; so the features are found by name.
fn offloads_off(ifname: &str) -> io::Result<()> {
    let sock = ethtool_socket()?;
    ethtool(&sock, ifname, &mut [ETHTOOL_STXCSUM, 0])?;

    // struct ethtool_sset_info { cmd, reserved, u64 sset_mask, u32 data[] }
    let mut info = [ETHTOOL_GSSET_INFO, 0, 1 << ETH_SS_FEATURES, 0, 0];
    ethtool(&sock, ifname, &mut info)?;
    let count = info[4] as usize;
    // struct ethtool_gstrings { cmd, string_set, len, u8 data[len * 32] }
    let mut strings = vec![0u32; 3 + count * ETH_GSTRING_LEN / 4];
    strings[..3].copy_from_slice(&[ETHTOOL_GSTRINGS, ETH_SS_FEATURES, count as u32]);
    ethtool(&sock, ifname, &mut strings)?;
    let names: Vec<u8> = strings[3..].iter().flat_map(|w| w.to_ne_bytes()).collect();

    // struct ethtool_sfeatures { cmd, size, { valid, requested }[size] }
    let blocks = count.div_ceil(32);
    let mut set = vec![0u32; 2 + 2 * blocks];
    set[..2].copy_from_slice(&[ETHTOOL_SFEATURES, blocks as u32]);
    for (bit, raw) in names.chunks(ETH_GSTRING_LEN).enumerate() {
        let name = raw.split(|&b| b == 0).next().unwrap_or_default();
        // Software GSO (tx-generic-segmentation) stays: it cuts super-frames
        // before they reach the veth, which is what we want.
        let hardware_kind = name != b"tx-generic-segmentation";
        if name.starts_with(b"tx-") && name.ends_with(b"-segmentation") && hardware_kind {
            set[2 + 2 * (bit / 32)] |= 1 << (bit % 32); // valid; requested stays 0
        }
    }
    ethtool(&sock, ifname, &mut set)
}

impl VethPair {
    /// Creates `host` <-> `ifname` with `ifname` in `netns` (None: left in
    /// vswitchd's namespace, for a runtime to move). Returns the pair and
    /// the container end's MAC.
    ///
    /// The container end is made in its namespace by the creating request,
    /// then configured from a thread inside it: moving a made device there
    /// instead waits for an RCU grace period under the RTNL lock, ~18 ms.
    pub fn create(
        host: &str,
        netns: Option<&str>,
        ifname: &str,
        mac: Option<MacAddr>,
    ) -> Result<(VethPair, MacAddr), VethError> {
        let netns_file = netns.map(netns::open_netns).transpose()?;
        if netns.is_none() && ifindex(ifname).is_some() {
            return Err(VethError::Exists {
                ifname: ifname.to_string(),
                place: netns::place(None),
            });
        }
        if ifindex(host).is_some() {
            return Err(VethError::Exists {
                ifname: host.to_string(),
                place: "the host namespace".to_string(),
            });
        }
        let peer = netlink::VethPeer {
            name: ifname,
            netns_fd: netns_file.as_ref().map(|f| f.as_raw_fd()),
            mac: mac.map(|m| m.0),
        };
        netlink::create_veth(host, &peer).map_err(|source| {
            // The host end was free: the name is taken in the namespace.
            if source.raw_os_error() == Some(libc::EEXIST) {
                VethError::Exists {
                    ifname: ifname.to_string(),
                    place: netns::place(netns),
                }
            } else {
                VethError::Create {
                    name: host.to_string(),
                    source,
                }
            }
        })?;
        let pair = VethPair {
            host: host.to_string(),
            index: ifindex(host).ok_or_else(|| VethError::Missing(host.to_string()))?,
        };
        // From here on, an error drops `pair`, which deletes both ends.
        let configure = move || -> io::Result<Result<MacAddr, VethError>> {
            if let Err(err) = offloads_off(ifname) {
                return Ok(Err(VethError::OffloadOff(err)));
            }
            let index = ifindex(ifname).ok_or_else(|| io::Error::from_raw_os_error(libc::ENODEV))?;
            let mac = match mac {
                Some(mac) => mac,
                None => read_mac_here(ifname)?,
            };
            let change = LinkChange {
                index: index as i32,
                up: true,
                ..Default::default()
            };
            netlink::set_link(&change)?;
            Ok(Ok(mac))
        };
        let configured = match netns {
            Some(ns) => netns::run_in(ns, configure)?,
            None => configure().map_err(|source| VethError::Configure {
                ifname: ifname.to_string(),
                place: netns::place(None),
                source,
            })?,
        };
        let mac = configured?;
        pair.set_up()?;
        Ok((pair, mac))
    }

    /// Takes over a pair a previous vswitchd created (restart): the
    /// container end keeps its addresses.
    pub fn adopt(host: &str) -> Result<VethPair, VethError> {
        let pair = VethPair {
            host: host.to_string(),
            index: ifindex(host).ok_or_else(|| VethError::Missing(host.to_string()))?,
        };
        pair.set_up()?;
        Ok(pair)
    }

    fn set_up(&self) -> Result<(), VethError> {
        let change = LinkChange {
            index: self.index as i32,
            up: true,
            ..Default::default()
        };
        netlink::set_link(&change).map_err(|source| VethError::Configure {
            ifname: self.host.clone(),
            place: "the host namespace".to_string(),
            source,
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn host_index(&self) -> u32 {
        self.index
    }

    /// True when an interface with this name exists in vswitchd's namespace.
    pub fn exists(host: &str) -> bool {
        ifindex(host).is_some()
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        if let Err(err) = netlink::delete_link(self.index) {
            if err.raw_os_error() != Some(libc::ENODEV) {
                warn!(veth = %self.host, %err, "cannot delete veth pair");
            }
        }
    }
}
