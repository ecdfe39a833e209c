//! Making, taking over and deleting TAP devices: /dev/net/tun with the
//! virtio-net header and offloads, made inside the namespace it serves,
//! or (an uplink's) persistent and taken over again after a restart.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use vswitch_ctl::MacAddr;

use super::{TapPort, TUNNEL_HDR_LEN};
use crate::packet::VNET_HDR_LEN;
use crate::sys::netlink::{self, LinkChange};
use crate::sys::netns::{self, Home, NetnsError};
use crate::sys::{ifreq_with_name, read_mac_here, valid_ifname};

/// Offloads we accept from the kernel: frames may carry partial checksums and
/// be TCP super-frames; we pass the header through to the receiving TAP.
const TAP_OFFLOADS: libc::c_uint = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | libc::TUN_F_TSO_ECN;
/// The kernel's UDP-tunnel GSO for TAP (Linux 6.17): super-frames inside
/// VXLAN cross whole, described by the 24-byte virtio-net header.
const TUN_F_UDP_TUNNEL_GSO: libc::c_uint = 0x080;
const TUN_F_UDP_TUNNEL_GSO_CSUM: libc::c_uint = 0x100;
const TUNNEL_OFFLOADS: libc::c_uint = TAP_OFFLOADS | TUN_F_UDP_TUNNEL_GSO | TUN_F_UDP_TUNNEL_GSO_CSUM;

#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("interface name '{0}' is not valid (1-15 characters, no '/', ':' or spaces)")]
    BadName(String),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("interface '{ifname}' already exists in {place}")]
    Exists { ifname: String, place: String },
    #[error("cannot open /dev/net/tun")]
    OpenTun(#[source] io::Error),
    #[error("{op} failed on the TAP device")]
    Ioctl {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("cannot configure interface '{ifname}' in {place}")]
    Configure {
        ifname: String,
        place: String,
        #[source]
        source: io::Error,
    },
}

/// Where and how to create a TAP device.
#[derive(Debug, Clone, Copy)]
pub struct TapSpec<'a> {
    /// Interface name the device ends up with.
    pub ifname: &'a str,
    /// Namespace to make it in; `None`: vswitchd's.
    pub netns: Option<&'a str>,
    /// MAC to give it; `None` keeps the kernel's random one.
    pub mac: Option<MacAddr>,
    /// An uplink that may carry tunnels: ask for the kernel's UDP-tunnel
    /// GSO (without it in the kernel, the port goes on without) and keep a
    /// buffer to encapsulate in.
    pub tunnel_gso: bool,
    /// The device outlives the descriptor (an uplink: the other side's
    /// addresses and routes survive a vswitchd restart), and a device of
    /// that name left by a previous run is taken over. [`delete_persistent`]
    /// removes it.
    pub persist: bool,
}
fn open_tun() -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")
}

/// The namespace `name` leads to now, to notice when it is deleted (None
/// when its identity cannot be read: then it is not watched).
fn watch(name: &str) -> Result<Option<Home>, TapError> {
    let file = netns::open_netns(name)?;
    Ok(Home::of(name, &file).ok())
}

/// Deletes the persistent TAP `ifname` in `netns` (None: vswitchd's), as
/// `del-uplink` must: it would outlive its descriptor otherwise. Gone
/// already is fine.
pub fn delete_persistent(ifname: &str, netns: Option<&str>) -> Result<(), TapError> {
    run_at(netns, ifname, || match nix::net::if_::if_nametoindex(ifname) {
        Ok(index) => netlink::delete_link(index),
        Err(_) => Ok(()),
    })
}

/// Runs `f` inside namespace `netns`, or here (None); an error of `f` is
/// one configuring `ifname` there.
fn run_at<T: Send>(netns: Option<&str>, ifname: &str, f: impl FnOnce() -> io::Result<T> + Send) -> Result<T, TapError> {
    match netns {
        Some(ns) => Ok(netns::run_in(ns, f)?),
        None => f().map_err(|source| TapError::Configure {
            ifname: ifname.to_string(),
            place: netns::place(None),
            source,
        }),
    }
}

/// Binds `file` to the TAP device `name` (a `%d` pattern makes a new
/// one), with the virtio-net header; returns the name the kernel gave it.
fn set_iff(file: &File, name: &str) -> io::Result<String> {
    let mut req = ifreq_with_name(name);
    req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes the ifreq we own for the call.
    if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ifreq_name(&req))
}

