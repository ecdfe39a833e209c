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
//! the container's namespace, and the next read says so (EBADFD).
//!
//! One read or write is one frame; batching these syscalls is the next lever
//! (DESIGN.md), measured once this loop is.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::{Mutex, PoisonError};

use vswitch_ctl::MacAddr;
use vswitch_vxlan::{encapsulate, write_headers, Outer, OuterCsum, OVERHEAD};

use super::{PortFault, PortIo};
use crate::offload::{OffloadRequest, Segmenter};
use crate::packet::{Batch, Frame, PacketPool, VnetHdr, MAX_FRAME_LEN, VNET_HDR_LEN};
use crate::stats::{DropReason, PortCounters};
use crate::sys::netlink::{self, LinkChange};
use crate::sys::netns::{self, NetnsError};
use crate::sys::{ifreq_with_name, read_mac, valid_ifname};

/// Offloads we accept from the kernel: frames may carry partial checksums and
/// be TCP super-frames; we pass the header through to the receiving TAP.
const TAP_OFFLOADS: libc::c_uint = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | libc::TUN_F_TSO_ECN;
/// The kernel's UDP-tunnel GSO for TAP (Linux 6.17): super-frames inside
/// VXLAN cross whole, described by the 24-byte virtio-net header.
const TUN_F_UDP_TUNNEL_GSO: libc::c_uint = 0x080;
const TUN_F_UDP_TUNNEL_GSO_CSUM: libc::c_uint = 0x100;
const TUNNEL_OFFLOADS: libc::c_uint = TAP_OFFLOADS | TUN_F_UDP_TUNNEL_GSO | TUN_F_UDP_TUNNEL_GSO_CSUM;
/// The virtio-net header with the tunnel's offsets: the 12 bytes of
/// `VNET_HDR_LEN`, the hash value and report (8), the outer transport and
/// inner network header offsets (2 + 2).
const TUNNEL_HDR_LEN: usize = 24;
/// The virtio-net header of a frame that needs nothing done.
const NO_OFFLOAD_HDR: [u8; VNET_HDR_LEN] = [0; VNET_HDR_LEN];
/// The tunnel header's last 12 bytes for a frame that is no tunnel
/// super-frame: no hash, no offsets.
const PLAIN_EXTENSION: [u8; TUNNEL_HDR_LEN - VNET_HDR_LEN] = [0; TUNNEL_HDR_LEN - VNET_HDR_LEN];
/// ... and for one we send whole: the outer transport header after the
/// outer Ethernet and IPv4 headers (34), the inner network header after all
/// the outer headers and the inner Ethernet header (64), little-endian.
const TUNNEL_EXTENSION: [u8; TUNNEL_HDR_LEN - VNET_HDR_LEN] = [0, 0, 0, 0, 0, 0, 0, 0, 34, 0, 64, 0];
/// Host-side name pattern while a device waits to be moved into a namespace.
const TEMP_NAME_PATTERN: &str = "vstap%d";

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
    /// Namespace to move it into; `None` leaves it in vswitchd's.
    pub netns: Option<&'a str>,
    /// MAC to give it; `None` keeps the kernel's random one.
    pub mac: Option<MacAddr>,
    /// An uplink that may carry tunnels: ask for the kernel's UDP-tunnel
    /// GSO (without it in the kernel, the port goes on without) and keep a
    /// buffer to encapsulate in.
    pub tunnel_gso: bool,
}

pub struct TapPort {
    file: File,
    /// The kernel took the UDP-tunnel offloads: reads and writes carry the
    /// 24-byte header, and tunnel super-frames cross whole.
    tunnel_gso: bool,
    /// Where a frame for a tunnel is cut or finished and encapsulated, one
    /// piece at a time (allocated once, for uplinks only).
    segment: Mutex<Vec<u8>>,
}

