//! The connection table: every tracked connection, found from a packet of
//! either direction by one lookup.
//!
//! A connection is known by two tuples: `orig`, as its first packet carried
//! it, and `reply`, as the answers arrive (after NAT: toward the translated
//! address). The table indexes the connection under both.
//!
//! Sharded, not per core. A connection's two directions come in on different
//! ports (a container's, the uplink's), which may belong to different poll
//! threads; a per-core table would need the masquerade port range split per
//! core *and* every port's traffic steered to one core by tuple, which TAP
//! and veth queues cannot do. So: shards keyed by tuple, each a mutex held
//! for one lookup or insert; the connection's own state sits behind its own
//! lock, taken by the packet that updates it. Two poll threads meet only
//! when they touch the same shard at the same time.
//!
//! Expiry is lazy on lookup (an expired connection is gone for the packet
//! that finds it) and swept by housekeeping one shard at a time, never as a
//! stop-the-world scan on the fast path.
//!
//! Surviving a restart: [`ConnTable::export`] and [`ConnTable::import`]
//! carry the table across a clean stop (vswitchd saves it on SIGTERM).
//! After a crash nothing was saved; for a while after such a start
//! ([`ConnTable::pick_up_until`]) a plain TCP ACK that a translation policy
//! covers opens an established connection mid-stream, as the kernel's
//! conntrack does (`nf_conntrack_tcp_loose`), its sequence windows unknown
//! and so not checked. A masqueraded one is picked up only if it keeps its
//! source port, else its peer would not know it.
//!
//! Fair shares: every connection belongs to one container address (the one
//! that opened it, or the one a published port leads to), and no address
//! may hold more than `max_per_host` of them, so one container cannot fill
//! the table for the others. The counts are sharded like the table and
//! touched only when a connection is made or removed.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use std::time::Duration;

// hashbrown's default hasher (foldhash, seeded per table from the process's
// random state), as the FDB's: std's SipHash was an eighth of a NAT'd
// frame's time (criterion `pipeline/routed_nat`).
use hashbrown::HashMap;

use crate::frag::FragTable;
use crate::tcp::{self, Dir, TcpSeg, TcpState, Windows};
use crate::tuple::{Proto, Tuple};

const SHARDS: usize = 32;
/// Source ports masquerade chooses from when the original one is taken.
pub const MASQ_PORTS: std::ops::RangeInclusive<u16> = 20_000..=59_999;
/// Ports tried for one new connection before giving up (bounded search).
const MASQ_TRIES: u32 = 64;

/// What a new connection's translation is, decided by the caller's policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Nat {
    /// Masquerade: leave with this source address (port kept if free).
    pub snat: Option<Ipv4Addr>,
    /// Port publishing: go to this address and port instead.
    pub dnat: Option<(Ipv4Addr, u16)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct State {
    tcp: Option<TcpState>,
    windows: Windows,
    /// Picked up mid-stream: the windows are not known, not checked.
    loose: bool,
    replied: bool,
    expires_ms: u64,
}

pub struct Conn {
    pub orig: Tuple,
    pub reply: Tuple,
    /// The container address the connection counts against, in its zone.
    owner: (u16, Ipv4Addr),
    state: Mutex<State>,
    /// The user's word on the connection, 0 until set: the policy stages
    /// keep here the generation of the policies that allowed it.
    pub mark: AtomicU64,
}

impl Conn {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn expired(&self, now_ms: u64) -> bool {
        self.state().expires_ms <= now_ms
    }

    /// The tuple a packet in direction `dir` leaves with.
    pub fn translated(&self, dir: Dir) -> Tuple {
        match dir {
            Dir::Original => self.reply.reversed(),
            Dir::Reply => self.orig.reversed(),
        }
    }
}

/// Why a packet found no connection to belong to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtDrop {
    /// TCP segment that fits no connection or no state (e.g. an ACK with no
    /// connection).
    Invalid,
    /// TCP segment outside the sequence windows of its connection.
    OutOfWindow,
    /// The table is full: new connections wait until entries expire.
    TableFull,
    /// No free masquerade port for this destination.
    PortsExhausted,
    /// The container already holds its share of the table.
    HostLimit,
}

