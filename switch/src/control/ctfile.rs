//! The connection table across a restart: saved next to the configuration
//! on a clean stop (SIGTERM, or `vsctl ct-save` before an upgrade) and put
//! back at start-up before the first frame is forwarded, so connections
//! through masquerade and published ports live on. Zones are saved by
//! bridge name (a bridge's slot may differ in the next run). The file is
//! removed once read: a later crash must not bring back connections that
//! ended in between.
//!
//! After a start that found no saved table (a crash), the table picks up
//! established TCP flows mid-stream for `pickup` (see `vswitch_nat::table`).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};
use vswitch_nat::table::SavedConn;

use super::{ControlError, Manager};
use crate::clock;

pub const CT_FILE: &str = "conntrack.json";

#[derive(Serialize, Deserialize)]
struct SavedTable {
    /// Wall-clock milliseconds of the save.
    saved_unix_ms: u64,
    /// Zone -> the bridge it was.
    zones: BTreeMap<u16, String>,
    conns: Vec<SavedConn>,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Manager {
    fn ct_file(&self) -> PathBuf {
        self.state_dir.join(CT_FILE)
    }

    /// Writes the live connections next to the configuration (atomically).
    /// Returns how many.
    pub fn save_conntrack(&self) -> Result<usize, ControlError> {
        let table = SavedTable {
            saved_unix_ms: unix_ms(),
            zones: (self.bridges.iter())
                .map(|(name, b)| (b.slot as u16, name.clone()))
                .collect(),
            conns: self.ct.export(clock::now_ms()),
        };
        let n = table.conns.len();
        let path = self.ct_file();
        let tmp = self.state_dir.join(format!("{CT_FILE}.tmp"));
        let write = || -> std::io::Result<()> {
            let mut file = File::create(&tmp)?;
            file.write_all(&serde_json::to_vec(&table).map_err(std::io::Error::other)?)?;
            file.sync_all()?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|source| ControlError::CtSave {
            path: path.display().to_string(),
            source,
        })?;
        info!(connections = n, path = %path.display(), "connection table saved");
        Ok(n)
    }

    /// At start-up: the saved table back, or (none saved, a configuration
    /// there: a crash) mid-stream pickup for `pickup`.
    pub(super) fn load_conntrack(&mut self, pickup: Duration) {
        let path = self.ct_file();
        let text = match fs::read(&path) {
            Ok(text) => text,
            Err(_) => {
                if !self.desired.bridges.is_empty() && !pickup.is_zero() {
                    self.ct.pick_up_until(clock::now_ms() + pickup.as_millis() as u64);
                    info!(
                        secs = pickup.as_secs(),
                        "no saved connection table: picking up established TCP flows mid-stream"
                    );
                }
                return;
            }
        };
        let _ = fs::remove_file(&path);
        let table: SavedTable = match serde_json::from_slice(&text) {
            Ok(t) => t,
            Err(err) => {
                warn!(path = %path.display(), %err, "saved connection table unreadable: ignored");
                return;
            }
        };
        let zones: BTreeMap<u16, u16> = (table.zones.iter())
            .filter_map(|(old, name)| Some((*old, self.bridges.get(name)?.slot as u16)))
            .collect();
        let elapsed = unix_ms().saturating_sub(table.saved_unix_ms);
        let saved = table.conns.len();
        let back = self
            .ct
            .import(table.conns, clock::now_ms(), elapsed, |z| zones.get(&z).copied());
        info!(
            saved,
            restored = back,
            elapsed_ms = elapsed,
            "connection table restored"
        );
    }
}
