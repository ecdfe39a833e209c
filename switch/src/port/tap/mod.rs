//! TAP ports: a /dev/net/tun descriptor with the virtio-net header and
//! offloads, the device moved into the container's namespace.
//!
//! Raw ioctls rather than a crate: `tun-tap` 0.1.4 has no vnet header, no
//! offloads and no multiqueue, and offloads decide TCP throughput here
//! (DESIGN.md: ~12 Gbit/s with TSO, ~1.8 without).
//!
//! The descriptor is opened in vswitchd's own namespace and the device then
//! moved: the tun socket holds a reference on the namespace it was opened in,
//! so opening it inside the container would keep a deleted container
//! namespace alive as long as the port exists. Moved, the device dies with
//! the container's namespace, and the next read says so (EBADFD). An
//! uplink's TAP is persistent instead, and taken over from inside its
//! namespace after a restart ([`device`]).
//!
//! One read or write is one frame; batching these syscalls is the next lever
//! (DESIGN.md), measured once this loop is.

mod device;

use std::fs::File;
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsRawFd, RawFd};

use super::{PortFault, PortIo};
use crate::packet::{Batch, Frame, GsoType, PacketPool, MAX_FRAME_LEN, VNET_HDR_LEN};
use crate::stats::{DropReason, PortCounters};
use crate::sys::netns::Home;

pub use device::{delete_persistent, TapError, TapSpec};

/// The virtio-net header with the tunnel's offsets: the 12 bytes of
/// `VNET_HDR_LEN`, the hash value and report (8), the outer transport and
/// inner network header offsets (2 + 2).
const TUNNEL_HDR_LEN: usize = 24;
/// The virtio-net header of a frame that needs nothing done.
const NO_OFFLOAD_HDR: [u8; VNET_HDR_LEN] = [0; VNET_HDR_LEN];
/// The tunnel header's last 12 bytes for a frame that is no tunnel
/// super-frame: no hash, no offsets.
const PLAIN_EXTENSION: [u8; TUNNEL_HDR_LEN - VNET_HDR_LEN] = [0; TUNNEL_HDR_LEN - VNET_HDR_LEN];
/// ... and for a tunnel super-frame (sealed by the pipeline's encapsulate
/// stage, `GsoType::UdpTunnel`): the outer transport header after the
/// outer Ethernet and IPv4 headers (34), the inner network header after all
/// the outer headers and the inner Ethernet header (64), little-endian.
const TUNNEL_EXTENSION: [u8; TUNNEL_HDR_LEN - VNET_HDR_LEN] = [0, 0, 0, 0, 0, 0, 0, 0, 34, 0, 64, 0];

pub struct TapPort {
    file: File,
    /// The kernel took the UDP-tunnel offloads: reads and writes carry the
    /// 24-byte header, and tunnel super-frames cross whole.
    tunnel_gso: bool,
    /// The namespace the device was made in, when it is not vswitchd's:
    /// the descriptor holds it alive, so its going is watched by name.
    home: Option<Home>,
}

/// Turns a frame read with the 24-byte tunnel header into one with the
/// plain 12-byte header in front: its first 12 bytes are that header; the
/// tunnel's offsets are found again by parsing, where they matter.
fn to_plain_header(frame: &mut Frame) {
    if frame.len() < TUNNEL_HDR_LEN {
        // Left as it is: classify drops it as malformed.
        return;
    }
    frame
        .data_mut()
        .copy_within(..VNET_HDR_LEN, TUNNEL_HDR_LEN - VNET_HDR_LEN);
    frame.advance(TUNNEL_HDR_LEN - VNET_HDR_LEN);
}

