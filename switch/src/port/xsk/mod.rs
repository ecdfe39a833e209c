//! An AF_XDP socket: UMEM, its four rings, bind, and the XDP redirect.
//!
//! Layout: one UMEM of [`CHUNKS`] chunks of [`CHUNK_SIZE`] bytes. The first
//! half lives in the fill/rx rings (the kernel writes received frames into
//! them), the second half in the tx/completion rings and a free list. Every
//! rx chunk goes back to the fill ring in the same burst that read it, so the
//! fill ring never runs dry.
//!
//! Frames are copied out of the UMEM into the poll thread's pool on rx and
//! into a tx chunk on tx. On veth, the only attachment this kernel offers is
//! copy mode anyway (zero-copy is refused with EOPNOTSUPP), and one frame type
//! in the pipeline keeps every stage simple. A shared UMEM would remove the
//! copy for AF_XDP -> AF_XDP; measure first.
//!
//! Copy-mode TX happens only inside sendto(): the kernel sends at most 32
//! descriptors per call, so [`XskSocket::kick`] loops while the ring drains,
//! and the owning poll thread keeps kicking (see `service`) while anything is
//! left, so a TCP sender never waits for a later frame to push its last one.
//!
//! Frames larger than a chunk (an interface whose MTU was raised to 9000)
//! span several chunks: the socket is bound with `XDP_USE_SG` and its
//! program loaded frags-aware; a frame's descriptors carry `XDP_PKT_CONTD`
//! on all but the last, on rx as on tx. Where the kernel refuses either,
//! the socket carries one chunk per frame, as before.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::sys::bpf::{BpfError, SharedFilter, XdpMode, XdpRedirect};

pub const CHUNK_SIZE: usize = 2048;
/// Chunks one frame may span: a 9000-byte MTU frame takes five.
pub const MAX_FRAGS: usize = 8;
/// Chunks per UMEM: 8 MiB, pinned (vswitchd as root has CAP_IPC_LOCK; the
/// default memlock limit of other users is 8 MiB). 4 MiB lost frames under
/// a single TCP stream (the kernel found the fill ring empty: 1511 drops in
/// 3 s, all retransmitted); 8 MiB lost none at the same throughput.
const CHUNKS: u32 = 4096;
const RX_CHUNKS: u32 = CHUNKS / 2;
const TX_CHUNKS: u32 = CHUNKS / 2;
/// A just-closed socket can hold its queue for a moment (EBUSY).
const BIND_RETRIES: u32 = 40;
const BIND_RETRY_DELAY: Duration = Duration::from_millis(50);
/// Copy-mode sendto() sends at most 32 descriptors per call.
const MAX_KICKS: u32 = TX_CHUNKS / 32 + 2;

