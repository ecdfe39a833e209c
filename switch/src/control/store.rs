//! The configuration on disk: `state.json`, the whole desired state as of
//! one change, and `state.journal`, one line per change since (its
//! sequence number and what it changed, a [`Delta`]), appended and
//! fdatasynced before the change is answered: ovsdb's way.
//!
//! Why a journal: with 2000 ports, writing the whole state for each change
//! (600 KB of JSON, two fsyncs and a rename) was more than half of a
//! publish's time in vswitchd; a line is ~100 bytes and one fdatasync
//! (0.13 ms here). Once the journal is longer than the state file (and
//! [`FOLD_AT`]), the next change writes the whole state again and empties
//! the journal; so does a change a delta cannot say exactly. The state file
//! is written atomically: a temporary file, fsynced, renamed over the old
//! one (which stays beside it as `state.json.prev`, a second name, not a
//! copy), and the directory fsynced.
//!
//! The state file carries the number of the last change in it (`seq`);
//! journal lines at or below it are skipped (a crash between writing the
//! state file and emptying the journal leaves them). A last line without
//! its newline is a change vswitchd died writing, never answered: it is cut
//! off with a warning. Any other damage stops the start with the way out.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::warn;

use super::config::{DesiredState, STATE_VERSION};
use super::delta::{Delta, DeltaError};
use super::validate::Invalid;

pub const STATE_FILE: &str = "state.json";
pub const JOURNAL_FILE: &str = "state.journal";
/// The journal is folded into the state file once it is longer than this
/// and than the state file: a small configuration's changes stay in the
/// journal for a while, a large one's are rewritten at most once per its
/// size in journal lines.
pub const FOLD_AT: u64 = 64 * 1024;

/// The state file as written: the state and the last change in it.
#[derive(Serialize)]
struct BaseOut<'a> {
    #[serde(flatten)]
    state: &'a DesiredState,
    seq: u64,
}

/// The state file as read (files written before the journal have no `seq`).
#[derive(Deserialize)]
struct BaseIn {
    #[serde(flatten)]
    state: DesiredState,
    #[serde(default)]
    seq: u64,
}

/// A journal line: one committed change.
#[derive(Serialize, Deserialize)]
struct Entry {
    seq: u64,
    #[serde(flatten)]
    delta: Delta,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read state file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("state file {path} is not valid ({way_out}; vswitchd will not guess)")]
    Parse {
        path: PathBuf,
        way_out: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("the saved configuration in {path} breaks a rule ({way_out})")]
    Invalid {
        path: PathBuf,
        way_out: String,
        #[source]
        source: Invalid,
    },
    #[error("state file {path} has version {found}; this vswitchd reads version {STATE_VERSION}")]
    Version { path: PathBuf, found: u32 },
    #[error("state journal {path} is damaged at line {line} ({way_out}; vswitchd will not guess)")]
    Journal {
        path: PathBuf,
        line: usize,
        way_out: String,
        #[source]
        source: JournalDamage,
    },
    #[error("cannot write state file {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What is wrong with a journal line.
#[derive(Debug, thiserror::Error)]
pub enum JournalDamage {
    #[error("it is not a change")]
    Parse(#[source] serde_json::Error),
    #[error("change {found} follows change {after}: the ones between are missing")]
    Gap { after: u64, found: u64 },
    #[error("it does not fit the configuration before it")]
    Apply(#[source] DeltaError),
}

fn prev_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".prev");
    PathBuf::from(name)
}

/// What a user can do about a damaged state file.
fn way_out(dir: &Path) -> String {
    let (path, journal) = (dir.join(STATE_FILE), dir.join(JOURNAL_FILE));
    let prev = prev_path(&path);
    if prev.exists() {
        format!(
            "an earlier configuration is in {}: move it over {} and move {} away to start from it, or move all three away to start empty",
            prev.display(),
            path.display(),
            journal.display()
        )
    } else {
        format!("fix it, or move it and {} away to start empty", journal.display())
    }
}

