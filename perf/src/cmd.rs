//! Running the tools: `ip`, `iperf3`, `sockperf`, `trafgen`, `ovs-*`, in the
//! root namespace or inside one of the run's namespaces.
//!
//! Commands are written as one string and split on whitespace: every
//! argument vsperf passes is a name, an address or a number, so no quoting
//! is ever needed (and none is attempted).

use std::io::Write;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    #[error("cannot run `{cmd}`: {source}")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Failed {
        cmd: String,
        status: String,
        stderr: String,
    },
    #[error("interrupted")]
    Interrupted,
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Ctrl-C and SIGTERM set a flag that every wait checks, so the run stops
/// at the next step and everything it created is removed on the way out.
pub fn catch_interrupts() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe; the sigaction struct is fully initialised.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

pub fn check() -> Result<(), CmdError> {
    if interrupted() {
        Err(CmdError::Interrupted)
    } else {
        Ok(())
    }
}

/// `cmd` (split on whitespace), run inside namespace `ns` if given.
pub fn command(ns: Option<&str>, cmd: &str) -> Command {
    let mut words: Vec<&str> = cmd.split_whitespace().collect();
    if let Some(ns) = ns {
        let mut prefixed = vec!["ip", "netns", "exec", ns];
        prefixed.append(&mut words);
        words = prefixed;
    }
    let mut c = Command::new(words[0]);
    c.args(&words[1..]);
    c
}

fn finish(cmd: String, out: std::io::Result<Output>) -> Result<String, CmdError> {
    let out = out.map_err(|source| CmdError::Spawn {
        cmd: cmd.clone(),
        source,
    })?;
    check()?;
    if !out.status.success() {
        return Err(CmdError::Failed {
            cmd,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `cmd` to completion; its stdout, or an error with its stderr.
pub fn run(ns: Option<&str>, cmd: &str) -> Result<String, CmdError> {
    check()?;
    finish(cmd.to_string(), command(ns, cmd).stdin(Stdio::null()).output())
}

/// Runs `cmd` with `input` on its standard input.
pub fn run_with_input(ns: Option<&str>, cmd: &str, input: &str) -> Result<String, CmdError> {
    check()?;
    let spawned = command(ns, cmd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = spawned.map_err(|source| CmdError::Spawn {
        cmd: cmd.to_string(),
        source,
    })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A tool that exits early closes its stdin; its status says why.
        let _ = stdin.write_all(input.as_bytes());
    }
    finish(cmd.to_string(), child.wait_with_output())
}

/// Starts `cmd` in the background, its output discarded.
pub fn spawn(ns: Option<&str>, cmd: &str) -> Result<Background, CmdError> {
    check()?;
    let child = command(ns, cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|source| CmdError::Spawn {
            cmd: cmd.to_string(),
            source,
        })?;
    Ok(Background(child))
}

/// A background process, killed when dropped.
pub struct Background(pub Child);

impl Background {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Waits up to `limit` for the process to exit by itself.
    pub fn wait_for_exit(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until something in `ns` listens on TCP `port` (up to 5 s).
pub fn wait_listening(ns: &str, port: u16) -> Result<(), CmdError> {
    let filter = format!("ss -Hltn sport = :{port}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        check()?;
        if run(Some(ns), &filter).is_ok_and(|out| !out.trim().is_empty()) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    Err(CmdError::Failed {
        cmd: format!("wait for a listener on {ns}:{port}"),
        status: "timeout".into(),
        stderr: String::new(),
    })
}

/// Sleeps `d`, waking early (with an error) on Ctrl-C.
pub fn sleep(d: Duration) -> Result<(), CmdError> {
    let deadline = Instant::now() + d;
    while Instant::now() < deadline {
        check()?;
        std::thread::sleep((deadline - Instant::now()).min(Duration::from_millis(50)));
    }
    Ok(())
}

/// Whether `tool` is on the PATH.
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
