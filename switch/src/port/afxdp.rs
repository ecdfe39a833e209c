//! AF_XDP ports: an XSK socket on the host end of a veth pair whose other
//! end is the container's interface (or on an existing interface, the form
//! an uplink NIC takes).
//!
//! Frames from the other ports may carry offload requests (TAP super-frames,
//! partial checksums); nothing on this side would finish them, so tx runs
//! each frame through [`Segmenter`] straight into UMEM chunks, as a NIC's
//! offloads would. Tunnel frames arrive sealed by the pipeline
//! (`pipeline::encap`): nothing here knows VXLAN.
//!
//! Locks: rx state is touched only by the poll thread that owns the port;
//! tx may come from any poll thread, so its rings sit behind a mutex taken
//! once per burst (DESIGN.md: per-port tx locks taken once per batch).

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use vswitch_ctl::MacAddr;

use super::xsk::{RxRings, TxRings, XskError, XskSocket, CHUNK_SIZE};
use super::{PortFault, PortIo};

use crate::offload::{OffloadError, OffloadRequest, Segmenter};
use crate::packet::{Batch, PacketPool, VnetHdr, VNET_HDR_LEN};
use crate::stats::{DropReason, PortCounters};
use crate::sys::bpf::{SharedFilter, XdpMode};
use crate::sys::netlink;
use crate::sys::veth::{VethError, VethPair};

