//! `vswitchd`: the switch daemon.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{SigSet, Signal};
use tracing::{info, Level};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use vswitch::clock;
use vswitch::control::store::Store;
use vswitch::control::{socket, Manager};
use vswitch::cores::{check_available, parse_core_list};
use vswitch::flows::{FlowEvent, FlowKind};
use vswitch::pmd::{self, PmdParams};
use vswitch::snapshot::{Snapshot, SnapshotCell};
use vswitch_cluster::ClusterConfig;
use vswitch_ctl::{Request, Response};
use vswitch_nat::table::{ConnTable, Timeouts};

/// How often learned MACs and neighbours are checked for aging.
const HOUSEKEEPING_PERIOD: Duration = Duration::from_secs(1);
/// How long a stopping vswitchd waits for etcd to drop its records.
const CLUSTER_LEAVE_LIMIT: Duration = Duration::from_secs(2);

#[derive(Parser)]
#[command(
    name = "vswitchd",
    version,
    about = "Userspace virtual switch for container networking"
)]
struct Args {
    /// Cores to run poll threads on, one thread each: "1", "0,1", "2-3" (default: every core this process may use).
    #[arg(long)]
    cores: Option<String>,
    /// Control socket (root-only).
    #[arg(long, default_value = vswitch_ctl::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Where the configuration is kept across restarts.
    #[arg(long, default_value = "/var/lib/vswitch")]
    state_dir: PathBuf,
    /// error, warn, info, debug or trace.
    #[arg(long, default_value = "info")]
    log_level: Level,
    /// Log lines as text, or as one JSON object each (for log collectors).
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Microseconds a poll thread keeps polling after its last frame before it sleeps.
    #[arg(long, default_value_t = 200)]
    spin_us: u64,
    /// Most connections tracked at once; beyond it new ones are dropped (counted).
    #[arg(long, default_value_t = 65_536, value_parser = clap::value_parser!(u32).range(1..=16_777_216))]
    ct_max: u32,
    /// Most connections one container (an attached address) may hold, so one cannot fill the table for the others (default: a quarter of --ct-max).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=16_777_216))]
    ct_max_per_port: Option<u32>,
    /// After a start that found no saved connection table (a crash), seconds during which established TCP flows through NAT are picked up mid-stream (0: never).
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    ct_pickup_secs: u64,
    /// Seconds an unanswered UDP flow is tracked without traffic (an answered one: 4 times as long).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    ct_udp_timeout: u64,
    /// Seconds an ICMP echo flow is tracked without traffic.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    ct_icmp_timeout: u64,
    /// Seconds an established TCP connection is tracked without traffic.
    #[arg(long, default_value_t = 432_000, value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    ct_tcp_established_timeout: u64,
    /// Join a cluster: etcd client URLs, comma-separated (http://IP:2379,http://IP2:2379).
    #[arg(long, value_delimiter = ',', requires = "node")]
    cluster: Vec<String>,
    /// This host's name in the cluster (with --cluster).
    #[arg(long)]
    node: Option<String>,
    /// Every key the cluster keeps in etcd starts with this.
    #[arg(long, default_value = "/vswitch/")]
    cluster_prefix: String,
    /// Seconds this host's records outlive it in etcd when it dies.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(2..=3600))]
    cluster_ttl: u64,
    /// The bridge whose uplink carries the overlay (default: the only bridge with an uplink).
    #[arg(long)]
    cluster_underlay: Option<String>,
    /// Serve Prometheus metrics on GET /metrics at PORT (on 127.0.0.1) or ADDR:PORT (off by default).
    #[arg(long, value_name = "[ADDR:]PORT", value_parser = vswitch::metrics::parse_addr)]
    metrics: Option<std::net::SocketAddr>,
}

/// The cluster agent's way into the switch: the control protocol, in-process.
struct ManagerControl(Arc<Mutex<Manager>>);

