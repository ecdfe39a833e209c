//! The pipeline over in-memory ports: frames built with etherparse, outputs
//! read back from what each port "sent".

use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};

use etherparse::PacketBuilder;

use super::fdb::Fdb;
use super::*;
use crate::packet::{PacketPool, VNET_HDR_LEN};
use crate::port::{LivePort, PortFault, PortIo};
use crate::snapshot::{BridgeSlot, PortSlot};
use crate::stats::PortCounters;

/// A port whose output is a list of frames (Ethernet bytes, vnet header cut).
type Sent = Arc<Mutex<Vec<Vec<u8>>>>;

#[derive(Default)]
struct MemPort {
    sent: Sent,
}

impl PortIo for MemPort {
    fn rx_burst(&self, _: &mut PacketPool, _: &mut Batch, _: &PortCounters) -> Result<(), PortFault> {
        Ok(())
    }

    fn tx_burst(&self, batch: &Batch, which: &[u16], counters: &PortCounters) {
        let mut sent = self.sent.lock().unwrap();
        for &i in which {
            let f = batch.get(usize::from(i)).unwrap();
            sent.push(f.data()[VNET_HDR_LEN..].to_vec());
            counters.tx_packets.add(1);
        }
    }

    fn raw_fd(&self) -> RawFd {
        -1
    }

    fn has_vnet_hdr(&self) -> bool {
        true
    }
}

const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];
const BCAST: [u8; 6] = [0xff; 6];

struct World {
    snap: Snapshot,
    ports: Vec<Sent>,
    pool: PacketPool,
    scratch: Scratch,
}

impl World {
    /// Ports 0..n_first on bridge 0, the rest on bridge 1.
    fn new(n_ports: u32, n_first: u32, max_macs: usize) -> World {
        let mut snap = Snapshot {
            generation: 1,
            ..Default::default()
        };
        let mut ports = Vec::new();
        let fdbs = [Arc::new(Fdb::new(max_macs, 300)), Arc::new(Fdb::new(max_macs, 300))];
        let mut members = [Vec::new(), Vec::new()];
        for slot in 0..n_ports {
            let mem = MemPort::default();
            ports.push(mem.sent.clone());
            let bridge = u32::from(slot >= n_first);
            let io: Box<dyn PortIo> = Box::new(mem);
            let live = Arc::new(LivePort::new(u64::from(slot) + 100, format!("p{slot}"), io, 1));
            snap.ports.push(Some(PortSlot {
                port: live,
                bridge,
                vnet_hdr: true,
            }));
            members[bridge as usize].push(slot);
        }
        for (fdb, ports) in fdbs.into_iter().zip(members) {
            snap.bridges.push(Some(BridgeSlot { fdb, ports }));
        }
        let mut scratch = Scratch::default();
        scratch.fit(snap.ports.len());
        World {
            snap,
            ports,
            pool: PacketPool::new(64),
            scratch,
        }
    }

    /// Sends frames into port `slot` as one batch.
    fn send(&mut self, slot: u32, frames: &[Vec<u8>]) {
        let mut batch = Batch::default();
        for bytes in frames {
            let mut f = self.pool.alloc().expect("pool");
            let mut with_hdr = vec![0u8; VNET_HDR_LEN];
            with_hdr.extend_from_slice(bytes);
            f.fill(&with_hdr);
            batch.push(f).unwrap();
        }
        run_batch(&self.snap, 0, slot, &mut batch, &mut self.scratch, 1_000);
        batch.release(&mut self.pool);
    }

    /// Takes what port `slot` sent so far.
    fn sent(&self, slot: usize) -> Vec<Vec<u8>> {
        std::mem::take(&mut *self.ports[slot].lock().unwrap())
    }

    fn drops(&self, slot: u32, reason: DropReason) -> u64 {
        self.snap.port(slot).unwrap().port.stats.totals().drops(reason)
    }
}

fn udp(src: [u8; 6], dst: [u8; 6], payload: &[u8]) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(src, dst)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(1000, 2000);
    let mut out = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut out, payload).unwrap();
    out
}

#[test]
fn unknown_unicast_floods_to_every_other_port_and_never_back() {
    let mut w = World::new(3, 3, 100);
    let frame = udp(MAC_A, MAC_B, b"hello");
    w.send(0, std::slice::from_ref(&frame));
    assert!(w.sent(0).is_empty(), "never back to the ingress port");
    assert_eq!(w.sent(1), vec![frame.clone()]);
    assert_eq!(w.sent(2), vec![frame]);
}

