//! Ports: where frames enter and leave the switch.
//!
//! [`PortIo`] is the datapath's view of a device: burst reads into a batch and
//! burst writes from one. [`LivePort`] wraps it with what every port has: a
//! unique id, counters, and a fault flag set by the poll thread when the
//! device goes away under it.
//!
//! I/O errors split three ways (after cloud-hypervisor's `queue_pair.rs`):
//! try again later (EAGAIN: stop the burst), drop this frame (counted by
//! reason), or fatal to the port ([`PortFault`]: the port stops being polled
//! and `vsctl show` says why).

pub mod afxdp;
pub mod bpf;
pub mod netlink;
pub mod netns;
pub mod tap;
pub mod veth;
pub mod xsk;

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};

use crate::packet::{Batch, PacketPool};
use crate::stats::{PortCounters, PortStatsCells};

/// Why a port's device could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error(transparent)]
    Tap(#[from] tap::TapError),
    #[error(transparent)]
    AfXdp(#[from] afxdp::AfXdpError),
    #[error("port '{0}' is missing its AF_XDP settings in the saved state")]
    Incomplete(String),
    #[error("cannot read the MAC address of '{iface}'")]
    Mac {
        iface: String,
        #[source]
        source: std::io::Error,
    },
    #[error("an uplink is an afxdp or a tap port, not {0}")]
    UplinkType(vswitch_ctl::PortType),
}

/// The device under a port can no longer be used (errno).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortFault {
    pub errno: i32,
}

pub trait PortIo: Send + Sync {
    /// Reads frames until the batch is full or the device has no more.
    /// Counts what it received in `counters`.
    fn rx_burst(&self, pool: &mut PacketPool, batch: &mut Batch, counters: &PortCounters) -> Result<(), PortFault>;

    /// Sends the frames of `batch` named by `which`, in order, counting what
    /// was sent and what was dropped in `counters`.
    fn tx_burst(&self, batch: &Batch, which: &[u16], counters: &PortCounters);

    /// The descriptor a poll thread sleeps on (readable when frames wait).
    fn raw_fd(&self) -> RawFd;

    /// Frames read from this port start with a virtio-net header.
    fn has_vnet_hdr(&self) -> bool;

    /// Work the owning poll thread does between bursts (pushing out queued
    /// tx). True while work remains: the thread must not sleep yet.
    fn service(&self) -> bool {
        false
    }

    /// Counters the kernel keeps for the device (drops before we saw the
    /// frame), by name. Control-plane only.
    fn kernel_stats(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }

    /// How the port is attached, for `vsctl show`.
    fn describe(&self) -> Option<String> {
        None
    }
}

/// A port as the poll threads see it, shared through config snapshots.
pub struct LivePort {
    pub uid: u64,
    pub name: String,
    pub io: Box<dyn PortIo>,
    pub stats: PortStatsCells,
    fault: AtomicI32,
}

impl LivePort {
    pub fn new(uid: u64, name: String, io: Box<dyn PortIo>, threads: usize) -> LivePort {
        LivePort {
            uid,
            name,
            io,
            stats: PortStatsCells::new(threads),
            fault: AtomicI32::new(0),
        }
    }

    /// The errno that took the port down, if any.
    pub fn fault(&self) -> Option<i32> {
        match self.fault.load(Ordering::Relaxed) {
            0 => None,
            errno => Some(errno),
        }
    }

    pub fn set_fault(&self, fault: PortFault) {
        self.fault.store(fault.errno.max(1), Ordering::Relaxed);
    }

    /// "up", or why not, for `vsctl show`.
    pub fn state(&self) -> String {
        match self.fault() {
            None => "up".to_string(),
            Some(errno) => format!("failed: {}", std::io::Error::from_raw_os_error(errno)),
        }
    }
}

/// The MAC address of interface `ifname` in vswitchd's namespace.
pub fn read_mac(ifname: &str) -> std::io::Result<vswitch_ctl::MacAddr> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{ifname}/address"))?;
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
