//! Counters written by poll threads and read by the control thread.
//!
//! Each counter cell has exactly one writer, the poll thread it belongs to, so
//! an increment is a relaxed load and store: no locked instruction, no shared
//! cache line between threads (cells are 64-byte aligned). Readers sum the
//! cells of all threads. This is the "plain u64 per thread" of Snabb and
//! cloud-hypervisor, made visible to other threads without a publish step.

use std::sync::atomic::{AtomicU64, Ordering};

/// A counter with a single writer.
#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning thread may call this.
    #[inline]
    pub fn add(&self, n: u64) {
        let v = self.0.load(Ordering::Relaxed);
        self.0.store(v.wrapping_add(n), Ordering::Relaxed);
    }

    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Sets the value. Only the owning thread may call this.
    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }
}

/// Why a frame was dropped. Every reason has a counter and a name that
/// `vsctl port-stats` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Shorter than its headers, or longer than a port may deliver.
    Malformed,
    /// The virtio-net header asks for something we cannot honour.
    BadVnetHdr,
    /// Source MAC is multicast, broadcast or zero.
    BadSrcMac,
    /// Destination is an IEEE 802.1D reserved group (STP, LACP, pause...),
    /// which a bridge must not forward.
    ReservedGroup,
    /// The destination MAC was learned on the port the frame came in on.
    SameInPort,
    /// Flooded, but the bridge has no other port.
    NoDestination,
    /// The poll thread's pool was empty when the port had frames to read.
    NoBuffer,
    /// The output device's queue was full (EAGAIN).
    TxFull,
    /// The output device is down (EIO).
    TxLinkDown,
    /// Any other error while sending.
    TxError,
    /// Larger than the output port can carry (and not segmentable).
    TxOversize,
    /// Offload request (GSO, checksum) that could not be carried out for a
    /// port without offloads.
    TxSegmentError,
    /// A read from the device failed.
    RxError,
    /// For the gateway, but neither IPv4 nor ARP, or a broadcast/multicast
    /// IP destination.
    NotRoutable,
    /// IPv4 header checksum wrong.
    BadIpChecksum,
    /// TCP or UDP checksum wrong, from a port that does not say whether it
    /// checked (AF_XDP): neither complete nor a pseudo-header seed.
    BadL4Checksum,
    /// No bridge reachable from here holds the destination (ICMP unreachable sent).
    NoRoute,
    /// TTL ran out (ICMP time exceeded sent).
    TtlExceeded,
    /// To the gateway's own address, but not a ping.
    ToGateway,
    /// The next hop did not answer ARP in time, or too many frames waited.
    NeighUnresolved,
    /// TCP segment that fits no tracked connection or state.
    CtInvalid,
    /// TCP segment outside its connection's sequence windows.
    CtOutOfWindow,
    /// The connection table is full.
    CtTableFull,
    /// No masquerade port free for the destination.
    NatPortsExhausted,
    /// Masquerade needed, but the protocol has no ports to translate.
    NatUnsupported,
    /// VXLAN for us whose outer headers are cut short.
    VxlanTruncated,
    /// VXLAN for us with a bad outer IPv4 header.
    VxlanBadIpv4,
    /// VXLAN for us in outer IPv4 fragments.
    VxlanFragment,
    /// VXLAN for us whose UDP length does not fit.
    VxlanBadUdpLength,
    /// VXLAN for us with a wrong outer UDP checksum.
    VxlanBadChecksum,
    /// VXLAN for us with flags a plain VTEP does not accept.
    VxlanBadFlags,
    /// VXLAN for us with a VNI no bridge has.
    VxlanUnknownVni,
    /// VXLAN for us whose inner frame is shorter than an Ethernet header.
    VxlanInnerTooShort,
    /// Too large for the tunnel (and not a segmentable TCP super-frame).
    TunnelTooBig,
    /// From one remote VTEP to a MAC behind another (split horizon).
    TunnelToTunnel,
    /// From a guarded port with a MAC or IPv4 source not its own.
    SpoofedSrc,
    /// ARP from a guarded port naming a sender not itself.
    SpoofedArp,
    /// The container already holds its share of the connection table.
    CtHostLimit,
    /// The port used up its share of the gateway's own work (ARP, echo
    /// replies, ICMP errors) for now.
    SlowPathLimit,
    /// A later IPv4 fragment through NAT whose datagram's first fragment
    /// did not come in time (or no room was left to hold it until then).
    FragNoFirst,
    /// No room to remember a fragmented datagram's translation.
    FragTableFull,
    /// To or from an attachment a network policy isolates, and no rule of
    /// its policies allows it (or not IPv4 nor ARP).
    PolicyDenied,
}

