//! The immutable view of the configuration that poll threads forward with.
//!
//! The control thread builds a new [`Snapshot`] for every change and
//! publishes it in a [`SnapshotCell`]; each poll thread compares one atomic
//! generation number per loop iteration and takes the new snapshot (a mutex
//! and an `Arc` clone, only when the number moved) between batches. An old
//! snapshot, and the ports only it still holds, is freed when the last thread
//! lets go of it: RCU by reference count. The control thread can wait for
//! that grace period with the threads' `seen_generation` (see `pmd`).
//!
//! Built only by `control::snapshot_build`; holds the live ports and the
//! `tables` by `Arc` and knows nothing of the control plane or its types.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use ipnet::Ipv4Net;
use vswitch_nat::table::ConnTable;
use vswitch_policy::Compiled;
use vswitch_vxlan::Vni;

use crate::port::LivePort;
use crate::tables::fdb::{Fdb, PortHandle};
use crate::tables::neigh::NeighTable;
use crate::tables::publish::PublishTable;

/// An IPv4 network as the datapath tests it: the `ipnet` network the
/// control plane gives, with its first and last address worked out once.
/// (`ipnet`'s `contains` and `broadcast` work out the masks on every call:
/// ~45 instructions more per routed frame, callgrind on the `routed`
/// benchmark.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Net4 {
    pub net: Ipv4Net,
    first: u32,
    last: u32,
}

impl From<Ipv4Net> for Net4 {
    fn from(net: Ipv4Net) -> Net4 {
        Net4 {
            net,
            first: u32::from(net.network()),
            last: u32::from(net.broadcast()),
        }
    }
}

impl std::str::FromStr for Net4 {
    type Err = ipnet::AddrParseError;

    fn from_str(text: &str) -> Result<Net4, Self::Err> {
        Ok(Net4::from(text.parse::<Ipv4Net>()?.trunc()))
    }
}

impl Net4 {
    #[inline]
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        (self.first..=self.last).contains(&u32::from(ip))
    }

    #[inline]
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.last)
    }

    /// An address a host of the network may have: neither the network's
    /// own address nor its broadcast.
    #[inline]
    pub fn is_host(&self, ip: Ipv4Addr) -> bool {
        let ip = u32::from(ip);
        self.first < ip && ip < self.last
    }
}

/// Who a guarded port is: the only MAC and IPv4 address it may send as
/// (`pipeline::guard` enforces it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceGuard {
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
}

pub struct PortSlot {
    pub port: Arc<LivePort>,
    /// The port is its bridge's uplink: a router leg, not a bridge member.
    pub uplink: bool,
    /// Index of the port's bridge in [`Snapshot::bridges`].
    pub bridge: u32,
    /// The port's frames start with a virtio-net header.
    pub vnet_hdr: bool,
    /// The port may send only as itself (its lease's MAC and address).
    pub guard: Option<SourceGuard>,
    /// The port's attachment is isolated by a network policy: its index
    /// among [`PolicyView`]'s members.
    pub policy: Option<u32>,
}

pub struct BridgeSlot {
    pub fdb: Arc<Fdb>,
    /// Slots of the bridge's ports, the flood list.
    pub ports: Vec<u32>,
    /// The gateway, for a bridge with a subnet.
    pub l3: Option<BridgeL3>,
    /// The VXLAN tunnel, for a bridge stretched over hosts.
    pub tunnel: Option<TunnelL2>,
    /// The zone its policy connections are tracked in: one for all the
    /// bridges routed to each other, so both ends of a routed connection
    /// find it.
    pub policy_zone: u16,
}

/// Network policies compiled against every attachment (see
/// `pipeline::policy`).
pub struct PolicyView {
    pub compiled: Arc<Compiled>,
    /// An attachment's index among the members by (policy zone, address).
    pub members: hashbrown::HashMap<(u16, Ipv4Addr), u32>,
    /// By member: the bridge that keeps it apart from its other
    /// attachments (`icc` false), if any. Two members of one such bridge
    /// never reach each other, whatever the policies say.
    pub apart: Vec<Option<u32>>,
    /// Where the stages note connections allowed and refused (`observe`).
    pub flows: Arc<crate::flows::FlowLogs>,
    /// Connections allowed so far, each marked with the generation that
    /// allowed it: one of an older generation is judged again.
    pub ct: Arc<ConnTable>,
    pub generation: u64,
}