#[derive(Debug, thiserror::Error)]
pub enum AfXdpError {
    #[error(transparent)]
    Veth(#[from] VethError),
    #[error("interface '{0}' does not exist")]
    NoIface(String),
    #[error(transparent)]
    Xsk(#[from] XskError),
    #[error("cannot add the uplink's MAC to the unicast addresses of '{iface}'")]
    Unicast {
        iface: String,
        #[source]
        source: std::io::Error,
    },
}

/// Where the socket goes.
pub enum Attachment<'a> {
    /// Create a veth pair `host` <-> `ifname` in `netns` (None: vswitchd's,
    /// for a runtime to move), or adopt the pair a previous run created, on
    /// restart.
    Veth {
        host: &'a str,
        netns: Option<&'a str>,
        ifname: &'a str,
        mac: Option<MacAddr>,
        adopt: bool,
    },
    /// Bind to an existing interface of vswitchd's namespace.
    Iface(&'a str),
    /// Bind to an interface the host's stack keeps using: only frames to
    /// the filter's MAC, and ARP for its address, come to the socket; the
    /// MAC is added to the interface's unicast addresses while the port
    /// lives.
    Shared { iface: &'a str, filter: SharedFilter },
}

/// A MAC added to an interface's unicast addresses, removed on drop.
struct UnicastAddr {
    ifindex: u32,
    mac: [u8; 6],
}

impl Drop for UnicastAddr {
    fn drop(&mut self) {
        if let Err(err) = netlink::unicast_address(self.ifindex, self.mac, false) {
            tracing::warn!(ifindex = self.ifindex, %err, "could not remove the shared uplink's MAC from its interface");
        }
    }
}

pub struct AfXdpPort {
    xsk: XskSocket,
    rx: Mutex<RxRings>,
    tx: Mutex<TxRings>,
    /// Frames sit in the tx ring that the kernel has not taken yet.
    tx_pending: AtomicBool,
    queue: u32,
    // Last: the pair and the unicast address go after the socket that was
    // bound to the interface.
    veth: Option<VethPair>,
    _unicast: Option<UnicastAddr>,
}

impl AfXdpPort {
    /// Opens the port; returns it and, for a veth, the container end's MAC.
    pub fn open(at: Attachment<'_>, queue: u32, modes: &[XdpMode]) -> Result<(AfXdpPort, Option<MacAddr>), AfXdpError> {
        let (veth, mac, iface) = match at {
            Attachment::Veth {
                host, adopt: true, mac, ..
            } if VethPair::exists(host) => (Some(VethPair::adopt(host)?), mac, host.to_string()),
            Attachment::Veth {
                host,
                netns,
                ifname,
                mac,
                ..
            } => {
                let (pair, mac) = VethPair::create(host, netns, ifname, mac)?;
                (Some(pair), Some(mac), host.to_string())
            }
            Attachment::Iface(name) | Attachment::Shared { iface: name, .. } => (None, None, name.to_string()),
        };
        let ifindex = match &veth {
            Some(pair) => pair.host_index(),
            None => nix::net::if_::if_nametoindex(iface.as_str()).map_err(|_| AfXdpError::NoIface(iface.clone()))?,
        };
        let filter = match at {
            Attachment::Shared { filter, .. } => Some(filter),
            _ => None,
        };
        let unicast = match filter {
            Some(f) => {
                netlink::unicast_address(ifindex, f.mac, true).map_err(|source| AfXdpError::Unicast {
                    iface: iface.clone(),
                    source,
                })?;
                Some(UnicastAddr { ifindex, mac: f.mac })
            }
            None => None,
        };
        let (xsk, rx, tx) = XskSocket::open(&iface, ifindex, queue, modes, filter.as_ref())?;
        let port = AfXdpPort {
            xsk,
            rx: Mutex::new(rx),
            tx: Mutex::new(tx),
            tx_pending: AtomicBool::new(false),
            queue,
            veth,
            _unicast: unicast,
        };
        Ok((port, mac))
    }

    pub fn mode(&self) -> XdpMode {
        self.xsk.mode()
    }

    /// Sends one frame (`data` from its Ethernet header), cut and finished
    /// as `request` asks.
    fn send_frame(&self, rings: &mut TxRings, data: &[u8], request: OffloadRequest, counters: &PortCounters) {
        let mut segments = match Segmenter::new(data, request) {
            Ok(s) => s,
            Err(_) => return counters.drop(DropReason::TxSegmentError),
        };
        let mut fill = |chunk: &mut [u8]| segments.next_into(chunk);
        // The largest piece this frame becomes: its segments' (payload and
        // at most 256 bytes of headers), or itself.
        let piece = match request.gso {
            Some(_) => usize::from(request.gso_size) + 256,
            None => data.len(),
        };
        let large = piece > CHUNK_SIZE;
        loop {
            let queued = if large {
                self.xsk.queue_tx_large(rings, &mut fill)
            } else {
                self.xsk.queue_tx(rings, &mut fill)
            };
            match queued {
                Ok(Some(len)) => {
                    counters.tx_packets.add(1);
                    counters.tx_bytes.add(len as u64);
                }
                Ok(None) => break,
                Err(None) => return counters.drop(DropReason::TxFull),
                Err(Some(OffloadError::NoRoom)) => return counters.drop(DropReason::TxOversize),
                Err(Some(_)) => return counters.drop(DropReason::TxSegmentError),
            }
        }
        if request.gso.is_some() {
            counters.tx_gso_packets.add(1);
        }
    }
}

impl PortIo for AfXdpPort {
    fn rx_burst(&self, pool: &mut PacketPool, batch: &mut Batch, counters: &PortCounters) -> Result<(), PortFault> {
        let mut rings = self.rx.lock().unwrap_or_else(PoisonError::into_inner);
        let room = (crate::packet::BATCH_SIZE - batch.len()).min(pool.available()) as u32;
        if room == 0 {
            if pool.available() == 0 {
                counters.drop(DropReason::NoBuffer);
            }
            return Ok(());
        }
        self.xsk.receive(&mut rings, room, |parts| {
            counters.rx_packets.add(1);
            let Some((first, more)) = parts.and_then(|p| p.split_first()) else {
                return counters.drop(DropReason::Malformed);
            };
            let Some(mut frame) = pool.alloc() else {
                return counters.drop(DropReason::NoBuffer);
            };
            frame.fill(first);
            if !more.iter().all(|part| frame.append(part)) {
                pool.free(frame);
                return counters.drop(DropReason::Malformed);
            }
            counters.rx_bytes.add(frame.len() as u64);
            if let Err(frame) = batch.push(frame) {
                pool.free(frame);
            }
        });
        Ok(())
    }

    fn tx_burst(&self, batch: &Batch, which: &[u16], counters: &PortCounters) {
        let mut rings = self.tx.lock().unwrap_or_else(PoisonError::into_inner);
        for &i in which {
            let Some(frame) = batch.get(usize::from(i)) else {
                continue;
            };
            let data = frame.data();
            match frame.meta.eth_offset.map(usize::from) {
                Some(0) => self.send_frame(&mut rings, data, OffloadRequest::default(), counters),
                Some(VNET_HDR_LEN) => match VnetHdr::new_checked(data) {
                    Some(hdr) => self.send_frame(
                        &mut rings,
                        &data[VNET_HDR_LEN..],
                        OffloadRequest::from_vnet(&hdr),
                        counters,
                    ),
                    None => counters.drop(DropReason::TxError),
                },
                _ => counters.drop(DropReason::TxError),
            }
        }
        let pending = self.xsk.kick(&mut rings);
        self.tx_pending.store(pending, Ordering::Relaxed);
    }

    fn raw_fd(&self) -> RawFd {
        self.xsk.raw_fd()
    }

    fn has_vnet_hdr(&self) -> bool {
        false
    }

    fn polls_cheaply(&self) -> bool {
        true
    }

    fn service(&self) -> bool {
        if !self.tx_pending.load(Ordering::Relaxed) {
            return false;
        }
        // Another thread sending right now will kick for us.
        let Ok(mut rings) = self.tx.try_lock() else { return true };
        let pending = self.xsk.kick(&mut rings);
        self.tx_pending.store(pending, Ordering::Relaxed);
        pending
    }

    fn kernel_stats(&self) -> Vec<(&'static str, u64)> {
        self.xsk.kernel_stats()
    }

    fn describe(&self) -> Option<String> {
        let host = self
            .veth
            .as_ref()
            .map(|v| format!(", host end {}", v.host()))
            .unwrap_or_default();
        Some(format!(
            "xdp {} mode, queue {}, copy{host}",
            self.mode().name(),
            self.queue
        ))
    }
}