impl DropReason {
    pub const COUNT: usize = 42;
    pub const ALL: [DropReason; DropReason::COUNT] = [
        DropReason::Malformed,
        DropReason::BadVnetHdr,
        DropReason::BadSrcMac,
        DropReason::ReservedGroup,
        DropReason::SameInPort,
        DropReason::NoDestination,
        DropReason::NoBuffer,
        DropReason::TxFull,
        DropReason::TxLinkDown,
        DropReason::TxError,
        DropReason::TxOversize,
        DropReason::TxSegmentError,
        DropReason::RxError,
        DropReason::NotRoutable,
        DropReason::BadIpChecksum,
        DropReason::BadL4Checksum,
        DropReason::NoRoute,
        DropReason::TtlExceeded,
        DropReason::ToGateway,
        DropReason::NeighUnresolved,
        DropReason::CtInvalid,
        DropReason::CtOutOfWindow,
        DropReason::CtTableFull,
        DropReason::NatPortsExhausted,
        DropReason::NatUnsupported,
        DropReason::VxlanTruncated,
        DropReason::VxlanBadIpv4,
        DropReason::VxlanFragment,
        DropReason::VxlanBadUdpLength,
        DropReason::VxlanBadChecksum,
        DropReason::VxlanBadFlags,
        DropReason::VxlanUnknownVni,
        DropReason::VxlanInnerTooShort,
        DropReason::TunnelTooBig,
        DropReason::TunnelToTunnel,
        DropReason::SpoofedSrc,
        DropReason::SpoofedArp,
        DropReason::CtHostLimit,
        DropReason::SlowPathLimit,
        DropReason::FragNoFirst,
        DropReason::FragTableFull,
        DropReason::PolicyDenied,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::BadVnetHdr => "bad-vnet-hdr",
            DropReason::BadSrcMac => "bad-src-mac",
            DropReason::ReservedGroup => "reserved-group",
            DropReason::SameInPort => "same-in-port",
            DropReason::NoDestination => "no-destination",
            DropReason::NoBuffer => "no-buffer",
            DropReason::TxFull => "tx-full",
            DropReason::TxLinkDown => "tx-link-down",
            DropReason::TxError => "tx-error",
            DropReason::TxOversize => "tx-oversize",
            DropReason::TxSegmentError => "tx-segment-error",
            DropReason::RxError => "rx-error",
            DropReason::NotRoutable => "not-routable",
            DropReason::BadIpChecksum => "bad-ip-checksum",
            DropReason::BadL4Checksum => "bad-l4-checksum",
            DropReason::NoRoute => "no-route",
            DropReason::TtlExceeded => "ttl-exceeded",
            DropReason::ToGateway => "to-gateway",
            DropReason::NeighUnresolved => "neigh-unresolved",
            DropReason::CtInvalid => "ct-invalid",
            DropReason::CtOutOfWindow => "ct-out-of-window",
            DropReason::CtTableFull => "ct-table-full",
            DropReason::NatPortsExhausted => "nat-ports-exhausted",
            DropReason::NatUnsupported => "nat-unsupported",
            DropReason::VxlanTruncated => "vxlan-truncated",
            DropReason::VxlanBadIpv4 => "vxlan-bad-ipv4",
            DropReason::VxlanFragment => "vxlan-fragment",
            DropReason::VxlanBadUdpLength => "vxlan-bad-udp-length",
            DropReason::VxlanBadChecksum => "vxlan-bad-checksum",
            DropReason::VxlanBadFlags => "vxlan-bad-flags",
            DropReason::VxlanUnknownVni => "vxlan-unknown-vni",
            DropReason::VxlanInnerTooShort => "vxlan-inner-too-short",
            DropReason::TunnelTooBig => "tunnel-too-big",
            DropReason::TunnelToTunnel => "tunnel-to-tunnel",
            DropReason::SpoofedSrc => "spoofed-src",
            DropReason::SpoofedArp => "spoofed-arp",
            DropReason::CtHostLimit => "ct-host-limit",
            DropReason::SlowPathLimit => "slow-path-limit",
            DropReason::FragNoFirst => "frag-no-first",
            DropReason::FragTableFull => "frag-table-full",
            DropReason::PolicyDenied => "policy-denied",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One poll thread's counters for one port.
#[repr(align(64))]
#[derive(Debug)]
pub struct PortCounters {
    pub rx_packets: Counter,
    pub rx_bytes: Counter,
    pub rx_gso_packets: Counter,
    pub tx_packets: Counter,
    pub tx_bytes: Counter,
    pub tx_gso_packets: Counter,
    drops: [Counter; DropReason::COUNT],
    /// The slow-path budget's current window and what of it is used.
    slow_window: Counter,
    slow_used: Counter,
}

/// The gateway's own work for one port (ARP, echo replies, ICMP errors) is
/// limited to this many frames per window and poll thread, so one
/// container's flood at the gateway cannot stall the others'.
pub const SLOW_PATH_BUDGET: u64 = 200;
pub const SLOW_PATH_WINDOW_MS: u64 = 100;

impl Default for PortCounters {
    fn default() -> Self {
        PortCounters {
            rx_packets: Counter::default(),
            rx_bytes: Counter::default(),
            rx_gso_packets: Counter::default(),
            tx_packets: Counter::default(),
            tx_bytes: Counter::default(),
            tx_gso_packets: Counter::default(),
            drops: std::array::from_fn(|_| Counter::default()),
            slow_window: Counter::default(),
            slow_used: Counter::default(),
        }
    }
}

impl PortCounters {
    #[inline]
    pub fn drop(&self, reason: DropReason) {
        self.drops[reason.index()].add(1);
    }

    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()].get()
    }