/// Counters, all monotonic except `entries`.
#[derive(Debug, Default)]
pub struct CtStats {
    pub creates: AtomicU64,
    pub expiries: AtomicU64,
    pub invalid: AtomicU64,
    pub out_of_window: AtomicU64,
    pub table_full: AtomicU64,
    pub ports_exhausted: AtomicU64,
    pub host_limit: AtomicU64,
    /// TCP connections picked up mid-stream after a start without a saved table.
    pub picked_up: AtomicU64,
}

/// A packet, as conntrack needs to see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    pub tuple: Tuple,
    /// The TCP flags and sequence numbers, for TCP.
    pub tcp: Option<TcpSeg>,
}

/// The connection a packet belongs to and the direction it travels.
#[derive(Clone)]
pub struct Tracked {
    pub conn: Arc<Conn>,
    pub dir: Dir,
}

type Shard = Mutex<HashMap<Tuple, (Arc<Conn>, Dir)>>;
/// Connections per container address (zone, address).
type HostShard = Mutex<HashMap<(u16, Ipv4Addr), usize>>;

pub struct ConnTable {
    shards: Box<[Shard]>,
    hosts: Box<[HostShard]>,
    entries: AtomicUsize,
    max_entries: usize,
    max_per_host: usize,
    timeouts: Timeouts,
    /// Until when (ms) established TCP flows are picked up mid-stream.
    pickup_until_ms: AtomicU64,
    /// TCP segments are checked against the sequence windows (false: only
    /// the states are tracked, for a table that does not see every
    /// segment).
    check_windows: bool,
    pub stats: CtStats,
    /// What the fragments of translated datagrams become.
    pub frags: FragTable,
}

fn host_shard_of(owner: &(u16, Ipv4Addr)) -> usize {
    (u32::from(owner.1).wrapping_mul(2_654_435_761) ^ u32::from(owner.0)) as usize % SHARDS
}

fn shard_of(t: &Tuple) -> usize {
    let a = u32::from(t.src) ^ u32::from(t.dst).rotate_left(16);
    let b = u32::from(t.src_port) << 16 | u32::from(t.dst_port);
    ((a ^ b.rotate_left(7) ^ u32::from(t.zone)) as usize) % SHARDS
}

/// How long idle connections live. The defaults are the kernel's; the
/// established-TCP, UDP and ICMP ones can be changed (vswitchd flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp_established: Duration,
    pub udp: Duration,
    pub udp_replied: Duration,
    pub icmp: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp_established: tcp::timeout(TcpState::Established),
            udp: tcp::udp_timeout(false),
            udp_replied: tcp::udp_timeout(true),
            icmp: tcp::ICMP_TIMEOUT,
        }
    }
}

impl Timeouts {
    fn ms(&self, state: &State, proto: Proto) -> u64 {
        let d = match (proto, state.tcp) {
            (Proto::Tcp, Some(TcpState::Established)) => self.tcp_established,
            (Proto::Tcp, Some(s)) => tcp::timeout(s),
            (Proto::Udp, _) if state.replied => self.udp_replied,
            (Proto::Udp, _) => self.udp,
            _ => self.icmp,
        };
        d.as_millis() as u64
    }
}

impl ConnTable {
    pub fn new(max_entries: usize) -> ConnTable {
        ConnTable::with_timeouts(max_entries, Timeouts::default())
    }

    pub fn with_timeouts(max_entries: usize, timeouts: Timeouts) -> ConnTable {
        ConnTable {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hosts: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            entries: AtomicUsize::new(0),
            max_entries,
            max_per_host: max_entries,
            timeouts,
            pickup_until_ms: AtomicU64::new(0),
            check_windows: true,
            stats: CtStats::default(),
            frags: FragTable::new(),
        }
    }

