//! The bridges the cluster agent made on this host, kept in
//! `STATE_DIR/cluster.json` so that after a restart it still knows which
//! bridges are its own to change or remove (and never touches a bridge a
//! user made with the same name).

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    networks: BTreeSet<String>,
}

#[derive(Debug)]
pub struct Owned {
    path: PathBuf,
    saved: Saved,
}

impl Owned {
    /// Loads the file; a missing one is an empty set, a damaged one is an error.
    pub fn load(state_dir: &Path) -> io::Result<Owned> {
        let path = state_dir.join("cluster.json");
        let saved = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display())))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Saved::default(),
            Err(e) => return Err(e),
        };
        Ok(Owned { path, saved })
    }

    pub fn contains(&self, name: &str) -> bool {
        self.saved.networks.contains(name)
    }

    pub fn names(&self) -> Vec<String> {
        self.saved.networks.iter().cloned().collect()
    }

    /// Records `name` before its bridge is made, so a crash in between
    /// leaves a claim on a bridge that may not exist (harmless), never a
    /// cluster bridge the agent does not know.
    pub fn insert(&mut self, name: &str) -> io::Result<()> {
        if self.saved.networks.insert(name.to_string()) {
            self.save()?;
        }
        Ok(())
    }

    pub fn remove(&mut self, name: &str) -> io::Result<()> {
        if self.saved.networks.remove(name) {
            self.save()?;
        }
        Ok(())
    }

    fn save(&self) -> io::Result<()> {
        let tmp = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(&self.saved).map_err(io::Error::other)?;
        std::fs::write(&tmp, bytes)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_a_reload_and_refuses_a_damaged_file() {
        let dir = std::env::temp_dir().join(format!("vswitch-owned-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let mut owned = Owned::load(&dir).expect("empty");
        assert!(!owned.contains("blue"));
        owned.insert("blue").expect("insert");
        owned.insert("red").expect("insert");
        owned.remove("red").expect("remove");
        let again = Owned::load(&dir).expect("reload");
        assert_eq!(again.names(), vec!["blue".to_string()]);
        std::fs::write(dir.join("cluster.json"), "{").expect("write");
        assert!(Owned::load(&dir).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