/// What a user can do about a damaged journal.
fn journal_way_out(dir: &Path) -> String {
    format!(
        "move it away to start from the configuration in {}, without the changes made after that was written",
        dir.join(STATE_FILE).display()
    )
}

/// The saved configuration and where the next change goes.
pub struct Store {
    dir: PathBuf,
    /// The number of the last change saved.
    seq: u64,
    state_len: u64,
    journal_len: u64,
    /// The journal's end may not be a whole line (an append failed and
    /// could not be cut back): the next change writes the state file.
    fold: bool,
}

impl Store {
    /// Reads the configuration saved in `dir` (none: nothing configured
    /// yet) and checks it against the rules.
    pub fn open(dir: &Path) -> Result<(DesiredState, Store), StateError> {
        let path = dir.join(STATE_FILE);
        let (mut state, seq, state_len) = match fs::read(&path) {
            Ok(text) => {
                let base: BaseIn = serde_json::from_slice(&text).map_err(|source| StateError::Parse {
                    path: path.clone(),
                    way_out: way_out(dir),
                    source,
                })?;
                if base.state.version != STATE_VERSION {
                    return Err(StateError::Version {
                        path,
                        found: base.state.version,
                    });
                }
                (base.state, base.seq, text.len() as u64)
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => (DesiredState::default(), 0, 0),
            Err(source) => return Err(StateError::Read { path, source }),
        };
        let mut store = Store {
            dir: dir.to_path_buf(),
            seq,
            state_len,
            journal_len: 0,
            fold: false,
        };
        let replayed = store.replay(&mut state)?;
        state.validate().map_err(|source| StateError::Invalid {
            path: if replayed > 0 {
                dir.join(JOURNAL_FILE)
            } else {
                dir.join(STATE_FILE)
            },
            way_out: if replayed > 0 {
                journal_way_out(dir)
            } else {
                way_out(dir)
            },
            source,
        })?;
        Ok((state, store))
    }

    /// Applies the journal's changes after the state file's to `state`;
    /// how many.
    fn replay(&mut self, state: &mut DesiredState) -> Result<usize, StateError> {
        let path = self.dir.join(JOURNAL_FILE);
        let text = match fs::read(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(source) => return Err(StateError::Read { path, source }),
        };
        let damaged = |line: usize, source: JournalDamage| StateError::Journal {
            path: path.clone(),
            line,
            way_out: journal_way_out(&self.dir),
            source,
        };
        let mut whole = 0;
        let mut replayed = 0;
        for (i, line) in text.split_inclusive(|&b| b == b'\n').enumerate() {
            let Some(json) = line.strip_suffix(b"\n") else {
                warn!(path = %path.display(), line = i + 1, "the last change in the journal was not written whole (vswitchd stopped while saving it, before answering it); it is left out");
                break;
            };
            let entry: Entry = serde_json::from_slice(json).map_err(|e| damaged(i + 1, JournalDamage::Parse(e)))?;
            if entry.seq > self.seq {
                if entry.seq != self.seq + 1 {
                    let gap = JournalDamage::Gap {
                        after: self.seq,
                        found: entry.seq,
                    };
                    return Err(damaged(i + 1, gap));
                }
                (entry.delta.apply(state)).map_err(|e| damaged(i + 1, JournalDamage::Apply(e)))?;
                self.seq = entry.seq;
                replayed += 1;
            }
            whole += line.len();
        }
        self.journal_len = whole as u64;
        if whole < text.len() {
            let cut = OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_len(whole as u64).and_then(|()| f.sync_all()));
            if let Err(err) = cut {
                warn!(path = %path.display(), %err, "cannot cut the journal's torn end; the next change rewrites the state file");
                self.fold = true;
            }
        }
        Ok(replayed)
    }