fn ifreq_name(req: &libc::ifreq) -> String {
    let bytes: Vec<u8> = req.ifr_name.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
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
    /// Creates the device, moves it where `spec` says and brings it up.
    /// Returns the port and the device's MAC address.
    pub fn create(spec: TapSpec<'_>) -> Result<(TapPort, MacAddr), TapError> {
        if !valid_ifname(spec.ifname) {
            return Err(TapError::BadName(spec.ifname.to_string()));
        }
        let netns_file = spec.netns.map(netns::open_netns).transpose()?;
        if spec.netns.is_none() && nix::net::if_::if_nametoindex(spec.ifname).is_ok() {
            return Err(TapError::Exists {
                ifname: spec.ifname.to_string(),
                place: netns::place(None),
            });
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(TapError::OpenTun)?;
        let fd = file.as_raw_fd();

        let mut req = ifreq_with_name(if spec.netns.is_some() {
            TEMP_NAME_PATTERN
        } else {
            spec.ifname
        });
        req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short;
        // SAFETY: TUNSETIFF reads and writes the ifreq we own for the call.
        if unsafe { libc::ioctl(fd, libc::TUNSETIFF, &mut req) } < 0 {
            return Err(TapError::Ioctl {
                op: "TUNSETIFF",
                source: io::Error::last_os_error(),
            });
        }
        let host_name = ifreq_name(&req);
        // The header size first: tunnel offloads with a 12-byte header make
        // every read fail (EFAULT), silently (DESIGN.md).
        let tunnel_gso = spec.tunnel_gso && set_offloads(fd, TUNNEL_HDR_LEN, TUNNEL_OFFLOADS).is_ok();
        if !tunnel_gso {
            set_offloads(fd, VNET_HDR_LEN, TAP_OFFLOADS)?;
        }

        let configure = |source: io::Error| TapError::Configure {
            ifname: spec.ifname.to_string(),
            place: netns::place(spec.netns),
            source,
        };
        let index = nix::net::if_::if_nametoindex(host_name.as_str()).map_err(|e| configure(e.into()))?;
        let mac = match spec.mac {
            Some(mac) => mac,
            None => read_mac(&host_name).map_err(configure)?,
        };
        let change = LinkChange {
            index: index as i32,
            netns_fd: netns_file.as_ref().map(|f| f.as_raw_fd()),
            ifname: spec.netns.map(|_| spec.ifname),
            mac: spec.mac.map(|m| m.0),
            up: true,
            ..Default::default()
        };
        netlink::set_link(&change).map_err(|source| {
            if source.raw_os_error() == Some(libc::EEXIST) {
                TapError::Exists {
                    ifname: spec.ifname.to_string(),
                    place: netns::place(spec.netns),
                }
            } else {
                configure(source)
            }
        })?;
        let port = TapPort {
            file,
            tunnel_gso,
            // Only an uplink sends tunnel frames; a container's TAP needs none.
            segment: Mutex::new(if spec.tunnel_gso {
                vec![0; MAX_FRAME_LEN]
            } else {
                Vec::new()
            }),
        };
        Ok((port, mac))
    }
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

    /// Sends a frame inside a VXLAN packet: the outer headers written in
    /// front of it in one vectored write. A checksum left to the device
    /// stays left to it (its start moves by the outer headers); a TCP
    /// super-frame is cut here first, each segment in its own packet.
    fn send_tunnelled(&self, frame: &Frame, outer: &Outer, counters: &PortCounters) {
        let data = frame.data();
        let (vnet, inner) = match frame.meta.eth_offset.map(usize::from) {
            Some(VNET_HDR_LEN) => (VnetHdr::new_checked(data), &data[VNET_HDR_LEN..]),
            Some(0) => (None, data),
            _ => return counters.drop(DropReason::TxError),
        };
        let request = vnet.as_ref().map(OffloadRequest::from_vnet).unwrap_or_default();
        let mut headers = [0u8; OVERHEAD];
        let shift = |at: u16| u16::try_from(usize::from(at) + OVERHEAD).ok();
        // An outer checksum covers the inner frame as it leaves: that one is
        // finished here, below, with the rest.
        let zero_csum = outer.csum == OuterCsum::Zero;
        if request.gso.is_none() && zero_csum {
            let mut hdr = NO_OFFLOAD_HDR;
            if let Some((start, offset)) = request.csum {
                let Some(start) = shift(start) else {
                    return counters.drop(DropReason::TxOversize);
                };
                VnetHdr::write_needs_csum(&mut hdr, start, offset);
            }
            if write_headers(&mut headers, outer, inner.len()).is_err() {
                return counters.drop(DropReason::TxOversize);
            }
            let parts = [
                IoSlice::new(&hdr),
                IoSlice::new(self.extension(&PLAIN_EXTENSION)),
                IoSlice::new(&headers),
                IoSlice::new(inner),
            ];
            return self.write_frame(&parts, OVERHEAD + inner.len(), false, counters);
        }
        // The kernel segments a tunnel super-frame itself, when it can.
        let whole = (self.tunnel_gso && zero_csum && write_headers(&mut headers, outer, inner.len()).is_ok())
            .then(|| {
                let gso_type = VnetHdr::tunnel_gso_type(request.gso?)?;
                let (start, offset) = request.csum?;
                let hdr_len = vnet.as_ref().map_or(0, |h| h.hdr_len());
                let mut hdr = NO_OFFLOAD_HDR;
                let csum = (shift(start)?, offset);
                VnetHdr::write_gso(&mut hdr, gso_type, shift(hdr_len)?, request.gso_size, csum);
                Some(hdr)
            })
            .flatten();
        if let Some(hdr) = whole {
            let parts = [
                IoSlice::new(&hdr),
                IoSlice::new(&TUNNEL_EXTENSION),
                IoSlice::new(&headers),
                IoSlice::new(inner),
            ];
            return self.write_frame(&parts, OVERHEAD + inner.len(), true, counters);
        }
        // Otherwise each segment (or the one frame) is finished here and
        // encapsulated whole in the scratch buffer.
        let mut segments = match Segmenter::new(inner, request) {
            Ok(s) => s,
            Err(_) => return counters.drop(DropReason::TxSegmentError),
        };
        let mut buf = self.segment.lock().unwrap_or_else(PoisonError::into_inner);
        if buf.len() <= OVERHEAD {
            return counters.drop(DropReason::TxError);
        }
        while let Some(next) = segments.next_into(&mut buf[OVERHEAD..]) {
            let Ok(n) = next else {
                return counters.drop(DropReason::TxSegmentError);
            };
            if encapsulate(&mut buf[..OVERHEAD + n], outer).is_err() {
                return counters.drop(DropReason::TxOversize);
            }
            let parts = [
                IoSlice::new(&NO_OFFLOAD_HDR),
                IoSlice::new(self.extension(&PLAIN_EXTENSION)),
                IoSlice::new(&buf[..OVERHEAD + n]),
            ];
            self.write_frame(&parts, OVERHEAD + n, false, counters);
        }
        if request.gso.is_some() {
            counters.tx_gso_packets.add(1);
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
            if let Some(outer) = &frame.meta.encap {
                self.send_tunnelled(frame, outer, counters);
                continue;
            }
            // A frame from a port without offloads is complete as it is: an
            // all-zero virtio-net header ("nothing to do") goes in front.
            let data = frame.data();
            let gso = frame.meta.gso.is_some();
            let ext = self.extension(&PLAIN_EXTENSION);
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

    fn has_vnet_hdr(&self) -> bool {
        true
    }

    fn tunnel_gso(&self) -> bool {
        self.tunnel_gso
    }
}
