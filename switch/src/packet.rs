//! Frame buffers, the per-thread pool they come from, and batches.
//!
//! Every poll thread owns one [`PacketPool`] allocated at start-up; rx takes
//! frames from it, and the runner gives them back once the batch has been
//! sent. A [`Frame`] is move-only: the batch owns it while it is processed, and
//! output queues refer to frames by index into the batch, so a flood to N
//! ports sends the same bytes N times without copying them. A stage that must
//! change a frame per destination (VXLAN later) copies explicitly.
//!
//! Buffers are large enough for a 64 KB GSO super-frame plus its virtio-net
//! header, with headroom in front for encapsulation. The pages are mapped
//! lazily, so a pool of small frames costs little resident memory.

use std::fmt;

use smoltcp::wire::EthernetProtocol;
use vswitch_vxlan::Outer;

/// Frames read from one port per burst; the unit of work of every stage.
pub const BATCH_SIZE: usize = 32;
/// Room in a batch: rx fills [`BATCH_SIZE`], stages may add frames they
/// generate (ARP requests) up to this.
pub const BATCH_CAPACITY: usize = 2 * BATCH_SIZE;
/// Bytes kept free in front of the received data for headers pushed later.
pub const HEADROOM: usize = 128;
/// Largest frame a port may hand us: virtio-net header, Ethernet header and a
/// 64 KB IP packet, rounded up.
pub const MAX_FRAME_LEN: usize = 65_536 + 256;
/// Frames in each poll thread's pool.
pub const POOL_FRAMES: usize = 256;

/// Length of the virtio-net header (`struct virtio_net_hdr_v1`, with
/// `num_buffers`) that TAP ports carry in front of every frame.
pub const VNET_HDR_LEN: usize = 12;

/// What classify learned about a frame; `None` until it has looked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// Offset of the Ethernet header in the frame data.
    pub eth_offset: Option<u16>,
    /// Segmentation offload the frame asks for, from its virtio-net header.
    pub gso: Option<GsoType>,
    /// The Ethernet type (after classify checked the header's length).
    pub ethertype: Option<EthernetProtocol>,
    /// The L4 checksum field holds only the pseudo-header sum, for the
    /// receiver to finish (virtio-net "needs checksum").
    pub csum_partial: bool,
    /// The device checked the checksums (virtio-net "data valid").
    pub csum_valid: bool,
    /// The frame leaves through a VXLAN tunnel: the tx step writes these
    /// outer headers in front of it (or of each segment, when it must cut
    /// it; `pipeline::encap`) before a port sees it.
    pub encap: Option<Outer>,
}

impl Meta {
    /// A frame the switch wrote itself: a plain Ethernet frame at offset 0,
    /// checksums complete.
    pub fn generated(ethertype: EthernetProtocol) -> Meta {
        Meta {
            eth_offset: Some(0),
            ethertype: Some(ethertype),
            ..Meta::default()
        }
    }
}

/// An owned packet buffer with headroom. Not `Clone`: copies are explicit.
pub struct Frame {
    buf: Box<[u8]>,
    start: usize,
    len: usize,
    pub meta: Meta,
}

impl Frame {
    fn new() -> Frame {
        Frame {
            buf: vec![0u8; HEADROOM + MAX_FRAME_LEN].into_boxed_slice(),
            start: HEADROOM,
            len: 0,
            meta: Meta::default(),
        }
    }

    /// The frame's bytes, from the first header a port put there.
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }

    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.start + self.len]
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Resets the frame for a read and returns the space a port may fill.
    pub fn rx_space(&mut self) -> &mut [u8] {
        self.start = HEADROOM;
        self.len = 0;
        self.meta = Meta::default();
        &mut self.buf[HEADROOM..]
    }

    /// Records how many bytes of [`Frame::rx_space`] a port filled.
    pub fn set_len(&mut self, len: usize) {
        self.len = len.min(self.buf.len() - self.start);
    }

    /// Drops `n` bytes from the front (a header the next port does not take).
    pub fn advance(&mut self, n: usize) {
        let n = n.min(self.len);
        self.start += n;
        self.len -= n;
    }

    /// Takes `n` bytes of headroom into the frame, in front of its data
    /// (a header pushed on it, as VXLAN's); false, and nothing changed,
    /// when the headroom is smaller.
    pub fn push_front(&mut self, n: usize) -> bool {
        if n > self.start {
            return false;
        }
        self.start -= n;
        self.len += n;
        true
    }

    /// Appends `bytes` (the next part of a frame that came in pieces);
    /// false, and nothing appended, if they do not fit.
    pub fn append(&mut self, bytes: &[u8]) -> bool {
        let at = self.start + self.len;
        let Some(room) = self.buf.get_mut(at..at + bytes.len()) else {
            return false;
        };
        room.copy_from_slice(bytes);
        self.len += bytes.len();
        true
    }

    /// Replaces the frame's content (tests and generators).
    pub fn fill(&mut self, bytes: &[u8]) {
        let space = self.rx_space();
        let n = bytes.len().min(space.len());
        space[..n].copy_from_slice(&bytes[..n]);
        self.set_len(n);
    }
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("len", &self.len)
            .field("meta", &self.meta)
            .finish()
    }
}

