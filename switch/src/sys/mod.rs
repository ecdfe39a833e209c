//! OS plumbing: what the control plane (and the ports when they open a
//! device) asks of the kernel besides moving frames. Netlink for links,
//! addresses and routes, network namespaces, veth pairs, the XDP program.
//!
//! Owns no switch state and knows nothing of bridges, snapshots or the
//! pipeline; the poll threads never call into it.

pub mod bpf;
pub mod netlink;
pub mod netns;
pub mod veth;

/// The MAC address of interface `ifname` in vswitchd's namespace.
pub fn read_mac(ifname: &str) -> std::io::Result<vswitch_ctl::MacAddr> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{ifname}/address"))?;
    text.trim()
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// An `ifreq` naming interface `name` (cut to what the kernel takes), the
/// rest zero, for the interface ioctls.
pub fn ifreq_with_name(name: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes().take(libc::IFNAMSIZ - 1)) {
        *dst = src as libc::c_char;
    }
    req
}

/// The MTU of interface `ifname` in network namespace `netns` (None:
/// vswitchd's own). Asked of the kernel with SIOCGIFMTU on a socket opened
/// in that namespace: /sys/class/net shows only the namespace it was
/// mounted in.
pub fn read_mtu(netns: Option<&str>, ifname: &str) -> std::io::Result<usize> {
    let ask = || -> std::io::Result<usize> {
        let sock = nix::sys::socket::socket(
            nix::sys::socket::AddressFamily::Inet,
            nix::sys::socket::SockType::Datagram,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        let mut req = ifreq_with_name(ifname);
        // SAFETY: SIOCGIFMTU reads the name from and writes the MTU into
        // the ifreq we own, on a socket we own.
        if unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&sock), libc::SIOCGIFMTU, &mut req) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: SIOCGIFMTU filled the ifru_mtu member of the union.
        let mtu = unsafe { req.ifr_ifru.ifru_mtu };
        usize::try_from(mtu).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    };
    match netns {
        None => ask(),
        Some(ns) => netns::run_in(ns, ask).map_err(std::io::Error::other),
    }
}

/// A socket of the calling thread's network namespace, for the interface
/// ioctls.
fn ioctl_socket() -> std::io::Result<std::os::fd::OwnedFd> {
    Ok(nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )?)
}

/// The MAC of `ifname` asked with SIOCGIFHWADDR on `sock`.
fn hwaddr(sock: &std::os::fd::OwnedFd, ifname: &str) -> std::io::Result<vswitch_ctl::MacAddr> {
    let mut req = ifreq_with_name(ifname);
    // SAFETY: SIOCGIFHWADDR reads the name from and writes the address
    // into the ifreq we own, on a socket we own.
    if unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(sock), libc::SIOCGIFHWADDR, &mut req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFHWADDR filled the ifru_hwaddr member.
    let data = unsafe { req.ifr_ifru.ifru_hwaddr.sa_data };
    Ok(vswitch_ctl::MacAddr(std::array::from_fn(|i| data[i] as u8)))
}

/// The MAC of `ifname` in the calling thread's network namespace (which
/// /sys/class/net does not follow: it shows the namespace it was mounted in).
pub fn read_mac_here(ifname: &str) -> std::io::Result<vswitch_ctl::MacAddr> {
    hwaddr(&ioctl_socket()?, ifname)
}

/// The name of the interface with MAC `mac` in network namespace `netns`,
/// if there is one (SIOCGIFHWADDR on each, from a socket opened there).
pub fn find_by_mac(netns: &str, mac: vswitch_ctl::MacAddr) -> Result<Option<String>, netns::NetnsError> {
    netns::run_in(netns, || {
        let sock = ioctl_socket()?;
        let names = nix::net::if_::if_nameindex().map_err(std::io::Error::from)?;
        for iface in names.iter() {
            let name = iface.name().to_string_lossy().into_owned();
            if hwaddr(&sock, &name).is_ok_and(|found| found == mac) {
                return Ok(Some(name));
            }
        }
        Ok(None)
    })
}

/// Interface names the kernel accepts: 1-15 bytes, no '/', ':' or whitespace,
/// not "." or "..".
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() < libc::IFNAMSIZ
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_graphic() && b != b'/' && b != b':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names() {
        assert!(valid_ifname("eth0"));
        assert!(valid_ifname("a234567890abcde"));
        assert!(!valid_ifname("a234567890abcdef"), "16 bytes is one too many");
        for bad in ["", ".", "..", "a/b", "a:b", "a b", "é"] {
            assert!(!valid_ifname(bad), "{bad:?}");
        }
    }
}
