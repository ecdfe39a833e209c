//! vswitch-docker: Docker's remote network driver for vswitchd.
//!
//! dockerd finds it by its socket, `/run/docker/plugins/vswitch.sock`
//! (driver name `vswitch`: `docker network create -d vswitch`), and posts
//! libnetwork's JSON calls to it over HTTP. A separate process, not part
//! of vswitchd: it is a client of the control protocol like vsctl, so a
//! driver (or dockerd) restart never touches the datapath, and vswitchd
//! has no HTTP server to harden. HTTP is tiny_http's (small, synchronous:
//! dockerd's calls are few and one at a time).

#![forbid(unsafe_code)]

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use tracing::{debug, info, warn, Level};

mod api;
mod driver;
mod options;
mod proxy;
mod state;

use driver::{Driver, DriverError};

/// Where dockerd looks for plugins; the file name is the driver's name.
const PLUGIN_SOCKET: &str = "/run/docker/plugins/vswitch.sock";
/// Largest request body read.
const MAX_BODY: u64 = 1 << 20;
/// How often containers that vanished without a Leave are looked for.
const GC_PERIOD: Duration = Duration::from_secs(2);
const CONTENT_TYPE: &str = "application/vnd.docker.plugins.v1.2+json";

#[derive(Parser)]
#[command(
    version,
    about = "Docker network driver for vswitchd (docker network create -d vswitch)"
)]
struct Args {
    /// vswitchd's control socket.
    #[arg(long, default_value = vswitch_ctl::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// The socket dockerd connects to; its file name is the driver's name.
    #[arg(long, default_value = PLUGIN_SOCKET)]
    plugin_socket: PathBuf,
    /// Where the driver keeps what dockerd does not tell it again.
    #[arg(long, default_value = "/var/lib/vswitch-docker")]
    state_dir: PathBuf,
    #[arg(long, default_value = "info")]
    log_level: Level,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_max_level(args.log_level)
        .with_writer(std::io::stderr)
        .init();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("vswitch-docker: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Removes a socket file left by a driver that died, never one a running
/// driver still answers on.
fn claim_socket(path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            bail!("another driver is already listening on {}", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("cannot remove stale {}", path.display()))?;
    }
    Ok(())
}

/// SIGTERM and SIGINT, blocked in every thread (they inherit the mask of
/// this one, which blocks them first) and read from a descriptor between
/// requests: a stop never interrupts a request half done.
fn stop_signals() -> anyhow::Result<SignalFd> {
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals.thread_block().context("cannot block signals")?;
    SignalFd::with_flags(&signals, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).context("cannot read signals")
}

fn run(args: &Args) -> anyhow::Result<()> {
    let signals = stop_signals()?;
    let mut driver = Driver::new(args.socket.clone(), args.state_dir.clone()).context("loading the driver's state")?;
    claim_socket(&args.plugin_socket)?;
    let server = tiny_http::Server::http_unix(&args.plugin_socket)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.plugin_socket.display()))?;
    info!(plugin = %args.plugin_socket.display(), vswitchd = %args.socket.display(), "vswitch-docker ready");
    let mut last_gc = Instant::now();
    loop {
        match signals.read_signal() {
            Ok(Some(sig)) => {
                info!(signal = sig.ssi_signo, "stop asked");
                break;
            }
            Ok(None) => {}
            Err(err) => warn!(%err, "reading signals failed"),
        }
        if last_gc.elapsed() >= GC_PERIOD {
            driver.collect_garbage();
            last_gc = Instant::now();
        }
        let request = match server.recv_timeout(Duration::from_millis(500)) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(err) => {
                warn!(%err, "receiving a request failed");
                continue;
            }
        };
        serve(&mut driver, request);
    }
    info!("vswitch-docker stopping");
    drop(server);
    let _ = std::fs::remove_file(&args.plugin_socket);
    Ok(())
}

fn serve(driver: &mut Driver, mut request: tiny_http::Request) {
    let method = request.url().to_string();
    let mut body = Vec::new();
    let read = request.as_reader().take(MAX_BODY + 1).read_to_end(&mut body);
    let result = match read {
        Err(err) => Err(DriverError::BadRequest(format!("cannot read the body: {err}"))),
        Ok(_) if body.len() as u64 > MAX_BODY => Err(DriverError::BadRequest(format!("body over {MAX_BODY} bytes"))),
        Ok(_) if *request.method() != tiny_http::Method::Post => Err(DriverError::BadRequest(format!(
            "{} {method}: plugins are called with POST",
            request.method()
        ))),
        Ok(_) => driver.handle(&method, &body),
    };
    let (status, value) = match result {
        Ok(value) => (200, value),
        Err(err) => {
            warn!(%method, error = %err, "call refused");
            let status = match err {
                DriverError::UnknownMethod(_) => 404,
                DriverError::BadRequest(_) => 400,
                _ => 500,
            };
            (status, serde_json::json!({ "Err": err.to_string() }))
        }
    };
    debug!(%method, status, "answered");
    let mut response = tiny_http::Response::from_string(value.to_string()).with_status_code(status);
    if let Ok(header) = tiny_http::Header::from_bytes("Content-Type", CONTENT_TYPE) {
        response.add_header(header);
    }
    if let Err(err) = request.respond(response) {
        debug!(%err, "cannot answer (dockerd gone?)");
    }
}