/// A fixed set of frames owned by one poll thread. `alloc` and `free` never
/// touch the heap after construction.
pub struct PacketPool {
    free: Vec<Frame>,
    capacity: usize,
}

impl PacketPool {
    pub fn new(capacity: usize) -> PacketPool {
        PacketPool {
            free: (0..capacity).map(|_| Frame::new()).collect(),
            capacity,
        }
    }

    pub fn alloc(&mut self) -> Option<Frame> {
        self.free.pop()
    }

    pub fn free(&mut self, frame: Frame) {
        debug_assert!(self.free.len() < self.capacity, "frame freed twice into its pool");
        self.free.push(frame);
    }

    pub fn available(&self) -> usize {
        self.free.len()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// Up to [`BATCH_SIZE`] frames read from one port.
pub struct Batch {
    frames: Vec<Frame>,
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            frames: Vec::with_capacity(BATCH_CAPACITY),
        }
    }
}

impl Batch {
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.frames.len() >= BATCH_SIZE
    }

    /// Adds a received frame; a batch holding [`BATCH_SIZE`] hands it back.
    pub fn push(&mut self, frame: Frame) -> Result<(), Frame> {
        if self.is_full() {
            return Err(frame);
        }
        self.frames.push(frame);
        Ok(())
    }

    /// Adds a frame a stage generated; refused at [`BATCH_CAPACITY`].
    pub fn push_generated(&mut self, frame: Frame) -> Result<(), Frame> {
        if self.frames.len() >= BATCH_CAPACITY {
            return Err(frame);
        }
        self.frames.push(frame);
        Ok(())
    }

    /// Swaps frame `index` for `other` and returns the one taken out.
    pub fn replace(&mut self, index: usize, other: Frame) -> Frame {
        std::mem::replace(&mut self.frames[index], other)
    }

    pub fn get(&self, index: usize) -> Option<&Frame> {
        self.frames.get(index)
    }

    pub fn frames(&self) -> &[Frame] {
        &self.frames
    }

    pub fn frames_mut(&mut self) -> &mut [Frame] {
        &mut self.frames
    }

    /// Gives every frame back to the pool.
    pub fn release(&mut self, pool: &mut PacketPool) {
        for frame in self.frames.drain(..) {
            pool.free(frame);
        }
    }
}

/// `gso_type` of the virtio-net header. Unknown values are data, not errors:
/// classify drops them with a counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GsoType {
    TcpV4,
    Udp,
    TcpV6,
    UdpL4,
    /// A TCP super-frame inside a VXLAN (UDP tunnel over IPv4) packet, as
    /// a TAP with the kernel's UDP-tunnel GSO hands it over: only the
    /// tunnel stage may take it, to decapsulate it whole.
    UdpTunnel {
        inner_v6: bool,
    },
    Unknown(u8),
}

/// A read-only view of the virtio-net header in front of a TAP frame.
///
/// No crate we use models this header (it is the kernel's, not a wire
/// format), so its few fields are read here, bounds-checked once.
pub struct VnetHdr<'a> {
    bytes: &'a [u8; VNET_HDR_LEN],
}

impl<'a> VnetHdr<'a> {
    pub const F_NEEDS_CSUM: u8 = 1;
    /// VIRTIO_NET_HDR_F_DATA_VALID: the device checked the checksums.
    pub const F_DATA_VALID: u8 = 2;
    const GSO_NONE: u8 = 0;
    const GSO_TCPV4: u8 = 1;
    const GSO_UDP: u8 = 3;
    const GSO_TCPV6: u8 = 4;
    const GSO_UDP_L4: u8 = 5;
    const GSO_ECN: u8 = 0x80;
    /// VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4: the super-frame is inside a UDP
    /// tunnel over IPv4 (with the 24-byte header's outer/inner offsets).
    const GSO_UDP_TUNNEL_IPV4: u8 = 0x20;

    /// The gso_type byte of a TCP super-frame inside a UDP tunnel over IPv4.
    pub fn tunnel_gso_type(inner: GsoType) -> Option<u8> {
        match inner {
            GsoType::TcpV4 => Some(Self::GSO_UDP_TUNNEL_IPV4 | Self::GSO_TCPV4),
            GsoType::TcpV6 => Some(Self::GSO_UDP_TUNNEL_IPV4 | Self::GSO_TCPV6),
            _ => None,
        }
    }

    /// The plain gso_type byte of an inner TCP super-frame.
    pub fn tcp_gso_type(inner_v6: bool) -> u8 {
        if inner_v6 {
            Self::GSO_TCPV6
        } else {
            Self::GSO_TCPV4
        }
    }

