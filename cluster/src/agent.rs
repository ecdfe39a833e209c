//! The agent's life: connect, take or reuse the node's lease, read the whole
//! prefix, then follow it with a watch while keeping the lease alive. Any
//! failure ends the session and the next one starts with a full read again
//! (a resync, not only the watch), so nothing missed while etcd was away
//! stays missed. Between sessions this host's tables are left exactly as
//! they were: the datapath keeps forwarding with the last known state.

use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use etcd_client::{Channel, Client, ConnectOptions, EventType, GetOptions, WatchOptions};
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout};
use tonic::transport::Endpoint;
use tracing::{info, warn};
use vswitch_ctl::{req, Reply, Request, Response};

use crate::error::{within, ClusterError, CALL_TIMEOUT};
use crate::sync::Agent;
use crate::{ClusterConfig, Command};

/// How long a member has to answer the first read of a new connection:
/// short, so a member that accepts connections but does not answer (still
/// starting, or cut off from the others) is passed over quickly.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How often local changes (an uplink added) are looked for without an event.
const LOCAL_TICK: Duration = Duration::from_secs(1);
/// The first wait before trying etcd again, doubled up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Why a session ended.
enum Ended {
    Lost(ClusterError),
    Left,
    Shutdown,
}

impl Agent {
    pub(crate) async fn run(mut self, mut cmds: mpsc::Receiver<Command>) {
        let mut backoff = FIRST_BACKOFF;
        // Set once a session is lost: the state stays "unreachable" (with
        // why) while members are tried again, rather than "connecting".
        let mut lost = false;
        loop {
            if self.left {
                match cmds.recv().await {
                    None => return,
                    Some(cmd) => {
                        if self.offline(cmd) {
                            return;
                        }
                    }
                }
                continue;
            }
            if !lost {
                self.set_state("connecting", None);
            }
            // Commands are answered (as unreachable) while members are tried.
            let attempt = connect(self.cfg.clone(), self.keys.node(&self.cfg.node), self.endpoint);
            tokio::pin!(attempt);
            let connected = loop {
                tokio::select! {
                    result = &mut attempt => break result,
                    cmd = cmds.recv() => match cmd {
                        None => return,
                        Some(cmd) => if self.offline(cmd) { return },
                    },
                }
            };
            if self.left {
                // cluster-leave arrived while connecting.
                continue;
            }
            let ended = match connected {
                Ok((client, index)) => {
                    self.endpoint = index;
                    backoff = FIRST_BACKOFF;
                    lost = false;
                    self.session(client, &mut cmds).await
                }
                Err(err) => Ended::Lost(err),
            };
            match ended {
                Ended::Shutdown => return,
                Ended::Left => continue,
                Ended::Lost(err) => {
                    lost = true;
                    // Start the next attempt with another member.
                    self.endpoint = (self.endpoint + 1) % self.cfg.endpoints.len().max(1);
                    warn!(%err, "cluster unreachable; keeping the last known state");
                    self.set_state("unreachable", Some(err.to_string()));
                }
            }
            // Wait before the next attempt, answering commands meanwhile.
            let until = Instant::now() + backoff;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            while let Some(left) = until.checked_duration_since(Instant::now()) {
                tokio::select! {
                    _ = sleep(left) => break,
                    cmd = cmds.recv() => match cmd {
                        None => return,
                        Some(cmd) => if self.offline(cmd) { return },
                    },
                }
            }
        }
    }

    async fn session(&mut self, mut client: Client, cmds: &mut mpsc::Receiver<Command>) -> Ended {
        match self.session_inner(&mut client, cmds).await {
            Ok(ended) => ended,
            Err(err) => Ended::Lost(err),
        }
    }