impl TapPort {
    /// Writes one frame with its virtio-net header: a whole frame or nothing.
    fn write_frame(&self, parts: &[IoSlice<'_>], eth_len: usize, gso: bool, counters: &PortCounters) {
        let expected: usize = parts.iter().map(|p| p.len()).sum();
        match (&self.file).write_vectored(parts) {
            Ok(n) if n != expected => counters.drop(DropReason::TxError),
            Ok(_) => {
                counters.tx_packets.add(1);
                counters.tx_bytes.add(eth_len as u64);
                if gso {
                    counters.tx_gso_packets.add(1);
                }
            }
            Err(err) => counters.drop(match err.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::ENOBUFS) => DropReason::TxFull,
                Some(libc::EIO) => DropReason::TxLinkDown,
                _ => DropReason::TxError,
            }),
        }
    }

    /// What follows the plain 12-byte header on this TAP: `ext` when it
    /// speaks the 24-byte tunnel header, nothing otherwise.
    fn extension<'a>(&self, ext: &'a [u8; TUNNEL_HDR_LEN - VNET_HDR_LEN]) -> &'a [u8] {
        if self.tunnel_gso {
            ext
        } else {
            &[]
        }
    }
}

impl PortIo for TapPort {
    fn rx_burst(&self, pool: &mut PacketPool, batch: &mut Batch, counters: &PortCounters) -> Result<(), PortFault> {
        while !batch.is_full() {
            let Some(mut frame) = pool.alloc() else {
                counters.drop(DropReason::NoBuffer);
                return Ok(());
            };
            match (&self.file).read(frame.rx_space()) {
                Ok(n) if n >= MAX_FRAME_LEN => {
                    // Filled the whole buffer: the frame may have been cut.
                    counters.rx_packets.add(1);
                    counters.drop(DropReason::Malformed);
                    pool.free(frame);
                }
                Ok(n) => {
                    frame.set_len(n);
                    if self.tunnel_gso {
                        to_plain_header(&mut frame);
                    }
                    counters.rx_packets.add(1);
                    counters.rx_bytes.add(frame.len().saturating_sub(VNET_HDR_LEN) as u64);
                    if let Err(frame) = batch.push(frame) {
                        pool.free(frame);
                    }
                }
                Err(err) => {
                    pool.free(frame);
                    match err.kind() {
                        io::ErrorKind::WouldBlock => return Ok(()),
                        io::ErrorKind::Interrupted => continue,
                        _ => {}
                    }
                    let errno = err.raw_os_error().unwrap_or(libc::EIO);
                    if matches!(errno, libc::EBADFD | libc::ENODEV | libc::ENXIO) {
                        return Err(PortFault { errno });
                    }
                    counters.drop(DropReason::RxError);
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    fn tx_burst(&self, batch: &Batch, which: &[u16], counters: &PortCounters) {
        for &i in which {
            let Some(frame) = batch.get(usize::from(i)) else {
                continue;
            };
            // A frame from a port without offloads is complete as it is: an
            // all-zero virtio-net header ("nothing to do") goes in front.
            let data = frame.data();
            let gso = frame.meta.gso.is_some();
            let ext = match frame.meta.gso {
                Some(GsoType::UdpTunnel { .. }) => self.extension(&TUNNEL_EXTENSION),
                _ => self.extension(&PLAIN_EXTENSION),
            };
            match frame.meta.eth_offset.map(usize::from) {
                Some(VNET_HDR_LEN) => {
                    let (hdr, eth) = data.split_at(VNET_HDR_LEN);
                    let parts = [IoSlice::new(hdr), IoSlice::new(ext), IoSlice::new(eth)];
                    self.write_frame(&parts, eth.len(), gso, counters)
                }
                Some(0) => {
                    let parts = [IoSlice::new(&NO_OFFLOAD_HDR), IoSlice::new(ext), IoSlice::new(data)];
                    self.write_frame(&parts, data.len(), gso, counters)
                }
                _ => counters.drop(DropReason::TxError),
            }
        }
    }

    fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    fn home(&self) -> Option<&Home> {
        self.home.as_ref()
    }

    fn has_vnet_hdr(&self) -> bool {
        true
    }

    fn tunnel_gso(&self) -> bool {
        self.tunnel_gso
    }
}
