//! The memory of an AF_XDP socket: mappings, and the four rings the
//! kernel shares with us (producer and consumer indices, descriptors).
//!
//! Ring indices follow the kernel's protocol: the producer writes
//! descriptors, then publishes its index with Release; the consumer reads the
//! other side's index with Acquire before reading descriptors.

use std::io;
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

/// An anonymous or ring mapping, unmapped on drop.
pub(super) struct Mapping {
    pub(super) ptr: NonNull<u8>,
    pub(super) len: usize,
}

// SAFETY: a Mapping is an owned memory region; sharing its address between
// threads is as safe as sharing a Box's. Access is coordinated by the rings.
unsafe impl Send for Mapping {}
// SAFETY: see Send; readers and writers of the region synchronise through
// the ring indices and the locks of XskSocket.
unsafe impl Sync for Mapping {}

impl Mapping {
    pub(super) fn new(fd: Option<RawFd>, len: usize, offset: u64) -> io::Result<Mapping> {
        let (flags, fd) = match fd {
            Some(fd) => (libc::MAP_SHARED | libc::MAP_POPULATE, fd),
            None => (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1),
        };
        // SAFETY: a fresh mapping chosen by the kernel; the result is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                offset as libc::off_t,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast()).ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))?;
        Ok(Mapping { ptr, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned; nothing uses the
        // region after its owner is dropped.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// One of the four rings, mapped from the socket. `T` is `xdp_desc` for
/// rx/tx and a `u64` UMEM address for fill/completion.
pub(super) struct Ring<T: Copy> {
    map: Mapping,
    producer: usize,
    consumer: usize,
    flags: usize,
    descs: usize,
    size: u32,
    _marker: std::marker::PhantomData<T>,
}

impl<T: Copy> Ring<T> {
    pub(super) fn open(fd: RawFd, off: &libc::xdp_ring_offset, size: u32, pgoff: u64) -> io::Result<Ring<T>> {
        let len = off.desc as usize + size as usize * std::mem::size_of::<T>();
        let map = Mapping::new(Some(fd), len, pgoff)?;
        Ok(Ring {
            map,
            producer: off.producer as usize,
            consumer: off.consumer as usize,
            flags: off.flags as usize,
            descs: off.desc as usize,
            size,
            _marker: std::marker::PhantomData,
        })
    }

    pub(super) fn index(&self, at: usize) -> &AtomicU32 {
        // SAFETY: the kernel's offsets place an aligned u32 inside the
        // mapping, which lives as long as self.
        unsafe { &*self.map.ptr.as_ptr().add(at).cast::<AtomicU32>() }
    }

    pub(super) fn producer(&self) -> &AtomicU32 {
        self.index(self.producer)
    }

    pub(super) fn consumer(&self) -> &AtomicU32 {
        self.index(self.consumer)
    }

    pub(super) fn needs_wakeup(&self) -> bool {
        self.index(self.flags).load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }

    pub(super) fn slot(&self, i: u32) -> *mut T {
        let at = (i & (self.size - 1)) as usize;
        // SAFETY: at < size, and the mapping holds size descriptors from
        // `descs`, so the pointer stays inside it.
        unsafe { self.map.ptr.as_ptr().add(self.descs).cast::<T>().add(at) }
    }

    /// Consumer side: entries the kernel has produced and we have not read.
    pub(super) fn available(&self) -> u32 {
        let prod = self.producer().load(Ordering::Acquire);
        prod.wrapping_sub(self.consumer().load(Ordering::Relaxed))
    }

    pub(super) fn read(&self, i: u32) -> T {
        // SAFETY: the slot is inside the mapping (see `slot`) and the kernel
        // finished writing it before publishing the producer index we read.
        unsafe { self.slot(i).read_volatile() }
    }

    pub(super) fn release(&self, n: u32) {
        let cons = self.consumer().load(Ordering::Relaxed);
        self.consumer().store(cons.wrapping_add(n), Ordering::Release);
    }

    /// Producer side: slots we may fill.
    pub(super) fn free(&self) -> u32 {
        let used = self
            .producer()
            .load(Ordering::Relaxed)
            .wrapping_sub(self.consumer().load(Ordering::Acquire));
        self.size - used
    }

    pub(super) fn write(&self, i: u32, value: T) {
        // SAFETY: the slot is inside the mapping, and the caller checked with
        // `free` that the kernel is not reading it.
        unsafe { self.slot(i).write_volatile(value) }
    }

    pub(super) fn submit(&self, n: u32) {
        let prod = self.producer().load(Ordering::Relaxed);
        self.producer().store(prod.wrapping_add(n), Ordering::Release);
    }

    /// Producer side: entries written and not yet taken by the kernel.
    pub(super) fn outstanding(&self) -> u32 {
        self.producer()
            .load(Ordering::Relaxed)
            .wrapping_sub(self.consumer().load(Ordering::Acquire))
    }
}

pub struct RxRings {
    pub(super) rx: Ring<libc::xdp_desc>,
    pub(super) fill: Ring<u64>,
}

pub struct TxRings {
    pub(super) tx: Ring<libc::xdp_desc>,
    pub(super) completion: Ring<u64>,
    pub(super) free: Vec<u64>,
    /// Descriptors written after the producer index, published by `kick`.
    pub(super) queued: u32,
    /// Where a frame larger than a chunk is written before it is spread
    /// over chunks (allocated once).
    pub(super) scratch: Vec<u8>,
}

impl TxRings {
    /// Takes back the chunks the kernel has finished sending.
    pub(super) fn reclaim(&mut self) {
        let n = self.completion.available();
        let cons = self.completion.consumer().load(Ordering::Relaxed);
        for i in 0..n {
            self.free.push(self.completion.read(cons.wrapping_add(i)));
        }
        self.completion.release(n);
    }

    pub fn outstanding(&self) -> u32 {
        self.tx.outstanding()
    }
}