    async fn session_inner(
        &mut self,
        client: &mut Client,
        cmds: &mut mpsc::Receiver<Command>,
    ) -> Result<Ended, ClusterError> {
        let lease = self.acquire_lease(client).await?;
        let (mut keeper, mut beats) = within(client.lease_keep_alive(lease)).await?;

        let prefix = self.keys.prefix().to_string();
        let all = within(client.get(prefix.as_str(), Some(GetOptions::new().with_prefix()))).await?;
        let revision = all.header().map_or(0, |h| h.revision());
        self.view = Default::default();
        for kv in all.kvs() {
            self.view.put(&self.keys, kv.key(), kv.value(), kv.lease());
        }
        self.synced_at = Some(Instant::now());
        self.resyncs += 1;
        let mut watch = within(client.watch(
            prefix.as_str(),
            Some(WatchOptions::new().with_prefix().with_start_revision(revision + 1)),
        ))
        .await?;
        self.set_state("connected", None);
        info!(lease = format_args!("{lease:x}"), revision, "cluster state read");
        self.reconcile(client, lease).await?;

        let mut beat = tokio::time::interval(self.cfg.ttl / 3);
        let mut local = tokio::time::interval(LOCAL_TICK);
        loop {
            tokio::select! {
                msg = watch.message() => {
                    let Some(resp) = msg? else {
                        return Err(ClusterError::Unreachable("the watch ended".into()));
                    };
                    if resp.canceled() {
                        return Err(ClusterError::Unreachable(format!("the watch was cancelled: {}", resp.cancel_reason())));
                    }
                    for event in resp.events() {
                        let Some(kv) = event.kv() else { continue };
                        match event.event_type() {
                            EventType::Put => self.view.put(&self.keys, kv.key(), kv.value(), kv.lease()),
                            EventType::Delete => self.view.delete(&self.keys, kv.key()),
                        }
                        self.events += 1;
                    }
                    self.reconcile(client, lease).await?;
                }
                _ = beat.tick() => {
                    within(keeper.keep_alive()).await?;
                    match within(beats.message()).await? {
                        Some(r) if r.ttl() > 0 => {}
                        _ => return Err(ClusterError::Unreachable("this host's lease expired".into())),
                    }
                }
                _ = local.tick() => self.reconcile(client, lease).await?,
                cmd = cmds.recv() => match cmd {
                    None => return Ok(Ended::Shutdown),
                    Some(Command::Shutdown(done)) => {
                        self.revoke(client, lease).await;
                        let _ = done.send(());
                        return Ok(Ended::Shutdown);
                    }
                    Some(Command::Request(request, reply)) => {
                        let leave = matches!(request, Request::ClusterLeave);
                        let answer = self.online(client, request).await;
                        if leave && matches!(answer, Response::Ok { .. }) {
                            self.revoke(client, lease).await;
                            self.forget_remotes();
                            self.left = true;
                            self.set_state("left", None);
                            let _ = reply.send(answer);
                            return Ok(Ended::Left);
                        }
                        let _ = reply.send(answer);
                    }
                },
            }
        }
    }

    /// The lease this node's records live under: the one its node record
    /// already has if that lease is still alive (a restart within the TTL
    /// keeps every record and slice), else a new one.
    async fn acquire_lease(&mut self, client: &mut Client) -> Result<i64, ClusterError> {
        let key = self.keys.node(&self.cfg.node);
        let current = within(client.get(key.as_str(), None)).await?;
        if let Some(kv) = current.kvs().first() {
            let id = kv.lease();
            if id != 0 && within(client.lease_time_to_live(id, None)).await?.ttl() > 0 {
                self.lease = Some(id);
                return Ok(id);
            }
        }
        let ttl = self.cfg.ttl.as_secs().max(1) as i64;
        let id = within(client.lease_grant(ttl, None)).await?.id();
        self.lease = Some(id);
        Ok(id)
    }

    async fn revoke(&mut self, client: &mut Client, lease: i64) {
        match timeout(Duration::from_secs(1), client.lease_revoke(lease)).await {
            Ok(Ok(_)) => info!(lease = format_args!("{lease:x}"), "left the cluster: lease revoked"),
            Ok(Err(err)) => warn!(%err, "cannot revoke the lease; it expires within its TTL"),
            Err(_) => warn!("etcd did not answer the lease revoke; it expires within its TTL"),
        }
        self.lease = None;
    }