fn ifreq_name(req: &libc::ifreq) -> String {
    let bytes: Vec<u8> = req.ifr_name.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Sets the virtio-net header size and the offloads the kernel may use.
fn set_offloads(fd: RawFd, hdr_len: usize, offloads: libc::c_uint) -> Result<(), TapError> {
    let hdr_len = hdr_len as libc::c_int;
    // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer.
    if unsafe { libc::ioctl(fd, libc::TUNSETVNETHDRSZ, &hdr_len) } < 0 {
        return Err(TapError::Ioctl {
            op: "TUNSETVNETHDRSZ",
            source: io::Error::last_os_error(),
        });
    }
    // SAFETY: TUNSETOFFLOAD takes its flags by value.
    if unsafe { libc::ioctl(fd, libc::TUNSETOFFLOAD, offloads as libc::c_ulong) } < 0 {
        return Err(TapError::Ioctl {
            op: "TUNSETOFFLOAD",
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

impl TapPort {
    /// Creates the device where `spec` says and brings it up. Returns the
    /// port and the device's MAC address.
    ///
    /// A device for a namespace is made from a thread inside it, not made
    /// here and moved: moving a device between namespaces waits for an RCU
    /// grace period under the RTNL lock, ~18 ms on these machines (75% of
    /// an attach), where making it in place takes ~1 ms. The descriptor's
    /// socket then belongs to that namespace and holds it: a namespace
    /// deleted while attached lives on until the port is closed (as with
    /// any TAP opened from inside, Kata's or Firecracker's); the port
    /// remembers the namespace ([`Home`]) so the control plane can close it
    /// once the namespace's name is gone.
    pub fn create(spec: TapSpec<'_>) -> Result<(TapPort, MacAddr), TapError> {
        if !valid_ifname(spec.ifname) {
            return Err(TapError::BadName(spec.ifname.to_string()));
        }
        if spec.persist {
            if let Some(found) = TapPort::reattach(spec)? {
                return Ok(found);
            }
        }
        match spec.netns {
            Some(ns) => {
                let home = watch(ns)?;
                let (mut port, mac) = netns::run_in(ns, move || Ok(TapPort::create_here(spec)))??;
                port.home = home;
                Ok((port, mac))
            }
            None => TapPort::create_here(spec),
        }
    }

    /// [`TapPort::create`] in the calling thread's namespace.
    fn create_here(spec: TapSpec<'_>) -> Result<(TapPort, MacAddr), TapError> {
        let configure = |source: io::Error| TapError::Configure {
            ifname: spec.ifname.to_string(),
            place: netns::place(spec.netns),
            source,
        };
        if nix::net::if_::if_nametoindex(spec.ifname).is_ok() {
            return Err(TapError::Exists {
                ifname: spec.ifname.to_string(),
                place: netns::place(spec.netns),
            });
        }
        let file = open_tun().map_err(TapError::OpenTun)?;
        let name = set_iff(&file, spec.ifname).map_err(|source| TapError::Ioctl {
            op: "TUNSETIFF",
            source,
        })?;
        let port = TapPort::from_tun(file, spec)?;
        let index = nix::net::if_::if_nametoindex(name.as_str()).map_err(|e| configure(e.into()))?;
        let mac = match spec.mac {
            Some(mac) => mac,
            None => read_mac_here(&name).map_err(configure)?,
        };
        let change = LinkChange {
            index: index as i32,
            mac: spec.mac.map(|m| m.0),
            up: true,
            ..Default::default()
        };
        netlink::set_link(&change).map_err(configure)?;
        // Last: a device that failed to come up must not outlive us.
        // SAFETY: TUNSETPERSIST takes its flag by value.
        if spec.persist && unsafe { libc::ioctl(port.file.as_raw_fd(), libc::TUNSETPERSIST, 1 as libc::c_ulong) } < 0 {
            return Err(TapError::Ioctl {
                op: "TUNSETPERSIST",
                source: io::Error::last_os_error(),
            });
        }
        Ok((port, mac))
    }

    /// The port around a descriptor bound to its device: the offloads the
    /// kernel may use set.
    fn from_tun(file: File, spec: TapSpec<'_>) -> Result<TapPort, TapError> {
        let fd = file.as_raw_fd();
        // The header size first: tunnel offloads with a 12-byte header make
        // every read fail (EFAULT), silently (DESIGN.md).
        let tunnel_gso = spec.tunnel_gso && set_offloads(fd, TUNNEL_HDR_LEN, TUNNEL_OFFLOADS).is_ok();
        if !tunnel_gso {
            set_offloads(fd, VNET_HDR_LEN, TAP_OFFLOADS)?;
        }
        Ok(TapPort {
            file,
            tunnel_gso,
            home: None,
        })
    }

    /// Attaches to the persistent TAP named `spec.ifname` in its namespace,
    /// if a previous run left one: opened from inside that namespace (the
    /// descriptor then holds it, which for an uplink's outside is fine).
    /// None when there is no such device.
    fn reattach(spec: TapSpec<'_>) -> Result<Option<(TapPort, MacAddr)>, TapError> {
        let ifname = spec.ifname;
        // Ok(None): no such device; Ok(Some(Err)): one that is not a TAP
        // of ours to take (another kind, or attached elsewhere).
        let open = move || -> io::Result<Option<Result<(File, MacAddr), ()>>> {
            if nix::net::if_::if_nametoindex(ifname).is_err() {
                return Ok(None);
            }
            let file = open_tun()?;
            if set_iff(&file, ifname).is_err() {
                return Ok(Some(Err(())));
            }
            Ok(Some(Ok((file, read_mac_here(ifname)?))))
        };
        let found = run_at(spec.netns, ifname, open)?;
        let (file, mac) = match found {
            None => return Ok(None),
            Some(Err(())) => {
                return Err(TapError::Exists {
                    ifname: ifname.to_string(),
                    place: netns::place(spec.netns),
                })
            }
            Some(Ok(taken)) => taken,
        };
        let mut port = TapPort::from_tun(file, spec)?;
        if let Some(ns) = spec.netns {
            port.home = watch(ns)?;
        }
        Ok(Some((port, mac)))
    }
}