#[test]
fn after_learning_unicast_goes_to_one_port_only() {
    let mut w = World::new(3, 3, 100);
    w.send(0, &[udp(MAC_A, MAC_B, b"1")]);
    w.send(1, &[udp(MAC_B, MAC_A, b"2")]);
    assert_eq!(w.sent(0).len(), 1, "B -> A goes to A, learned from the first frame");
    assert!(w.sent(2).iter().all(|f| f[12..14] == [0x08, 0x00]), "sanity");
    w.sent(1);
    w.sent(2);
    w.send(0, &[udp(MAC_A, MAC_B, b"3"), udp(MAC_A, MAC_B, b"4")]);
    assert_eq!(w.sent(1).len(), 2);
    assert!(w.sent(2).is_empty(), "a learned destination is not flooded");
}

#[test]
fn broadcast_floods_within_the_bridge_only() {
    let mut w = World::new(4, 2, 100);
    w.send(0, &[udp(MAC_A, BCAST, b"who")]);
    assert_eq!(w.sent(1).len(), 1);
    assert!(w.sent(2).is_empty() && w.sent(3).is_empty(), "bridges are isolated");
    // The same MAC on the other bridge is a different entry.
    w.send(2, &[udp(MAC_B, MAC_A, b"x")]);
    assert_eq!(w.sent(3).len(), 1, "flooded on bridge 1: A is unknown there");
    assert!(w.sent(0).is_empty());
}

#[test]
fn bad_frames_are_dropped_by_name() {
    let mut w = World::new(2, 2, 100);
    let multicast_src = udp([3, 0, 0, 0, 0, 1], MAC_B, b"x");
    let zero_src = udp([0; 6], MAC_B, b"x");
    let stp = udp(MAC_A, [0x01, 0x80, 0xc2, 0, 0, 0], b"bpdu");
    let short = vec![0u8; 10];
    w.send(0, &[multicast_src, zero_src, stp, short]);
    assert!(w.sent(1).is_empty());
    assert_eq!(w.drops(0, DropReason::BadSrcMac), 2);
    assert_eq!(w.drops(0, DropReason::ReservedGroup), 1);
    assert_eq!(w.drops(0, DropReason::Malformed), 1);
}

#[test]
fn destination_behind_the_ingress_port_is_dropped() {
    let mut w = World::new(2, 2, 100);
    w.send(0, &[udp(MAC_A, BCAST, b"1"), udp(MAC_B, BCAST, b"2")]);
    // Both MACs were seen on port 0: A -> B now targets port 0 itself.
    assert_eq!(w.sent(1).len(), 2);
    w.send(0, &[udp(MAC_A, MAC_B, b"3")]);
    assert!(w.sent(1).is_empty());
    assert_eq!(w.drops(0, DropReason::SameInPort), 1);
}

#[test]
fn beyond_the_mac_cap_frames_are_flooded_not_learned() {
    let mut w = World::new(3, 3, 1);
    w.send(0, &[udp(MAC_A, BCAST, b"learned")]);
    w.send(1, &[udp(MAC_B, BCAST, b"not learned")]);
    let fdb = &w.snap.bridge(0).unwrap().fdb;
    assert_eq!(fdb.len(), 1);
    assert_eq!(fdb.limit_hits(), 1);
    w.sent(0);
    w.sent(1);
    w.sent(2);
    w.send(0, &[udp(MAC_A, MAC_B, b"to B")]);
    assert_eq!(w.sent(1).len(), 1, "still delivered, by flooding");
    assert_eq!(w.sent(2).len(), 1);
}

#[test]
fn an_entry_for_a_deleted_port_is_not_used() {
    let mut w = World::new(3, 3, 100);
    w.send(1, &[udp(MAC_B, BCAST, b"B lives on slot 1")]);
    // Slot 1 is now another port (another uid), as after del-port + add-port.
    let io: Box<dyn PortIo> = Box::new(MemPort {
        sent: w.ports[1].clone(),
    });
    w.snap.ports[1] = Some(PortSlot {
        port: Arc::new(LivePort::new(999, "new".into(), io, 1)),
        bridge: 0,
        vnet_hdr: true,
    });
    w.sent(0);
    w.sent(2);
    w.send(0, &[udp(MAC_A, MAC_B, b"x")]);
    assert_eq!(w.sent(2).len(), 1, "stale entry: flooded instead of trusted");
}

#[test]
fn a_batch_returns_every_frame_to_the_pool() {
    let mut w = World::new(3, 3, 100);
    let frames: Vec<Vec<u8>> = (0..BATCH_SIZE as u8).map(|i| udp(MAC_A, BCAST, &[i])).collect();
    w.send(0, &frames);
    assert_eq!(w.pool.available(), w.pool.capacity());
    assert_eq!(w.sent(1).len(), BATCH_SIZE);
    assert_eq!(
        w.sent(2).len(),
        BATCH_SIZE,
        "the flood sends the same buffers, in order"
    );
}
