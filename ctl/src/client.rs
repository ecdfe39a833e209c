//! The client end of the control protocol: one request, one answer, over
//! vswitchd's Unix socket. Used by vsctl and the runtime plugins.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{Reply, Request, Response};

/// How long an answer may take (an attach with a restart of many ports is
/// the slowest request).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nobody listens: vswitchd is not running (or not there yet).
    #[error("cannot reach vswitchd at {} (is it running?)", path.display())]
    Unreachable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("talking to vswitchd at {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("vswitchd closed the connection without answering")]
    NoAnswer,
    #[error("vswitchd at {} did not answer within {} s", path.display(), after.as_secs())]
    TimedOut { path: PathBuf, after: Duration },
    #[error("vswitchd sent an answer this client does not understand")]
    BadAnswer(#[source] serde_json::Error),
    /// vswitchd answered with an error: its message, as is.
    #[error("{0}")]
    Refused(String),
}

impl ClientError {
    /// vswitchd is not up: worth trying again later.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ClientError::Unreachable { .. })
    }
}

/// Sends one request and waits for its answer (up to 30 s).
pub fn call(socket: &Path, request: &Request) -> Result<Reply, ClientError> {
    call_within(socket, request, ANSWER_TIMEOUT)
}

/// Sends one request and waits up to `timeout` for its answer.
pub fn call_within(socket: &Path, request: &Request, timeout: Duration) -> Result<Reply, ClientError> {
    let io = |source: std::io::Error| match source.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => ClientError::TimedOut {
            path: socket.to_path_buf(),
            after: timeout,
        },
        _ => ClientError::Io {
            path: socket.to_path_buf(),
            source,
        },
    };
    let stream = UnixStream::connect(socket).map_err(|source| ClientError::Unreachable {
        path: socket.to_path_buf(),
        source,
    })?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let mut line = serde_json::to_string(request).map_err(ClientError::BadAnswer)?;
    line.push('\n');
    (&stream).write_all(line.as_bytes()).map_err(io)?;
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer).map_err(io)?;
    if answer.is_empty() {
        return Err(ClientError::NoAnswer);
    }
    match serde_json::from_str::<Response>(&answer).map_err(ClientError::BadAnswer)? {
        Response::Ok { result } => Ok(result),
        Response::Error { message } => Err(ClientError::Refused(message)),
    }
}