    /// Caps the connections one container address may hold (at most the
    /// whole table).
    pub fn with_max_per_host(mut self, max: usize) -> ConnTable {
        self.max_per_host = max.clamp(1, self.max_entries.max(1));
        self
    }

    /// Tracks TCP states only, not sequence windows: for a table that is
    /// not shown every segment (the policy stages skip the segments of a
    /// flow they just allowed).
    pub fn without_windows(mut self) -> ConnTable {
        self.check_windows = false;
        self
    }

    pub fn max_per_host(&self) -> usize {
        self.max_per_host
    }

    fn hosts(&self, owner: &(u16, Ipv4Addr)) -> MutexGuard<'_, HashMap<(u16, Ipv4Addr), usize>> {
        self.hosts[host_shard_of(owner)]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes one of `owner`'s share; false when it has none left.
    fn claim(&self, owner: &(u16, Ipv4Addr)) -> bool {
        let mut hosts = self.hosts(owner);
        let held = hosts.entry(*owner).or_insert(0);
        if *held >= self.max_per_host {
            return false;
        }
        *held += 1;
        true
    }

    fn release(&self, owner: &(u16, Ipv4Addr)) {
        let mut hosts = self.hosts(owner);
        if let Some(held) = hosts.get_mut(owner) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                hosts.remove(owner);
            }
        }
    }

    /// Connections `ip` holds in `zone`.
    pub fn held_by(&self, zone: u16, ip: Ipv4Addr) -> usize {
        self.hosts(&(zone, ip)).get(&(zone, ip)).copied().unwrap_or(0)
    }

    fn shard(&self, t: &Tuple) -> MutexGuard<'_, HashMap<Tuple, (Arc<Conn>, Dir)>> {
        self.shards[shard_of(t)].lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn len(&self) -> usize {
        self.entries.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    /// The connection `t` belongs to and its direction, without touching
    /// its state (for ICMP errors that quote a packet of it).
    pub fn lookup(&self, t: &Tuple, now_ms: u64) -> Option<(Arc<Conn>, Dir)> {
        self.find(t, now_ms)
    }

    fn find(&self, t: &Tuple, now_ms: u64) -> Option<(Arc<Conn>, Dir)> {
        let found = self.shard(t).get(t).cloned();
        match found {
            Some((conn, _)) if conn.expired(now_ms) => {
                self.remove(&conn);
                self.stats.expiries.fetch_add(1, Ordering::Relaxed);
                None
            }
            other => other,
        }
    }

    /// Takes a connection out of the table (a policy no longer allows it).
    pub fn forget(&self, conn: &Arc<Conn>) {
        self.remove(conn);
    }

    /// Takes a connection out of both indexes.
    fn remove(&self, conn: &Arc<Conn>) {
        let mut gone = false;
        for t in [conn.orig, conn.reply] {
            let mut shard = self.shard(&t);
            if shard.get(&t).is_some_and(|(c, _)| Arc::ptr_eq(c, conn)) {
                shard.remove(&t);
                gone |= t == conn.orig;
            }
        }
        if gone {
            self.entries.fetch_sub(1, Ordering::Relaxed);
            self.release(&conn.owner);
        }
    }

    /// The connection `seen` belongs to, its state advanced; None when it
    /// belongs to none (nothing is created).
    pub fn track_existing(&self, seen: Seen, now_ms: u64) -> Option<Result<Tracked, CtDrop>> {
        let (conn, dir) = self.shard(&seen.tuple).get(&seen.tuple).cloned()?;
        self.advance(Tracked { conn, dir }, seen, now_ms)
    }

    /// [`ConnTable::track_existing`] for a packet whose connection the
    /// caller found already (for an earlier packet of the same tuple): its
    /// state advanced, without looking it up again. None when it expired
    /// (it is removed).
    pub fn advance(&self, found: Tracked, seen: Seen, now_ms: u64) -> Option<Result<Tracked, CtDrop>> {
        let Tracked { conn, dir } = found;
        // One lock of the connection for the expiry check and the update.
        let mut st = conn.state();
        if st.expires_ms <= now_ms {
            drop(st);
            self.remove(&conn);
            self.stats.expiries.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        if let (Some(state), Some(seg)) = (st.tcp, seen.tcp) {
            let Some(next) = tcp::next(state, dir, seg.kind) else {
                drop(st);
                self.stats.invalid.fetch_add(1, Ordering::Relaxed);
                return Some(Err(CtDrop::Invalid));
            };
            if matches!(state, TcpState::TimeWait | TcpState::Close) && next == TcpState::SynSent {
                // The 4-tuple opens again: a new sequence space.
                st.windows = Windows::open(&seg);
                st.loose = false;
            } else if self.check_windows && !st.loose && !st.windows.accept(state, dir, &seg) {
                drop(st);
                self.stats.out_of_window.fetch_add(1, Ordering::Relaxed);
                return Some(Err(CtDrop::OutOfWindow));
            }
            st.tcp = Some(next);
        }
        st.replied |= dir == Dir::Reply;
        st.expires_ms = now_ms + self.timeouts.ms(&st, seen.tuple.proto);
        drop(st);
        Some(Ok(Tracked { conn, dir }))
    }

    /// Finds or creates the connection of `seen` and advances its state.
    /// `policy` says how a new connection is translated.
    pub fn track(&self, seen: Seen, now_ms: u64, policy: impl FnOnce(&Tuple) -> Nat) -> Result<Tracked, CtDrop> {
        if let Some(existing) = self.track_existing(seen, now_ms) {
            return existing;
        }
        let pick_up = now_ms < self.pickup_until_ms.load(Ordering::Relaxed);
        let (tcp_state, windows, loose) = match seen.tcp {
            Some(seg) => match tcp::open(seg.kind) {
                Some(s) => (Some(s), Windows::open(&seg), false),
                None if pick_up && seg.kind == tcp::Segment::Ack => {
                    (Some(TcpState::Established), Windows::default(), true)
                }
                None => {
                    self.stats.invalid.fetch_add(1, Ordering::Relaxed);
                    return Err(CtDrop::Invalid);
                }
            },
            None => (None, Windows::default(), false),
        };
        if self.len() >= self.max_entries {
            self.stats.table_full.fetch_add(1, Ordering::Relaxed);
            return Err(CtDrop::TableFull);
        }
        let nat = policy(&seen.tuple);
        let orig = seen.tuple;
        // The container it belongs to: the one a published port leads to,
        // else the one that opened it.
        let owner = (orig.zone, nat.dnat.map_or(orig.src, |(ip, _)| ip));
        let mut toward = orig;
        if let Some((ip, port)) = nat.dnat {
            toward = toward.with_dst(ip, port);
        }
        let reply = match nat.snat {
            None => toward.reversed(),
            Some(ip) => match self.free_source(&toward, ip, now_ms) {
                // Picked up: the peer knows only the port it had.
                Some(port) if loose && port != toward.src_port => {
                    self.stats.invalid.fetch_add(1, Ordering::Relaxed);
                    return Err(CtDrop::Invalid);
                }
                Some(port) => toward.with_src(ip, port).reversed(),
                None => {
                    self.stats.ports_exhausted.fetch_add(1, Ordering::Relaxed);
                    return Err(CtDrop::PortsExhausted);
                }
            },
        };
        let state = State {
            tcp: tcp_state,
            windows,
            loose,
            replied: false,
            expires_ms: 0,
        };
        if !self.claim(&owner) {
            self.stats.host_limit.fetch_add(1, Ordering::Relaxed);
            return Err(CtDrop::HostLimit);
        }
        let conn = Arc::new(Conn {
            orig,
            reply,
            owner,
            state: Mutex::new(state),
            mark: AtomicU64::new(0),
        });
        {
            let mut st = conn.state();
            st.expires_ms = now_ms + self.timeouts.ms(&st, orig.proto);
        }
        // Both indexes, one shard at a time; a racing insert of the same
        // tuple by another thread loses to the first (its packet is tracked
        // by that connection next time).
        {
            let mut shard = self.shard(&orig);
            if shard.contains_key(&orig) {
                self.release(&owner);
                return shard
                    .get(&orig)
                    .map(|(c, d)| Tracked {
                        conn: c.clone(),
                        dir: *d,
                    })
                    .ok_or(CtDrop::Invalid);
            }
            shard.insert(orig, (conn.clone(), Dir::Original));
        }
        self.shard(&reply).insert(reply, (conn.clone(), Dir::Reply));
        self.entries.fetch_add(1, Ordering::Relaxed);
        self.stats.creates.fetch_add(1, Ordering::Relaxed);
        if loose {
            self.stats.picked_up.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Tracked {
            conn,
            dir: Dir::Original,
        })
    }

    /// A source port on `ip` for a connection going `toward`: its own port
    /// if free, else one of [`MASQ_PORTS`], tried at most [`MASQ_TRIES`]
    /// times from a start that depends on the tuple.
    fn free_source(&self, toward: &Tuple, ip: Ipv4Addr, now_ms: u64) -> Option<u16> {
        let taken = |port: u16| self.find(&toward.with_src(ip, port).reversed(), now_ms).is_some();
        if !taken(toward.src_port) {
            return Some(toward.src_port);
        }
        let span = u32::from(MASQ_PORTS.end() - MASQ_PORTS.start()) + 1;
        let start = (shard_of(toward) as u32).wrapping_mul(2_654_435_761) ^ u32::from(toward.src_port);
        (0..MASQ_TRIES)
            .map(|i| MASQ_PORTS.start() + (start.wrapping_add(i.wrapping_mul(7919)) % span) as u16)
            .find(|&port| !taken(port))
    }

    /// Removes expired connections, one shard at a time (housekeeping).
    pub fn sweep(&self, now_ms: u64) -> usize {
        self.sweep_each(now_ms, |_| {})
    }

    /// [`ConnTable::sweep`], showing `gone` each connection it removes.
    pub fn sweep_each(&self, now_ms: u64, mut gone: impl FnMut(&Conn)) -> usize {
        let mut removed = 0;
        for i in 0..SHARDS {
            let expired: Vec<Arc<Conn>> = {
                let shard = self.shards[i].lock().unwrap_or_else(PoisonError::into_inner);
                shard
                    .values()
                    .filter(|(c, d)| *d == Dir::Original && c.expired(now_ms))
                    .map(|(c, _)| c.clone())
                    .collect()
            };
            for conn in expired {
                self.remove(&conn);
                gone(&conn);
                removed += 1;
            }
        }
        self.stats.expiries.fetch_add(removed as u64, Ordering::Relaxed);
        self.frags.sweep(now_ms);
        removed
    }

    /// Removes the connections `which` selects; returns how many.
    pub fn flush(&self, which: impl Fn(&Conn) -> bool) -> usize {
        let mut removed = 0;
        for i in 0..SHARDS {
            let chosen: Vec<Arc<Conn>> = {
                let shard = self.shards[i].lock().unwrap_or_else(PoisonError::into_inner);
                shard
                    .values()
                    .filter(|(c, d)| *d == Dir::Original && which(c))
                    .map(|(c, _)| c.clone())
                    .collect()
            };
            for conn in chosen {
                self.remove(&conn);
                removed += 1;
            }
        }
        removed
    }

    /// The live connections, for display: (orig, reply, TCP state, seconds left).
    pub fn snapshot(&self, now_ms: u64) -> Vec<(Tuple, Tuple, Option<TcpState>, u64)> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            for (conn, dir) in shard.values() {
                if *dir != Dir::Original {
                    continue;
                }
                let st = *conn.state();
                if st.expires_ms > now_ms {
                    out.push((conn.orig, conn.reply, st.tcp, (st.expires_ms - now_ms) / 1000));
                }
            }
        }
        out
    }
}

mod saved;
pub use saved::SavedConn;

#[cfg(test)]
mod tests;