    /// Saves the change from `old` to `new`: a journal line, or the whole
    /// state. On failure nothing saved changed.
    pub fn save(&mut self, old: &DesiredState, new: &DesiredState) -> Result<(), StateError> {
        let long = self.journal_len > self.state_len.max(FOLD_AT);
        let delta = if self.fold || long {
            None
        } else {
            Delta::between(old, new)
        };
        match delta {
            Some(delta) => {
                #[cfg(debug_assertions)]
                {
                    let mut replayed = old.clone();
                    let applies = delta.clone().apply(&mut replayed).is_ok();
                    debug_assert!(applies && replayed == *new, "a delta that does not replay: {delta:?}");
                }
                self.append(Entry {
                    seq: self.seq + 1,
                    delta,
                })
            }
            None => self.write_state(new),
        }
    }

    fn append(&mut self, entry: Entry) -> Result<(), StateError> {
        let path = self.dir.join(JOURNAL_FILE);
        let mut line = serde_json::to_vec(&entry).map_err(|e| StateError::Write {
            path: path.clone(),
            source: io::Error::other(e),
        })?;
        line.push(b'\n');
        let mut file = None;
        let written = (|| -> io::Result<()> {
            let f = file.insert(OpenOptions::new().append(true).create(true).open(&path)?);
            f.write_all(&line)?;
            f.sync_data()?;
            if self.journal_len == 0 {
                // A new journal file is a new name in the directory.
                File::open(&self.dir)?.sync_all()?;
            }
            Ok(())
        })();
        if let Err(source) = written {
            // Cut back what was written of the line, or fold next time.
            let cut = file.map(|f| f.set_len(self.journal_len).and_then(|()| f.sync_data()));
            if !matches!(cut, None | Some(Ok(()))) {
                self.fold = true;
            }
            return Err(StateError::Write { path, source });
        }
        self.seq = entry.seq;
        self.journal_len += line.len() as u64;
        Ok(())
    }

    /// Writes the whole state as the next change and empties the journal.
    fn write_state(&mut self, state: &DesiredState) -> Result<(), StateError> {
        let dir = &self.dir;
        let path = dir.join(STATE_FILE);
        let tmp = dir.join(format!("{STATE_FILE}.tmp"));
        let prev = prev_path(&path);
        let prev_tmp = dir.join(format!("{STATE_FILE}.prev.tmp"));
        let seq = self.seq + 1;
        let write = || -> io::Result<u64> {
            let mut text = serde_json::to_vec_pretty(&BaseOut { state, seq }).map_err(io::Error::other)?;
            text.push(b'\n');
            let mut file = File::create(&tmp)?;
            file.write_all(&text)?;
            file.sync_all()?;
            if path.exists() {
                let _ = fs::remove_file(&prev_tmp);
                fs::hard_link(&path, &prev_tmp)?;
                fs::rename(&prev_tmp, &prev)?;
            }
            fs::rename(&tmp, &path)?;
            // Renamed, the change is made: a directory that cannot be
            // synced weakens it against a power cut, not a restart.
            if let Err(err) = File::open(dir).and_then(|d| d.sync_all()) {
                warn!(dir = %dir.display(), %err, "cannot sync the state directory");
            }
            Ok(text.len() as u64)
        };
        self.state_len = write().map_err(|source| StateError::Write { path, source })?;
        self.seq = seq;
        self.fold = false;
        // The journal's lines are in the state file now; left there (this
        // failing), they are skipped at the next start by their numbers.
        let journal = dir.join(JOURNAL_FILE);
        let emptied = match OpenOptions::new().write(true).open(&journal) {
            Ok(f) => f.set_len(0).and_then(|()| f.sync_data()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(err),
        };
        match emptied {
            Ok(()) => self.journal_len = 0,
            Err(err) => {
                // Its end may be torn: no line is appended to it.
                warn!(path = %journal.display(), %err, "cannot empty the journal; its lines are skipped at the next start");
                self.fold = true;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
