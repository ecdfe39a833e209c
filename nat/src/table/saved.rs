//! The table across a restart: export and import (vswitchd saves the
//! table on SIGTERM and puts it back at start-up), and the window after a
//! crash in which established TCP flows are picked up mid-stream.

use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use super::{Conn, ConnTable, State};
use crate::tcp::{Dir, TcpState, Windows};
use crate::tuple::Tuple;

/// One connection as saved across a restart.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SavedConn {
    pub orig: Tuple,
    pub reply: Tuple,
    pub owner: Ipv4Addr,
    pub tcp: Option<TcpState>,
    pub windows: Windows,
    #[serde(default)]
    pub loose: bool,
    pub replied: bool,
    /// Milliseconds it had left to live when saved.
    pub expires_in_ms: u64,
}

impl ConnTable {
    /// Picks up established TCP flows mid-stream until `ms` (a start after
    /// a crash: their connections were not saved).
    pub fn pick_up_until(&self, ms: u64) {
        self.pickup_until_ms.store(ms, Ordering::Relaxed);
    }

    /// The live connections, to be saved across a restart.
    pub fn export(&self, now_ms: u64) -> Vec<SavedConn> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            for (conn, _) in shard.values().filter(|(_, d)| *d == Dir::Original) {
                let st = *conn.state();
                if st.expires_ms > now_ms {
                    out.push(SavedConn {
                        orig: conn.orig,
                        reply: conn.reply,
                        owner: conn.owner.1,
                        tcp: st.tcp,
                        windows: st.windows,
                        loose: st.loose,
                        replied: st.replied,
                        expires_in_ms: st.expires_ms - now_ms,
                    });
                }
            }
        }
        out
    }

    /// Puts saved connections back, their zones mapped by `zone` (None:
    /// the zone is gone, the connection too), `elapsed_ms` after they were
    /// saved. Returns how many were put back; the table's limits hold.
    pub fn import(
        &self,
        saved: Vec<SavedConn>,
        now_ms: u64,
        elapsed_ms: u64,
        zone: impl Fn(u16) -> Option<u16>,
    ) -> usize {
        let mut n = 0;
        for s in saved {
            let (Some(z), Some(left)) = (zone(s.orig.zone), s.expires_in_ms.checked_sub(elapsed_ms)) else {
                continue;
            };
            if left == 0 || self.len() >= self.max_entries {
                continue;
            }
            let (orig, reply) = (Tuple { zone: z, ..s.orig }, Tuple { zone: z, ..s.reply });
            let owner = (z, s.owner);
            if self.shard(&orig).contains_key(&orig) || self.shard(&reply).contains_key(&reply) || !self.claim(&owner) {
                continue;
            }
            let conn = Arc::new(Conn {
                orig,
                reply,
                owner,
                state: Mutex::new(State {
                    tcp: s.tcp,
                    windows: s.windows,
                    loose: s.loose,
                    replied: s.replied,
                    expires_ms: now_ms + left,
                }),
                mark: std::sync::atomic::AtomicU64::new(0),
            });
            self.shard(&orig).insert(orig, (conn.clone(), Dir::Original));
            self.shard(&reply).insert(reply, (conn, Dir::Reply));
            self.entries.fetch_add(1, Ordering::Relaxed);
            n += 1;
        }
        n
    }
}
