//! Network namespaces named the way `ip netns` names them.

use std::fs::File;
use std::path::PathBuf;

/// Where `ip netns add NAME` puts its bind mounts.
const NETNS_RUN_DIR: &str = "/run/netns";

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("cannot configure network namespace '{name}'")]
    Enter {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("network namespace name '{0}' is not valid (use a name from 'ip netns list' or an absolute path)")]
    BadName(String),
    #[error("network namespace '{name}' does not exist ({path})")]
    NotFound { name: String, path: String },
    #[error("cannot open network namespace '{name}' ({path})")]
    Open {
        name: String,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// "network namespace 'c1'", or "the host namespace", for messages.
pub fn place(netns: Option<&str>) -> String {
    match netns {
        Some(ns) => format!("network namespace '{ns}'"),
        None => "the host namespace".to_string(),
    }
}

/// The file that stands for namespace `name`: `/run/netns/NAME`, or `name`
/// itself when it is an absolute path such as `/proc/PID/ns/net`.
pub fn netns_path(name: &str) -> Result<PathBuf, NetnsError> {
    if name.starts_with('/') {
        return Ok(PathBuf::from(name));
    }
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(NetnsError::BadName(name.to_string()));
    }
    Ok(PathBuf::from(NETNS_RUN_DIR).join(name))
}

/// Opens a namespace so its descriptor can be handed to the kernel.
pub fn open_netns(name: &str) -> Result<File, NetnsError> {
    let path = netns_path(name)?;
    let shown = path.display().to_string();
    File::open(&path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            NetnsError::NotFound {
                name: name.to_string(),
                path: shown,
            }
        } else {
            NetnsError::Open {
                name: name.to_string(),
                path: shown,
                source,
            }
        }
    })
}

/// Runs `f` on a short-lived thread that has entered namespace `name`:
/// sockets it opens (netlink, ioctl) act on that namespace. vswitchd's own
/// threads never leave theirs.
pub fn run_in<T: Send>(name: &str, f: impl FnOnce() -> std::io::Result<T> + Send) -> Result<T, NetnsError> {
    let file = open_netns(name)?;
    let err = |source| NetnsError::Enter {
        name: name.to_string(),
        source,
    };
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| err(e.into()))?;
                f().map_err(err)
            })
            .join()
            .unwrap_or_else(|_| Err(err(std::io::Error::other("the namespace helper thread panicked"))))
    })
}

/// A namespace as the kernel knows it (the nsfs device and inode), to
/// tell later whether a name or path still leads to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Home {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl Home {
    /// The namespace `name` leads to now, by the descriptor opened on it.
    pub fn of(name: &str, file: &File) -> std::io::Result<Home> {
        use std::os::unix::fs::MetadataExt;
        let path = netns_path(name).map_err(std::io::Error::other)?;
        let st = file.metadata()?;
        Ok(Home {
            path,
            dev: st.dev(),
            ino: st.ino(),
        })
    }

    /// The name no longer leads to the namespace: deleted (`ip netns del`,
    /// a runtime's cleanup), its process gone (`/proc/PID/ns/net`), or
    /// another namespace in its place.
    pub fn is_gone(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        match std::fs::metadata(&self.path) {
            Ok(st) => st.dev() != self.dev || st.ino() != self.ino,
            Err(err) => err.kind() == std::io::ErrorKind::NotFound,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths() {
        assert_eq!(netns_path("c1").unwrap(), PathBuf::from("/run/netns/c1"));
        assert_eq!(netns_path("/proc/1/ns/net").unwrap(), PathBuf::from("/proc/1/ns/net"));
        assert!(netns_path("../etc").is_err());
        assert!(netns_path("").is_err());
        assert!(matches!(
            open_netns("vswitch-no-such-ns-ever"),
            Err(NetnsError::NotFound { .. })
        ));
    }
}