#[derive(Debug, thiserror::Error)]
pub enum XskError {
    #[error("this kernel has no AF_XDP sockets")]
    NoKernelSupport(#[source] io::Error),
    #[error("AF_XDP needs CAP_NET_RAW, CAP_NET_ADMIN and CAP_BPF")]
    NoPermission(#[source] io::Error),
    #[error("cannot create the AF_XDP socket")]
    Socket(#[source] io::Error),
    #[error("cannot register the {len}-byte UMEM (raise the memlock limit, or run with CAP_IPC_LOCK)")]
    Umem {
        len: usize,
        #[source]
        source: io::Error,
    },
    #[error("cannot set up the AF_XDP rings")]
    Rings(#[source] io::Error),
    #[error("queue {queue} of {iface} is still held by another AF_XDP socket after {tries} tries")]
    Busy { iface: String, queue: u32, tries: u32 },
    #[error("cannot bind an AF_XDP socket to queue {queue} of {iface}")]
    Bind {
        iface: String,
        queue: u32,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Bpf(#[from] BpfError),
}

mod ring;

use ring::{Mapping, Ring};
pub use ring::{RxRings, TxRings};

/// A bound AF_XDP socket with its UMEM and XDP program.
pub struct XskSocket {
    // Dropped in this order: the program stops redirecting, the socket
    // closes, then the memory it pointed into goes.
    xdp: XdpRedirect,
    fd: OwnedFd,
    umem: Mapping,
    /// Bound with XDP_USE_SG: frames may span chunks.
    sg: bool,
}

fn setsockopt<T>(fd: RawFd, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: value is a live T and its size is passed with it.
    let ret = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_XDP,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as u32,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl XskSocket {
    /// Opens a socket on `queue` of interface `ifindex` (`iface` names it in
    /// errors) and attaches the redirect program in the first of `modes`
    /// that the driver accepts (the shared one with `shared`).
    pub fn open(
        iface: &str,
        ifindex: u32,
        queue: u32,
        modes: &[XdpMode],
        shared: Option<&SharedFilter>,
    ) -> Result<(XskSocket, RxRings, TxRings), XskError> {
        let umem_len = CHUNKS as usize * CHUNK_SIZE;
        let umem = Mapping::new(None, umem_len, 0).map_err(|source| XskError::Umem { len: umem_len, source })?;
        // SAFETY: socket(2) with constant arguments; the result is checked.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            let err = io::Error::last_os_error();
            return Err(match err.raw_os_error() {
                Some(libc::EAFNOSUPPORT) => XskError::NoKernelSupport(err),
                Some(libc::EPERM) | Some(libc::EACCES) => XskError::NoPermission(err),
                _ => XskError::Socket(err),
            });
        }
        // SAFETY: raw is a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let sock = fd.as_raw_fd();

        let reg = libc::xdp_umem_reg {
            addr: umem.ptr.as_ptr() as u64,
            len: umem_len as u64,
            chunk_size: CHUNK_SIZE as u32,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        setsockopt(sock, libc::XDP_UMEM_REG, &reg).map_err(|source| XskError::Umem { len: umem_len, source })?;
        for (opt, size) in [
            (libc::XDP_UMEM_FILL_RING, RX_CHUNKS),
            (libc::XDP_UMEM_COMPLETION_RING, TX_CHUNKS),
            (libc::XDP_RX_RING, RX_CHUNKS),
            (libc::XDP_TX_RING, TX_CHUNKS),
        ] {
            setsockopt(sock, opt, &size).map_err(XskError::Rings)?;
        }
        // SAFETY: xdp_mmap_offsets is plain old data; the kernel fills it.
        let mut off: libc::xdp_mmap_offsets = unsafe { std::mem::zeroed() };
        let mut optlen = std::mem::size_of::<libc::xdp_mmap_offsets>() as libc::socklen_t;
        // SAFETY: off and optlen are live and sized as passed.
        let ret = unsafe {
            libc::getsockopt(
                sock,
                libc::SOL_XDP,
                libc::XDP_MMAP_OFFSETS,
                (&mut off as *mut libc::xdp_mmap_offsets).cast(),
                &mut optlen,
            )
        };
        if ret < 0 {
            return Err(XskError::Rings(io::Error::last_os_error()));
        }
        let rings = (|| -> io::Result<(RxRings, TxRings)> {
            let rx = RxRings {
                rx: Ring::open(sock, &off.rx, RX_CHUNKS, libc::XDP_PGOFF_RX_RING as u64)?,
                fill: Ring::open(sock, &off.fr, RX_CHUNKS, libc::XDP_UMEM_PGOFF_FILL_RING)?,
            };
            let mut free = Vec::with_capacity(TX_CHUNKS as usize);
            free.extend((RX_CHUNKS..CHUNKS).map(|c| u64::from(c) * CHUNK_SIZE as u64));
            let tx = TxRings {
                tx: Ring::open(sock, &off.tx, TX_CHUNKS, libc::XDP_PGOFF_TX_RING as u64)?,
                completion: Ring::open(sock, &off.cr, TX_CHUNKS, libc::XDP_UMEM_PGOFF_COMPLETION_RING)?,
                free,
                queued: 0,
                scratch: vec![0; MAX_FRAGS * CHUNK_SIZE],
            };
            Ok((rx, tx))
        })();
        let (rx, tx) = rings.map_err(XskError::Rings)?;
        let prod = rx.fill.producer().load(Ordering::Relaxed);
        for c in 0..RX_CHUNKS {
            rx.fill.write(prod.wrapping_add(c), u64::from(c) * CHUNK_SIZE as u64);
        }
        rx.fill.submit(RX_CHUNKS);

        let sg = bind(sock, iface, ifindex, queue)?;
        let xdp = XdpRedirect::attach(ifindex, queue, sock, modes, shared)?;
        Ok((XskSocket { xdp, fd, umem, sg }, rx, tx))
    }

    pub fn mode(&self) -> XdpMode {
        self.xdp.mode()
    }

    /// The kernel's own counters for this socket (XDP_STATISTICS): frames it
    /// dropped before we could see them.
    pub fn kernel_stats(&self) -> Vec<(&'static str, u64)> {
        // SAFETY: xdp_statistics is plain old data; the kernel fills it.
        let mut st: libc::xdp_statistics = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::xdp_statistics>() as libc::socklen_t;
        // SAFETY: st and len are live and sized as passed.
        let ret = unsafe {
            libc::getsockopt(
                self.raw_fd(),
                libc::SOL_XDP,
                libc::XDP_STATISTICS,
                (&mut st as *mut libc::xdp_statistics).cast(),
                &mut len,
            )
        };
        if ret < 0 {
            return Vec::new();
        }
        vec![
            ("xsk-rx-dropped", st.rx_dropped),
            ("xsk-rx-ring-full", st.rx_ring_full),
            ("xsk-fill-ring-empty", st.rx_fill_ring_empty_descs),
            ("xsk-rx-invalid-descs", st.rx_invalid_descs),
            ("xsk-tx-invalid-descs", st.tx_invalid_descs),
        ]
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The bytes of a received frame, if its descriptor is sane.
    fn rx_bytes(&self, desc: &libc::xdp_desc) -> Option<&[u8]> {
        let start = usize::try_from(desc.addr).ok()?;
        let len = desc.len as usize;
        let chunk_end = (start / CHUNK_SIZE + 1) * CHUNK_SIZE;
        if start.checked_add(len)? > chunk_end.min(self.umem.len) {
            return None;
        }
        // SAFETY: the range is inside the UMEM (checked above), and the
        // kernel handed this chunk to us through the rx ring: it does not
        // write it again until we put it back on the fill ring.
        Some(unsafe { std::slice::from_raw_parts(self.umem.ptr.as_ptr().add(start), len) })
    }

    /// Reads up to `max` received frames, hands each to `take` (its parts,
    /// one per chunk, in order; None for a frame with a bad descriptor or
    /// too many parts), and gives their chunks back to the fill ring.
    /// Returns how many frames were read. A frame whose last part is not in
    /// the ring yet is left there for the next call.
    pub fn receive(&self, rings: &mut RxRings, max: u32, mut take: impl FnMut(Option<&[&[u8]]>)) -> u32 {
        let avail = rings.rx.available().min(rings.fill.free());
        if avail == 0 {
            return 0;
        }
        let cons = rings.rx.consumer().load(Ordering::Relaxed);
        let prod = rings.fill.producer().load(Ordering::Relaxed);
        let mut parts: [&[u8]; MAX_FRAGS] = [&[]; MAX_FRAGS];
        let (mut used, mut frames) = (0u32, 0u32);
        while frames < max && used < avail {
            let (mut n, mut bad, mut end) = (0, false, None);
            for k in used..avail {
                let desc = rings.rx.read(cons.wrapping_add(k));
                match self.rx_bytes(&desc) {
                    Some(bytes) if n < MAX_FRAGS => {
                        parts[n] = bytes;
                        n += 1;
                    }
                    _ => bad = true,
                }
                if desc.options & libc::XDP_PKT_CONTD == 0 {
                    end = Some(k + 1);
                    break;
                }
            }
            let Some(end) = end else { break };
            take(if bad { None } else { Some(&parts[..n]) });
            for k in used..end {
                let addr = rings.rx.read(cons.wrapping_add(k)).addr;
                rings.fill.write(prod.wrapping_add(k), addr - addr % CHUNK_SIZE as u64);
            }
            used = end;
            frames += 1;
        }
        rings.rx.release(used);
        rings.fill.submit(used);
        if rings.fill.needs_wakeup() {
            self.wake_rx();
        }
        frames
    }

    fn wake_rx(&self) {
        // SAFETY: a zero-length, non-blocking recvfrom only wakes the driver.
        unsafe {
            libc::recvfrom(
                self.raw_fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
    }

    /// Takes a free tx chunk, lets `fill` write a frame into it, and queues
    /// it. `fill` returns the frame length, or None to give the chunk back.
    /// Errors: no chunk or ring slot (`Err(None)`), or `fill`'s own error.
    pub fn queue_tx<E>(
        &self,
        rings: &mut TxRings,
        fill: impl FnOnce(&mut [u8]) -> Option<Result<usize, E>>,
    ) -> Result<Option<usize>, Option<E>> {
        if rings.free.is_empty() {
            rings.reclaim();
        }
        if rings.tx.free() <= rings.queued {
            return Err(None);
        }
        let Some(addr) = rings.free.pop() else { return Err(None) };
        let start = addr as usize;
        // SAFETY: addr came from our free list: a whole chunk inside the
        // UMEM that the kernel is not reading (it returned it through the
        // completion ring, or never had it), and only the holder of `rings`
        // (behind the port's tx lock) writes it.
        let chunk = unsafe { std::slice::from_raw_parts_mut(self.umem.ptr.as_ptr().add(start), CHUNK_SIZE) };
        match fill(chunk) {
            None => {
                rings.free.push(addr);
                Ok(None)
            }
            Some(Err(e)) => {
                rings.free.push(addr);
                Err(Some(e))
            }
            Some(Ok(len)) => {
                let prod = rings.tx.producer().load(Ordering::Relaxed);
                rings.tx.write(
                    prod.wrapping_add(rings.queued),
                    libc::xdp_desc {
                        addr,
                        len: len as u32,
                        options: 0,
                    },
                );
                rings.queued += 1;
                Ok(Some(len))
            }
        }
    }

    /// [`XskSocket::queue_tx`] for a frame that may be larger than a chunk:
    /// `fill` writes it into a scratch buffer of [`MAX_FRAGS`] chunks, and
    /// it is queued over as many chunks as it takes, `XDP_PKT_CONTD` on all
    /// but the last. Without `XDP_USE_SG` a frame larger than a chunk is
    /// refused (`Err(None)`, as for a full ring).
    pub fn queue_tx_large<E>(
        &self,
        rings: &mut TxRings,
        fill: impl FnOnce(&mut [u8]) -> Option<Result<usize, E>>,
    ) -> Result<Option<usize>, Option<E>> {
        let mut scratch = std::mem::take(&mut rings.scratch);
        let filled = fill(&mut scratch);
        let result = match filled {
            None => Ok(None),
            Some(Err(e)) => Err(Some(e)),
            Some(Ok(len)) => self.queue_parts(rings, &scratch[..len.min(scratch.len())]).map(Some),
        };
        rings.scratch = scratch;
        result
    }

    /// Queues `frame` over as many tx chunks as it needs.
    fn queue_parts<E>(&self, rings: &mut TxRings, frame: &[u8]) -> Result<usize, Option<E>> {
        let pieces = frame.len().div_ceil(CHUNK_SIZE).max(1);
        if pieces > 1 && !self.sg {
            return Err(None);
        }
        if rings.free.len() < pieces {
            rings.reclaim();
        }
        if rings.free.len() < pieces || rings.tx.free() < rings.queued + pieces as u32 {
            return Err(None);
        }
        let prod = rings.tx.producer().load(Ordering::Relaxed);
        for (i, piece) in frame.chunks(CHUNK_SIZE).enumerate() {
            let Some(addr) = rings.free.pop() else { return Err(None) };
            // SAFETY: as in queue_tx: a whole free chunk of the UMEM that
            // the kernel is not reading, written only under the tx lock.
            let chunk =
                unsafe { std::slice::from_raw_parts_mut(self.umem.ptr.as_ptr().add(addr as usize), CHUNK_SIZE) };
            chunk[..piece.len()].copy_from_slice(piece);
            let last = i + 1 == pieces;
            rings.tx.write(
                prod.wrapping_add(rings.queued),
                libc::xdp_desc {
                    addr,
                    len: piece.len() as u32,
                    options: if last { 0 } else { libc::XDP_PKT_CONTD },
                },
            );
            rings.queued += 1;
        }
        Ok(frame.len())
    }

    /// Publishes the queued descriptors, makes the kernel send what the tx
    /// ring holds as far as it will, and takes back completed chunks.
    /// Returns true while frames remain queued.
    pub fn kick(&self, rings: &mut TxRings) -> bool {
        rings.tx.submit(rings.queued);
        rings.queued = 0;
        for _ in 0..MAX_KICKS {
            if rings.tx.outstanding() == 0 {
                break;
            }
            let before = rings.tx.consumer().load(Ordering::Acquire);
            // SAFETY: a zero-length, non-blocking sendto is the AF_XDP "send
            // what the tx ring holds" call; no buffer is passed.
            let ret = unsafe {
                libc::sendto(
                    self.raw_fd(),
                    std::ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null(),
                    0,
                )
            };
            if ret < 0 {
                let errno = io::Error::last_os_error().raw_os_error();
                if !matches!(errno, Some(libc::EAGAIN) | Some(libc::EBUSY) | Some(libc::ENOBUFS)) {
                    break;
                }
            }
            rings.reclaim();
            if rings.tx.consumer().load(Ordering::Acquire) == before {
                break;
            }
        }
        rings.reclaim();
        rings.tx.outstanding() > 0
    }
}

/// Binds the socket, with multi-buffer frames (`XDP_USE_SG`) if the kernel
/// takes them; returns whether it did.
fn bind(sock: RawFd, iface: &str, ifindex: u32, queue: u32) -> Result<bool, XskError> {
    let flags = libc::XDP_COPY | libc::XDP_USE_NEED_WAKEUP;
    match bind_with(sock, iface, ifindex, queue, flags | libc::XDP_USE_SG) {
        Ok(()) => Ok(true),
        Err(XskError::Bind { source, .. })
            if matches!(source.raw_os_error(), Some(libc::EINVAL | libc::EOPNOTSUPP)) =>
        {
            bind_with(sock, iface, ifindex, queue, flags).map(|()| false)
        }
        Err(e) => Err(e),
    }
}

fn bind_with(sock: RawFd, iface: &str, ifindex: u32, queue: u32, flags: u16) -> Result<(), XskError> {
    let addr = libc::sockaddr_xdp {
        sxdp_family: libc::AF_XDP as u16,
        sxdp_flags: flags,
        sxdp_ifindex: ifindex,
        sxdp_queue_id: queue,
        sxdp_shared_umem_fd: 0,
    };
    for _ in 0..BIND_RETRIES {
        // SAFETY: addr is a live sockaddr_xdp and its size is passed with it.
        let ret = unsafe {
            libc::bind(
                sock,
                (&addr as *const libc::sockaddr_xdp).cast(),
                std::mem::size_of::<libc::sockaddr_xdp>() as u32,
            )
        };
        if ret == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EBUSY) {
            return Err(XskError::Bind {
                iface: iface.to_string(),
                queue,
                source: err,
            });
        }
        std::thread::sleep(BIND_RETRY_DELAY);
    }
    Err(XskError::Busy {
        iface: iface.to_string(),
        queue,
        tries: BIND_RETRIES,
    })
}
