//! The cluster agent: one overlay network across many hosts, coordinated
//! through etcd (`vswitchd --cluster URL --node NAME`).
//!
//! The agent is a client of the control protocol like vsctl: it reads this
//! host's bridges with `show` and changes them with `add-br`, `add-vxlan`,
//! `add-vtep`... through [`Control`], never touching the datapath. What the
//! cluster shares, and how it is laid out in etcd, is in [`model`]; what a
//! host does about it is in [`plan`] (pure) and `sync`; the etcd session
//! (lease, full read, watch, resync) is in `agent`.
//!
//! It runs on its own thread with a single-threaded tokio runtime (the etcd
//! client is async); the control socket reaches it through [`ClusterHandle`].

#![forbid(unsafe_code)]

mod agent;
pub mod error;
pub mod model;
mod owned;
pub mod plan;
mod policies;
mod sync;

use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::error;
use vswitch_ctl::{ClusterInfo, Reply, Request, Response};

pub use error::ClusterError;

/// How long a vsctl request to the agent may wait for its answer.
const ANSWER_LIMIT: Duration = Duration::from_secs(10);

/// The switch's side of the control protocol, as the agent sees it.
pub trait Control: Send + Sync + 'static {
    /// Applies one request; the error is the message vsctl would print.
    fn call(&self, request: Request) -> Result<Reply, String>;
}

#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// etcd client URLs (`http://IP:2379`); the client balances and fails over between them.
    pub endpoints: Vec<String>,
    /// This host's name in the cluster.
    pub node: String,
    /// Every key the cluster uses starts with this.
    pub prefix: String,
    /// The lease TTL: how long after a host dies the others drop it.
    pub ttl: Duration,
    /// The bridge whose uplink carries the overlay (default: the only one with an uplink).
    pub underlay: Option<String>,
    /// Where `cluster.json` (the bridges the agent made) is kept.
    pub state_dir: PathBuf,
}

impl ClusterConfig {
    pub fn check(&self) -> Result<(), String> {
        if self.endpoints.is_empty() {
            return Err("--cluster needs at least one etcd URL".into());
        }
        if let Some(bad) = self
            .endpoints
            .iter()
            .find(|e| !e.starts_with("http://") || e.len() <= "http://".len())
        {
            return Err(format!(
                "etcd endpoint '{bad}' is not a URL like http://192.0.2.1:2379 (TLS is not supported yet)"
            ));
        }
        if !model::valid_name(&self.node) {
            return Err(format!(
                "node name '{}' is not valid (1-32 characters: letters, digits, '.', '-', '_')",
                self.node
            ));
        }
        if !self.prefix.starts_with('/') {
            return Err(format!("cluster prefix '{}' must start with '/'", self.prefix));
        }
        if self.ttl < Duration::from_secs(2) {
            return Err("the cluster TTL must be at least 2 seconds".into());
        }
        Ok(())
    }
}

/// What the agent shows of itself; the status is readable while it is busy.
#[derive(Default)]
pub(crate) struct Shared {
    pub info: ClusterInfo,
    pub synced_at: Option<Instant>,
}

pub(crate) enum Command {
    Request(Request, std_mpsc::Sender<Response>),
    /// Leave (lease revoked) and stop: SIGTERM.
    Shutdown(std_mpsc::Sender<()>),
}

/// The control socket's way to the agent.
#[derive(Clone)]
pub struct ClusterHandle {
    tx: mpsc::Sender<Command>,
    status: Arc<Mutex<Shared>>,
}

impl ClusterHandle {
    /// Answers a cluster request (`Request::is_cluster`).
    pub fn answer(&self, request: Request) -> Response {
        match request {
            Request::ClusterStatus => Response::Ok {
                result: Reply::Cluster(Some(Box::new(self.status()))),
            },
            request => agent::ask(&self.tx, request, ANSWER_LIMIT),
        }
    }

    pub fn status(&self) -> ClusterInfo {
        let shared = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        let mut info = shared.info.clone();
        info.synced_secs_ago = shared.synced_at.map(|t| t.elapsed().as_secs());
        info
    }

    /// Leaves the cluster (the lease is revoked, so the other hosts drop
    /// this one at once) and stops the agent; waits at most `limit`.
    pub fn shutdown(&self, limit: Duration) {
        let (done, wait) = std_mpsc::channel();
        if self.tx.blocking_send(Command::Shutdown(done)).is_ok() {
            let _ = wait.recv_timeout(limit);
        }
    }
}

/// Starts the agent on its own thread.
pub fn spawn(cfg: ClusterConfig, control: Arc<dyn Control>) -> std::io::Result<ClusterHandle> {
    let owned = owned::Owned::load(&cfg.state_dir)?;
    let status = Arc::new(Mutex::new(Shared {
        info: ClusterInfo {
            node: cfg.node.clone(),
            endpoints: cfg.endpoints.clone(),
            prefix: model::Keys::new(&cfg.prefix).prefix().to_string(),
            state: "connecting".into(),
            ttl_secs: cfg.ttl.as_secs(),
            ..Default::default()
        },
        synced_at: None,
    }));
    let (tx, rx) = mpsc::channel(16);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let agent = sync::Agent::new(cfg, control, owned, status.clone());
    std::thread::Builder::new().name("cluster".into()).spawn(move || {
        runtime.block_on(agent.run(rx));
        error!("the cluster agent stopped");
    })?;
    Ok(ClusterHandle { tx, status })
}