/// A bridge's VXLAN tunnel: one more member of the bridge, whose far side
/// is every remote VTEP.
pub struct TunnelL2 {
    pub vni: Vni,
    pub port: u16,
    /// Slot of the bridge whose uplink carries the tunnel.
    pub underlay: u32,
    /// Where floods from local ports go (head-end replication).
    pub remotes: Vec<Ipv4Addr>,
    pub learn: bool,
    /// Compute the outer UDP checksum on send.
    pub udp_csum: bool,
    /// `fdb-add` entries: MAC -> VTEP; looked up before learned ones.
    pub statics: HashMap<[u8; 6], Ipv4Addr>,
    /// The largest inner frame (Ethernet header included) one underlay
    /// packet carries: the uplink's MTU less the outer IPv4, UDP and VXLAN
    /// headers.
    pub max_inner: usize,
}

/// A tunnel an uplink carries: what arrives on `port` with `vni` belongs to
/// bridge `bridge`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TunnelIn {
    pub port: u16,
    pub vni: Vni,
    pub bridge: u32,
    pub learn: bool,
}

/// A routed bridge: vswitchd is the gateway of its subnet.
pub struct BridgeL3 {
    pub subnet: Net4,
    pub gateway: Ipv4Addr,
    pub gateway_mac: [u8; 6],
    /// Bridges (slots) this one routes to, itself first.
    pub routes_to: Vec<u32>,
    pub neigh: Arc<NeighTable>,
    /// Slot of the bridge's internal port: the host, which owns the gateway
    /// address and is the next hop for destinations no bridge holds.
    pub internal: Option<u32>,
    pub uplink: Option<UplinkL3>,
    /// Set when the bridge masquerades or publishes ports.
    pub nat: Option<NatL3>,
}

/// A bridge's NAT settings, as the datapath needs them.
pub struct NatL3 {
    pub masquerade: bool,
    /// The published ports of the uplink address: of every bridge that
    /// leaves through it (usually one).
    pub published: Vec<Arc<PublishTable>>,
    pub ct: Arc<ConnTable>,
    /// The conntrack zone: the bridge's, or its way out's.
    pub zone: u16,
}

/// A bridge's leg on the outside.
pub struct UplinkL3 {
    pub slot: u32,
    pub ip: Ipv4Addr,
    pub net: Net4,
    pub gw: Ipv4Addr,
    pub mac: [u8; 6],
    pub neigh: Arc<NeighTable>,
    /// The tunnels it carries, as the local VTEP (usually none or one).
    pub tunnels: Vec<TunnelIn>,
}

#[derive(Default)]
pub struct Snapshot {
    pub generation: u64,
    /// Indexed by port slot; slots of deleted ports are `None` until reused.
    pub ports: Vec<Option<PortSlot>>,
    /// Indexed by bridge slot.
    pub bridges: Vec<Option<BridgeSlot>>,
    /// For each poll thread, the port slots it reads.
    pub rx_assign: Vec<Vec<u32>>,
    /// Some bridge has a tunnel: only then does a batch pass the tunnel
    /// stage's outbound step.
    pub tunnels: bool,
    /// Some attachment is isolated: only then do batches pass the policy
    /// stages.
    pub policy: Option<PolicyView>,
}

impl Snapshot {
    #[inline]
    pub fn port(&self, slot: u32) -> Option<&PortSlot> {
        self.ports.get(slot as usize)?.as_ref()
    }

    #[inline]
    pub fn bridge(&self, slot: u32) -> Option<&BridgeSlot> {
        self.bridges.get(slot as usize)?.as_ref()
    }

    /// True when `handle` names a port that exists in this snapshot and has
    /// not failed: an FDB entry learned on a deleted port (whose slot may now
    /// belong to another) is not.
    #[inline]
    pub fn is_usable(&self, handle: PortHandle) -> bool {
        self.port(handle.slot)
            .is_some_and(|p| p.port.uid == handle.uid && p.port.fault().is_none())
    }

    /// The poll thread that reads `slot`, if any.
    pub fn reader_of(&self, slot: u32) -> Option<usize> {
        self.rx_assign.iter().position(|slots| slots.contains(&slot))
    }
}

pub struct SnapshotCell {
    current: Mutex<Arc<Snapshot>>,
    generation: AtomicU64,
}

impl SnapshotCell {
    pub fn new(initial: Snapshot) -> SnapshotCell {
        let generation = AtomicU64::new(initial.generation);
        SnapshotCell {
            current: Mutex::new(Arc::new(initial)),
            generation,
        }
    }

    /// Generation of the newest snapshot: one atomic load.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn load(&self) -> Arc<Snapshot> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub fn publish(&self, snapshot: Snapshot) {
        let generation = snapshot.generation;
        let old = {
            let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
            std::mem::replace(&mut *current, Arc::new(snapshot))
        };
        self.generation.store(generation, Ordering::Release);
        drop(old);
    }
}
