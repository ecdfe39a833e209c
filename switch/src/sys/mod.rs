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

/// The MTU of interface `ifname` in vswitchd's namespace.
pub fn read_mtu(ifname: &str) -> std::io::Result<usize> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{ifname}/mtu"))?;
    text.trim()
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
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
