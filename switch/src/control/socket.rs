//! The control socket: one JSON request per line in, one response per line
//! out. Each connection gets a thread; the switch's requests are applied one
//! at a time under the manager's lock ([`answer`]), so two vsctl calls never
//! interleave a change. vswitchd may route some requests elsewhere (the
//! cluster agent's) through the [`Handler`] it serves with.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tracing::{debug, warn};
use vswitch_ctl::{Request, Response};

use super::{error_chain, Manager};

/// Longest request line accepted: room for a transaction of tens of
/// thousands of commands (a thousand attaches take about 150 KB).
const MAX_REQUEST_BYTES: u64 = 8 * 1024 * 1024;
/// A connection that says nothing for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("another vswitchd is already listening on {0}")]
    InUse(String),
    #[error("cannot create the control socket {path}")]
    Bind {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// Binds the control socket, replacing a stale one left by a crash but never
/// one a running vswitchd still answers on. Permissions come from the
/// process umask (0077: root only).
pub fn bind(path: &Path) -> Result<UnixListener, SocketError> {
    let shown = path.display().to_string();
    let bind_err = |source| SocketError::Bind {
        path: shown.clone(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(bind_err)?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(SocketError::InUse(shown));
        }
        std::fs::remove_file(path).map_err(bind_err)?;
    }
    UnixListener::bind(path).map_err(bind_err)
}

/// What answers a parsed request.
pub type Handler = Arc<dyn Fn(Request) -> Response + Send + Sync>;

/// Accepts connections until the process ends.
pub fn serve(listener: UnixListener, handler: Handler) {
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                let handler = handler.clone();
                let spawned = std::thread::Builder::new().name("control-conn".into()).spawn(move || {
                    if let Err(err) = serve_connection(stream, &handler) {
                        debug!(%err, "control connection ended");
                    }
                });
                if let Err(err) = spawned {
                    warn!(%err, "cannot start a thread for a control connection");
                }
            }
            Err(err) => warn!(%err, "accept on the control socket failed"),
        }
    }
}

fn parse_and_answer(handler: &Handler, line: &str) -> Response {
    match serde_json::from_str(line) {
        Ok(request) => handler(request),
        Err(err) => Response::Error {
            message: format!("bad request: {err}"),
        },
    }
}

/// The switch's answer to a request, under the manager's lock.
pub fn answer(manager: &Mutex<Manager>, request: Request) -> Response {
    let mut manager = manager.lock().unwrap_or_else(PoisonError::into_inner);
    match manager.handle(request) {
        Ok(result) => Response::Ok { result },
        Err(err) => Response::Error {
            message: error_chain(&err),
        },
    }
}

fn serve_connection(stream: UnixStream, handler: &Handler) -> io::Result<()> {
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    loop {
        line.clear();
        let n = (&mut reader).take(MAX_REQUEST_BYTES).read_line(&mut line)?;
        if n == 0 {
            return Ok(());
        }
        let response = if !line.ends_with('\n') && n as u64 >= MAX_REQUEST_BYTES {
            Response::Error {
                message: format!("request longer than {MAX_REQUEST_BYTES} bytes"),
            }
        } else {
            parse_and_answer(handler, line.trim())
        };
        let mut out = serde_json::to_string(&response).map_err(io::Error::other)?;
        out.push('\n');
        (&stream).write_all(out.as_bytes())?;
        if matches!(response, Response::Error { .. }) && n as u64 >= MAX_REQUEST_BYTES {
            return Ok(());
        }
    }
}
