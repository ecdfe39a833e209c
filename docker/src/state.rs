//! What the driver must remember, because dockerd does not tell it again:
//! after a restart of the driver or of dockerd, no CreateNetwork comes for
//! networks that exist. Saved atomically (temporary file, fsync, rename)
//! after every change.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vswitch_ctl::{Ipv4Net, MacAddr, NatProto, PortType};

const STATE_FILE: &str = "state.json";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Docker network ID -> the vswitch network behind it.
    pub networks: BTreeMap<String, Network>,
    /// Docker endpoint ID -> the container's place on it.
    pub endpoints: BTreeMap<String, Endpoint>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Network {
    /// The vswitch bridge.
    pub bridge: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    /// The bridge's internal port: the host reaches its containers (and
    /// the published ports' proxies reach them) through it.
    pub internal: String,
    pub port_type: PortType,
    pub masquerade: bool,
    /// The vswitch bridge whose uplink is the way out.
    pub uplink: Option<String>,
    /// The namespace and labels of its containers by default.
    #[serde(default)]
    pub identity: crate::options::Identity,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    pub network: String,
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    /// The `-p` bindings as Docker sent them at CreateEndpoint.
    #[serde(default)]
    pub portmap: Vec<crate::api::PortBinding>,
    /// The container's namespace, name and labels for policies.
    #[serde(default)]
    pub identity: crate::options::Identity,
    /// Set between Join and Leave: the container's namespace.
    #[serde(default)]
    pub sandbox: Option<String>,
    /// The sandbox's file has been seen: once it is gone, so is the
    /// container (dockerd makes it only after Join).
    #[serde(default)]
    pub sandbox_seen: bool,
    /// Published while external connectivity is programmed.
    #[serde(default)]
    pub published: Vec<Published>,
}

/// One published port: `host_ip:host_port` (on the uplink address through
/// vswitchd's NAT, and on the host through a proxy) leads to the
/// container's `port`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub proto: NatProto,
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub port: u16,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is not a state file of this driver", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot save the driver's state in {}", dir.display())]
    Write {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl State {
    /// The saved state, or an empty one on first start.
    pub fn load(dir: &Path) -> Result<State, StateError> {
        let path = dir.join(STATE_FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StateError::Parse { path, source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(State::default()),
            Err(source) => Err(StateError::Read { path, source }),
        }
    }

    pub fn save(&self, dir: &Path) -> Result<(), StateError> {
        let write = || -> io::Result<()> {
            fs::create_dir_all(dir)?;
            let tmp = dir.join(format!("{STATE_FILE}.tmp"));
            let mut file = File::create(&tmp)?;
            file.write_all(&serde_json::to_vec_pretty(self).map_err(io::Error::other)?)?;
            file.sync_all()?;
            fs::rename(&tmp, dir.join(STATE_FILE))?;
            File::open(dir)?.sync_all()
        };
        write().map_err(|source| StateError::Write {
            dir: dir.to_path_buf(),
            source,
        })
    }
}