    /// Takes one unit of the port's slow-path budget (only the owning
    /// thread calls this); false when this window's is used up.
    #[inline]
    pub fn slow_path(&self, now_ms: u64) -> bool {
        let window = now_ms / SLOW_PATH_WINDOW_MS;
        if self.slow_window.get() != window {
            self.slow_window.set(window);
            self.slow_used.set(0);
        }
        if self.slow_used.get() >= SLOW_PATH_BUDGET {
            return false;
        }
        self.slow_used.add(1);
        true
    }
}

/// A port's counters: one cell per poll thread.
#[derive(Debug)]
pub struct PortStatsCells {
    cells: Box<[PortCounters]>,
}

/// A port's counters summed over all poll threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortTotals {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub rx_gso_packets: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub tx_gso_packets: u64,
    pub drops: [u64; DropReason::COUNT],
}

impl Default for PortTotals {
    fn default() -> Self {
        PortTotals {
            rx_packets: 0,
            rx_bytes: 0,
            rx_gso_packets: 0,
            tx_packets: 0,
            tx_bytes: 0,
            tx_gso_packets: 0,
            drops: [0; DropReason::COUNT],
        }
    }
}

impl PortStatsCells {
    pub fn new(threads: usize) -> PortStatsCells {
        PortStatsCells {
            cells: (0..threads.max(1)).map(|_| PortCounters::default()).collect(),
        }
    }

    /// The cell poll thread `thread` writes.
    #[inline]
    pub fn cell(&self, thread: usize) -> &PortCounters {
        &self.cells[thread % self.cells.len()]
    }

    pub fn totals(&self) -> PortTotals {
        let mut t = PortTotals::default();
        for c in self.cells.iter() {
            t.rx_packets += c.rx_packets.get();
            t.rx_bytes += c.rx_bytes.get();
            t.rx_gso_packets += c.rx_gso_packets.get();
            t.tx_packets += c.tx_packets.get();
            t.tx_bytes += c.tx_bytes.get();
            t.tx_gso_packets += c.tx_gso_packets.get();
            for r in DropReason::ALL {
                t.drops[r.index()] += c.drops(r);
            }
        }
        t
    }
}

impl PortTotals {
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }
}

/// A poll thread's own counters.
#[repr(align(64))]
#[derive(Default, Debug)]
pub struct PmdCounters {
    pub packets: Counter,
    pub busy_iterations: Counter,
    pub idle_iterations: Counter,
    pub sleeps: Counter,
    pub busy_ns: Counter,
    /// Bursts read from ports (one per port the thread looked at, frames
    /// or not): with many idle ports, how much readiness saves.
    pub port_reads: Counter,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_reasons_are_listed_once_in_index_order() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "{}", r.name());
        }
    }

    #[test]
    fn totals_sum_every_thread() {
        let cells = PortStatsCells::new(2);
        cells.cell(0).rx_packets.add(3);
        cells.cell(1).rx_packets.add(4);
        cells.cell(1).drop(DropReason::TxFull);
        let t = cells.totals();
        assert_eq!(t.rx_packets, 7);
        assert_eq!(t.drops(DropReason::TxFull), 1);
        assert_eq!(t.drops(DropReason::Malformed), 0);
    }

    #[test]
    fn the_slow_path_budget_refills_each_window() {
        let c = PortCounters::default();
        let granted = (0..SLOW_PATH_BUDGET + 10).filter(|_| c.slow_path(1_000)).count() as u64;
        assert_eq!(granted, SLOW_PATH_BUDGET);
        assert!(!c.slow_path(1_000 + SLOW_PATH_WINDOW_MS - 1), "same window");
        assert!(c.slow_path(1_000 + SLOW_PATH_WINDOW_MS), "the next window");
    }
}