    /// Writes a whole header: GSO `gso_type` of `gso_size` with `hdr_len`
    /// bytes of headers, and the L4 checksum from `csum_start` stored at
    /// `csum_start + csum_offset` (relative to the Ethernet header).
    pub fn write_gso(out: &mut [u8; VNET_HDR_LEN], gso_type: u8, hdr_len: u16, gso_size: u16, csum: (u16, u16)) {
        *out = [0; VNET_HDR_LEN];
        out[0] = Self::F_NEEDS_CSUM;
        out[1] = gso_type;
        out[2..4].copy_from_slice(&hdr_len.to_le_bytes());
        out[4..6].copy_from_slice(&gso_size.to_le_bytes());
        out[6..8].copy_from_slice(&csum.0.to_le_bytes());
        out[8..10].copy_from_slice(&csum.1.to_le_bytes());
    }

    /// Writes a header that asks only for the L4 checksum: computed from
    /// `start` (relative to the Ethernet header), stored at `start + offset`.
    pub fn write_needs_csum(out: &mut [u8; VNET_HDR_LEN], start: u16, offset: u16) {
        *out = [0; VNET_HDR_LEN];
        out[0] = Self::F_NEEDS_CSUM;
        out[6..8].copy_from_slice(&start.to_le_bytes());
        out[8..10].copy_from_slice(&offset.to_le_bytes());
    }

    pub fn new_checked(frame: &'a [u8]) -> Option<VnetHdr<'a>> {
        let bytes = frame.get(..VNET_HDR_LEN)?.try_into().ok()?;
        Some(VnetHdr { bytes })
    }

    pub fn flags(&self) -> u8 {
        self.bytes[0]
    }

    pub fn gso(&self) -> Option<GsoType> {
        match self.bytes[1] & !Self::GSO_ECN {
            Self::GSO_NONE => None,
            t if t == Self::GSO_UDP_TUNNEL_IPV4 | Self::GSO_TCPV4 => Some(GsoType::UdpTunnel { inner_v6: false }),
            t if t == Self::GSO_UDP_TUNNEL_IPV4 | Self::GSO_TCPV6 => Some(GsoType::UdpTunnel { inner_v6: true }),
            Self::GSO_TCPV4 => Some(GsoType::TcpV4),
            Self::GSO_UDP => Some(GsoType::Udp),
            Self::GSO_TCPV6 => Some(GsoType::TcpV6),
            Self::GSO_UDP_L4 => Some(GsoType::UdpL4),
            other => Some(GsoType::Unknown(other)),
        }
    }

    fn u16_at(&self, at: usize) -> u16 {
        u16::from_le_bytes([self.bytes[at], self.bytes[at + 1]])
    }

    pub fn hdr_len(&self) -> u16 {
        self.u16_at(2)
    }

    pub fn gso_size(&self) -> u16 {
        self.u16_at(4)
    }

    pub fn csum_start(&self) -> u16 {
        self.u16_at(6)
    }

    pub fn csum_offset(&self) -> u16 {
        self.u16_at(8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_hands_out_each_frame_once_and_takes_them_back() {
        let mut pool = PacketPool::new(4);
        let frames: Vec<Frame> = (0..4).map(|_| pool.alloc().expect("frame")).collect();
        assert!(pool.alloc().is_none(), "an empty pool must say so, not allocate");
        assert_eq!(pool.available(), 0);
        for f in frames {
            pool.free(f);
        }
        assert_eq!(pool.available(), pool.capacity());
    }

    #[test]
    fn batch_is_bounded_and_release_returns_frames() {
        let mut pool = PacketPool::new(BATCH_SIZE + 1);
        let mut batch = Batch::default();
        for _ in 0..BATCH_SIZE {
            let f = pool.alloc().unwrap();
            assert!(batch.push(f).is_ok());
        }
        assert!(batch.is_full());
        let extra = pool.alloc().unwrap();
        let back = batch.push(extra).expect_err("a full batch refuses frames");
        pool.free(back);
        batch.release(&mut pool);
        assert!(batch.is_empty());
        assert_eq!(pool.available(), BATCH_SIZE + 1);
    }

    #[test]
    fn frame_rx_space_keeps_headroom_and_resets_meta() {
        let mut pool = PacketPool::new(1);
        let mut f = pool.alloc().unwrap();
        f.fill(&[1, 2, 3]);
        f.meta.eth_offset = Some(12);
        assert_eq!(f.data(), &[1, 2, 3]);
        let space = f.rx_space().len();
        assert_eq!(space, MAX_FRAME_LEN);
        assert_eq!(f.meta, Meta::default());
        assert!(f.is_empty());
    }

    #[test]
    fn vnet_header_fields_are_little_endian() {
        let raw = [1u8, 0x81, 54, 0, 0xa8, 0x05, 34, 0, 16, 0, 0, 0, 0xff];
        let h = VnetHdr::new_checked(&raw).unwrap();
        assert_eq!(h.flags(), VnetHdr::F_NEEDS_CSUM);
        assert_eq!(h.gso(), Some(GsoType::TcpV4), "the ECN bit does not change the type");
        assert_eq!(h.hdr_len(), 54);
        assert_eq!(h.gso_size(), 1448);
        assert_eq!(h.csum_start(), 34);
        assert_eq!(h.csum_offset(), 16);
        assert!(VnetHdr::new_checked(&raw[..11]).is_none());
        let odd = [0u8, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(VnetHdr::new_checked(&odd).unwrap().gso(), Some(GsoType::Unknown(9)));
    }
}