    /// A command while connected.
    async fn online(&mut self, client: &mut Client, request: Request) -> Response {
        let result = match request {
            Request::NetCreate(req) => self.net_create(client, req).await.map(|()| Reply::Done),
            Request::NetDelete(req::NetDelete { name }) => self.net_delete(client, &name).await.map(|()| Reply::Done),
            Request::NetList => Ok(Reply::Networks(self.view.network_infos())),
            Request::ClusterLeave | Request::ClusterJoin => Ok(Reply::Done),
            r if r.is_shared_policy() => self.shared_policy(client, r).await,
            other => Err(ClusterError::NotCluster(format!("{other:?}"))),
        };
        respond(result)
    }

    /// A command while etcd is away or this host has left; true on shutdown.
    fn offline(&mut self, cmd: Command) -> bool {
        let (request, reply) = match cmd {
            Command::Shutdown(done) => {
                let _ = done.send(());
                return true;
            }
            Command::Request(request, reply) => (request, reply),
        };
        let away = || {
            if self.left {
                ClusterError::Left
            } else {
                ClusterError::Unreachable(self.detail().unwrap_or_else(|| "not connected yet".into()))
            }
        };
        let result = match request {
            Request::NetList if self.synced_at.is_some() => Ok(Reply::Networks(self.view.network_infos())),
            Request::ClusterJoin => {
                self.left = false;
                Ok(Reply::Done)
            }
            Request::ClusterLeave => {
                // The lease cannot be revoked from here; it expires on its own.
                self.forget_remotes();
                self.left = true;
                self.set_state(
                    "left",
                    Some("the lease could not be revoked: it expires within its TTL".into()),
                );
                Ok(Reply::Done)
            }
            _ => Err(away()),
        };
        let _ = reply.send(respond(result));
        false
    }
}

/// A client bound to one etcd member that answers with a leader, and that
/// member's index: the members are tried in turn from `start` (after the
/// one the last session lost), so a dead or partitioned member is passed
/// over at once.
async fn connect(cfg: ClusterConfig, probe_key: String, start: usize) -> Result<(Client, usize), ClusterError> {
    let options = ConnectOptions::new().with_require_leader(true);
    let count = cfg.endpoints.len();
    let mut last = ClusterError::Unreachable("no etcd endpoint".into());
    for i in 0..count {
        let index = (start + i) % count;
        let endpoint = &cfg.endpoints[index];
        let probe = async {
            // One plain connection per member, made now (not the client's
            // lazy balanced channel): which member is used, and when to move
            // on, is decided here.
            let channel = Endpoint::from_shared(endpoint.clone())?
                .connect_timeout(CALL_TIMEOUT)
                .timeout(CALL_TIMEOUT)
                .http2_keep_alive_interval(Duration::from_secs(2))
                .keep_alive_timeout(Duration::from_secs(2))
                .keep_alive_while_idle(true);
            let channel = match timeout(CALL_TIMEOUT, channel.connect()).await {
                Ok(connected) => connected?,
                Err(_) => return Err(ClusterError::Timeout(CALL_TIMEOUT.as_millis() as u64)),
            };
            let mut client = within(Client::from_channel(Channel::Tonic(channel), Some(options.clone()))).await?;
            match timeout(PROBE_TIMEOUT, client.get(probe_key.as_str(), None)).await {
                Ok(answer) => answer?,
                Err(_) => return Err(ClusterError::Timeout(PROBE_TIMEOUT.as_millis() as u64)),
            };
            Ok::<Client, ClusterError>(client)
        };
        match probe.await {
            Ok(client) => {
                info!(%endpoint, "connected to etcd");
                return Ok((client, index));
            }
            Err(err) => {
                warn!(%endpoint, %err, "etcd member not usable; trying the next");
                last = err;
            }
        }
    }
    Err(last)
}

fn respond(result: Result<Reply, ClusterError>) -> Response {
    match result {
        Ok(result) => Response::Ok { result },
        Err(err) => Response::Error {
            message: err.to_string(),
        },
    }
}

/// Sends a request to the agent and waits for its answer.
pub(crate) fn ask(tx: &mpsc::Sender<Command>, request: Request, limit: Duration) -> Response {
    let (reply, answer) = std_mpsc::channel();
    if tx.blocking_send(Command::Request(request, reply)).is_err() {
        return respond(Err(ClusterError::AgentGone));
    }
    answer
        .recv_timeout(limit)
        .unwrap_or_else(|_| respond(Err(ClusterError::Timeout(limit.as_millis() as u64))))
}