impl vswitch_cluster::Control for ManagerControl {
    fn call(&self, request: vswitch_ctl::Request) -> Result<vswitch_ctl::Reply, String> {
        match socket::answer(&self.0, request) {
            vswitch_ctl::Response::Ok { result } => Ok(result),
            vswitch_ctl::Response::Error { message } => Err(message),
        }
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() {
    let args = Args::parse();
    // The etcd client's transport (tonic, h2, hyper, tower) logs every
    // frame at debug: keep it to warnings whatever our own level is.
    let filter = Targets::new()
        .with_default(args.log_level)
        .with_targets(["h2", "hyper", "hyper_util", "tonic", "tower"].map(|t| (t, Level::WARN)));
    let (text, json) = match args.log_format {
        LogFormat::Text => (
            Some(tracing_subscriber::fmt::layer().with_writer(std::io::stderr)),
            None,
        ),
        LogFormat::Json => (
            None,
            Some(tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr)),
        ),
    };
    tracing_subscriber::registry().with(text).with(json).with(filter).init();
    if let Err(err) = run(args) {
        tracing::error!("{err:#}");
        eprintln!("vswitchd: {err:#}");
        std::process::exit(1);
    }
}

fn lock_state_dir(dir: &Path) -> anyhow::Result<Flock<File>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create state directory {}", dir.display()))?;
    let lock_path = dir.join("lock");
    let file = File::create(&lock_path).with_context(|| format!("cannot create {}", lock_path.display()))?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        anyhow::anyhow!(
            "state directory {} is in use by another vswitchd ({errno})",
            dir.display()
        )
    })
}

