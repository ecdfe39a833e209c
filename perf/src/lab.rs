//! What one system under test is made of for one measurement: namespaces,
//! links, daemons, files. Everything is registered as it is created and
//! removed when the `Lab` is dropped: after the measurement, on an error,
//! and on Ctrl-C alike (the run unwinds to here).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::cmd::{self, Background, CmdError};

pub struct Lab {
    /// Prefix of every namespace and root-namespace link name of the run.
    prefix: String,
    namespaces: Vec<String>,
    links: Vec<String>,
    /// Processes stopped (in reverse order) before the namespaces go.
    procs: Vec<Background>,
    /// Shell commands run first on cleanup (e.g. asking a daemon to exit).
    stop_hooks: Vec<String>,
    dir: PathBuf,
}

impl Lab {
    /// A lab whose names start with `prefix` (keep it short: interface
    /// names have 15 characters) and whose files live under `dir`.
    pub fn new(prefix: &str, dir: &Path) -> Result<Lab, CmdError> {
        std::fs::create_dir_all(dir).map_err(|source| CmdError::Spawn {
            cmd: format!("mkdir {}", dir.display()),
            source,
        })?;
        Ok(Lab {
            prefix: prefix.to_string(),
            namespaces: Vec::new(),
            links: Vec::new(),
            procs: Vec::new(),
            stop_hooks: Vec::new(),
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The run's name for `short`.
    pub fn name(&self, short: &str) -> String {
        format!("{}{short}", self.prefix)
    }

    /// Creates namespace `{prefix}{short}` with loopback up and IPv6 off
    /// (no router solicitations in the measurements).
    pub fn netns(&mut self, short: &str) -> Result<String, CmdError> {
        let ns = self.name(short);
        cmd::run(None, &format!("ip netns add {ns}"))?;
        self.namespaces.push(ns.clone());
        cmd::run(Some(&ns), "ip link set lo up")?;
        cmd::run(Some(&ns), "sysctl -qw net.ipv6.conf.all.disable_ipv6=1")?;
        Ok(ns)
    }

    /// Records a root-namespace link to delete on cleanup.
    pub fn own_link(&mut self, name: &str) {
        self.links.push(name.to_string());
    }

    pub fn own_process(&mut self, p: Background) -> u32 {
        let pid = p.pid();
        self.procs.push(p);
        pid
    }

    pub fn on_cleanup(&mut self, hook: String) {
        self.stop_hooks.push(hook);
    }

    /// A veth pair: `a` in namespace `a_ns` (None: the root namespace),
    /// `b` in `b_ns`, both up; `b` gets `b_mac` if given.
    pub fn veth(
        &mut self,
        a_ns: Option<&str>,
        a: &str,
        b_ns: &str,
        b: &str,
        b_mac: Option<&str>,
    ) -> Result<(), CmdError> {
        let a_where = a_ns.map(|ns| format!("netns {ns}")).unwrap_or_default();
        let mac = b_mac.map(|m| format!("address {m}")).unwrap_or_default();
        cmd::run(
            None,
            &format!("ip link add {a} {a_where} type veth peer name {b} netns {b_ns} {mac}"),
        )?;
        if a_ns.is_none() {
            self.own_link(a);
        }
        cmd::run(a_ns, &format!("ip link set {a} up"))?;
        cmd::run(Some(b_ns), &format!("ip link set {b} up"))?;
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for hook in self.stop_hooks.drain(..).rev() {
            let _ = cmd::command(None, &hook).output();
        }
        while let Some(p) = self.procs.pop() {
            drop(p);
        }
        let mut killed = Vec::new();
        for ns in self.namespaces.drain(..).rev() {
            if let Ok(out) = cmd::command(None, &format!("ip netns pids {ns}")).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<i32>() {
                        // SAFETY: kill(2) on a pid read from the namespace; no memory is involved.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                        killed.push(pid);
                    }
                }
            }
            let _ = cmd::command(None, &format!("ip netns del {ns}")).output();
        }
        // SIGKILL is asynchronous: a daemon with much to release (OVS's
        // AF_XDP rings) runs on for a moment. Gone means gone on return.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && killed.iter().any(|pid| running(*pid)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        for link in self.links.drain(..) {
            let _ = cmd::command(None, &format!("ip link del {link}")).output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether `pid` still runs (a zombie, already dead, does not count).
fn running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}
