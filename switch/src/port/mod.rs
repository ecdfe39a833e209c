//! Ports: where frames enter and leave the switch. Packet I/O only: the
//! OS plumbing that creates and configures devices (netlink, namespaces,
//! veth pairs, BPF) is in `sys`, the control plane decides what to open.
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
pub mod tap;
pub mod xsk;

use crate::capture::CaptureSlot;
use crate::trace::TraceSlot;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};

use crate::packet::{Batch, PacketPool};
use crate::stats::{PortCounters, PortStatsCells};
use crate::sys::netns::Home;

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

    /// Looking for frames costs no system call (a ring in shared memory):
    /// the owning thread reads the port on every pass, however many ports
    /// it has. Otherwise a thread with many ports reads this one only when
    /// epoll reports it readable.
    fn polls_cheaply(&self) -> bool {
        false
    }

    /// The namespace the port's descriptor keeps alive (a TAP made inside
    /// it): once its name is gone ([`Home::is_gone`]) the control plane
    /// closes the port, which lets the namespace go. Control-plane only.
    fn home(&self) -> Option<&Home> {
        None
    }

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

    /// Tunnel super-frames cross this port whole (a TAP with the kernel's
    /// UDP-tunnel GSO); otherwise they are cut in software first.
    fn tunnel_gso(&self) -> bool {
        false
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
    /// `vsctl capture` on this port.
    pub capture: CaptureSlot,
    /// `vsctl trace` on this port.
    pub trace: TraceSlot,
    fault: AtomicI32,
}

impl LivePort {
    pub fn new(uid: u64, name: String, io: Box<dyn PortIo>, threads: usize) -> LivePort {
        LivePort {
            uid,
            name,
            io,
            stats: PortStatsCells::new(threads),
            capture: CaptureSlot::default(),
            trace: TraceSlot::default(),
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