fn run(args: Args) -> anyhow::Result<()> {
    // Sockets and state files are root's alone.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    clock::now_ms();

    let available: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    let cores = match &args.cores {
        Some(list) => parse_core_list(list)?,
        None => available.clone(),
    };
    check_available(&cores, &available)?;
    if cores.is_empty() {
        bail!("no cores to run poll threads on");
    }

    // Checked before anything is touched: a bad option changes nothing.
    let cluster_cfg = match &args.node {
        Some(node) if !args.cluster.is_empty() => {
            let cfg = ClusterConfig {
                endpoints: args.cluster.clone(),
                node: node.clone(),
                prefix: args.cluster_prefix.clone(),
                ttl: Duration::from_secs(args.cluster_ttl),
                underlay: args.cluster_underlay.clone(),
                state_dir: args.state_dir.clone(),
            };
            cfg.check().map_err(anyhow::Error::msg)?;
            Some(cfg)
        }
        Some(_) => bail!("--node needs --cluster"),
        None => None,
    };

    let _lock = lock_state_dir(&args.state_dir)?;
    let saved = Store::open(&args.state_dir)?;

    // Only the main thread takes these signals; threads inherit the mask.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals.thread_block().context("cannot block signals")?;

    let cell = Arc::new(SnapshotCell::new(Snapshot {
        rx_assign: vec![Vec::new(); cores.len()],
        ..Default::default()
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let spin = Duration::from_micros(args.spin_us);
    let mut pmds = Vec::new();
    let mut threads = Vec::new();
    for (index, &core) in cores.iter().enumerate() {
        let params = PmdParams {
            index,
            core,
            spin,
            cell: cell.clone(),
            stop: stop.clone(),
        };
        let (handle, thread) =
            pmd::spawn(params).with_context(|| format!("cannot start poll thread on core {core}"))?;
        pmds.push(handle);
        threads.push(thread);
    }

    let timeouts = Timeouts {
        tcp_established: Duration::from_secs(args.ct_tcp_established_timeout),
        udp: Duration::from_secs(args.ct_udp_timeout),
        udp_replied: Duration::from_secs(args.ct_udp_timeout * 4),
        icmp: Duration::from_secs(args.ct_icmp_timeout),
    };
    let per_port = args.ct_max_per_port.unwrap_or((args.ct_max / 4).max(1));
    if per_port > args.ct_max {
        anyhow::bail!("--ct-max-per-port {per_port} is more than --ct-max {}", args.ct_max);
    }
    let conntrack = ConnTable::with_timeouts(args.ct_max as usize, timeouts).with_max_per_host(per_port as usize);
    let mut manager = Manager::new(args.state_dir.clone(), saved, pmds.clone(), cell, conntrack)
        .with_pickup(Duration::from_secs(args.ct_pickup_secs));
    manager.restore();
    let manager = Arc::new(Mutex::new(manager));

    let listener = socket::bind(&args.socket)?;
    let metrics = match args.metrics {
        Some(addr) => {
            Some(tiny_http::Server::http(addr).map_err(|e| anyhow::anyhow!("cannot serve metrics on {addr}: {e}"))?)
        }
        None => None,
    };
    let cluster = match cluster_cfg {
        Some(cfg) => {
            let node = cfg.node.clone();
            let handle = vswitch_cluster::spawn(cfg, Arc::new(ManagerControl(manager.clone())))
                .context("cannot start the cluster agent")?;
            info!(node = %node, endpoints = ?args.cluster, "cluster agent started");
            Some(handle)
        }
        None => None,
    };
    {
        let manager = manager.clone();
        let cluster = cluster.clone();
        // With --cluster, policy changes are the cluster's: they go to
        // etcd through the agent, which brings them back to every host.
        let handler: socket::Handler = Arc::new(move |request| match &cluster {
            Some(agent) if request.is_cluster() || request.is_shared_policy() => agent.answer(request),
            Some(_) if matches!(&request, Request::Transaction(t) if t.requests.iter().any(Request::is_shared_policy)) => {
                Response::Error {
                    message: "with --cluster, apply, delete and label-namespace go to etcd: run them on their own"
                        .into(),
                }
            }
            _ if matches!(request, Request::ClusterPolicies(_)) => Response::Error {
                message: "cluster policies come from the cluster agent, not the control socket".into(),
            },
            _ => socket::answer(&manager, request),
        });
        if let Some(server) = metrics {
            let handler = handler.clone();
            info!(addr = ?args.metrics, "serving metrics on /metrics");
            std::thread::Builder::new()
                .name("metrics".into())
                .spawn(move || vswitch::metrics::serve(server, handler))?;
        }
        std::thread::Builder::new()
            .name("control".into())
            .spawn(move || socket::serve(listener, handler))?;
    }
    {
        let manager = manager.clone();
        std::thread::Builder::new()
            .name("housekeeping".into())
            .spawn(move || loop {
                std::thread::sleep(HOUSEKEEPING_PERIOD);
                // Ports whose namespace was deleted while attached, looked
                // for without the lock.
                let homes = manager.lock().unwrap_or_else(PoisonError::into_inner).homes();
                let orphans: Vec<u64> = (homes.into_iter())
                    .filter(|(_, home)| home.is_gone())
                    .map(|(uid, _)| uid)
                    .collect();
                let (fdbs, neighs, ct, policy_ct, flows) = {
                    let mut m = manager.lock().unwrap_or_else(PoisonError::into_inner);
                    // Handoff ports a runtime has moved since (Docker).
                    if m.moves_pending() {
                        m.settle_moves();
                    }
                    if !orphans.is_empty() {
                        m.release_orphans(&orphans);
                    }
                    m.expire_captures();
                    m.expire_traces();
                    m.collect_flows();
                    (
                        m.fdbs(),
                        m.neigh_tables(),
                        m.conntrack(),
                        m.policy_conntrack(),
                        m.flow_logs(),
                    )
                };
                let now = clock::now_ms();
                for fdb in fdbs {
                    fdb.sweep(now);
                }
                for neigh in neighs {
                    neigh.sweep(now);
                }
                ct.sweep(now);
                policy_ct.sweep_each(now, |conn| {
                    let parts = vswitch::pipeline::policy::parts(&conn.orig);
                    flows.record(0, FlowEvent::new(FlowKind::Closed, now, parts));
                });
            })?;
    }
    info!(socket = %args.socket.display(), state_dir = %args.state_dir.display(), cores = ?cores, "vswitchd ready");

    let signal = signals.wait().context("waiting for signals")?;
    info!(?signal, "shutting down");
    if let Some(agent) = &cluster {
        agent.shutdown(CLUSTER_LEAVE_LIMIT);
    }
    stop.store(true, Ordering::Relaxed);
    for pmd in &pmds {
        pmd.wake();
    }
    for thread in threads {
        let _ = thread.join();
    }
    // Forwarding has stopped: the table is final. The next start puts it
    // back, so connections through NAT live across an upgrade.
    if let Err(err) = manager.lock().unwrap_or_else(PoisonError::into_inner).save_conntrack() {
        tracing::warn!(error = %vswitch::control::error_chain(&err), "connection table not saved");
    }
    let _ = std::fs::remove_file(&args.socket);
    Ok(())
}
