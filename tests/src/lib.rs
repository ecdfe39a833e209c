//! Helpers for the end-to-end tests: a network namespace per container, a
//! vswitchd per test (own socket, state dir and log), and vsctl calls.
//!
//! Everything a test creates is named uniquely (`vst-TAG-PID-N`) and removed
//! in `Drop`, so tests run in parallel and clean up when they fail too. A
//! failing test prints its daemon's log.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub mod cluster;
pub mod docker;
pub mod podman;
pub mod policy;

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A name no other test (or test run) uses.
pub fn unique(tag: &str) -> String {
    format!(
        "vst-{tag}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A name that is unique and short enough for an interface of the host
/// namespace (15 bytes): AF_XDP ports name their veth's host end after the port.
pub fn short_name(prefix: &str) -> String {
    let name = format!(
        "{prefix}{}x{}",
        std::process::id() % 100_000,
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    assert!(name.len() <= 15, "{name} is too long for an interface name");
    name
}

/// The directory the workspace's binaries were built into (the tests run from
/// `target/<profile>/deps`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
    dir.to_path_buf()
}

pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (cargo build --release)",
        path.display()
    );
    path
}

/// Runs a command; panics with its output if it fails.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace standing in for a container.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates the namespace with loopback up and IPv6 off (so no router
    /// solicitations or DAD muddy counters the tests read).
    pub fn new(tag: &str) -> Netns {
        let ns = Netns { name: unique(tag) };
        run_ok(Command::new("ip").args(["netns", "add", &ns.name]));
        ns.ip(&["link", "set", "lo", "up"]);
        for key in [
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ] {
            run_ok(ns.cmd("sysctl").args(["-qw", key]));
        }
        ns
    }

    /// A command that will run inside the namespace.
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    pub fn ip(&self, args: &[&str]) -> String {
        run_ok(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    pub fn add_addr(&self, dev: &str, cidr: &str) {
        self.ip(&["addr", "add", cidr, "dev", dev]);
    }

    /// Pings `addr` `count` times; true when every echo came back.
    pub fn ping(&self, addr: &str, count: u32) -> bool {
        self.cmd("ping")
            .args(["-c", &count.to_string(), "-i", "0.05", "-W", "1", "-q", addr])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    /// One ping to `addr` sent from the address `src`; true if answered.
    pub fn ping_from(&self, addr: &str, src: &str) -> bool {
        self.cmd("ping")
            .args(["-c", "1", "-W", "1", "-q", "-I", src, addr])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    /// MAC address of `dev`, or None when it does not exist.
    pub fn mac(&self, dev: &str) -> Option<String> {
        let out = self
            .cmd("cat")
            .arg(format!("/sys/class/net/{dev}/address"))
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// TCP segments that arrived with a bad checksum (TcpInCsumErrors).
    pub fn tcp_csum_errors(&self) -> u64 {
        let snmp = run_ok(self.cmd("cat").arg("/proc/net/snmp"));
        let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
        let (names, values) = (tcp.next().unwrap_or_default(), tcp.next().unwrap_or_default());
        let i = names
            .split_whitespace()
            .position(|n| n == "InCsumErrors")
            .expect("InCsumErrors in /proc/net/snmp");
        values
            .split_whitespace()
            .nth(i)
            .and_then(|v| v.parse().ok())
            .expect("InCsumErrors value")
    }

    /// Runs an iperf3 client for `secs` and returns (Gbit/s, bytes received).
    pub fn iperf3(&self, server: &str, secs: u32, extra: &[&str]) -> (f64, u64) {
        let out = run_ok(
            self.cmd("iperf3")
                .args(["-c", server, "-t", &secs.to_string(), "-J"])
                .args(extra),
        );
        let report: serde_json::Value = serde_json::from_str(&out).expect("iperf3 JSON");
        let sum = &report["end"]["sum_received"];
        let sum = if sum.is_null() { &report["end"]["sum"] } else { sum };
        (
            sum["bits_per_second"].as_f64().unwrap_or(0.0) / 1e9,
            sum["bytes"].as_u64().unwrap_or(0),
        )
    }

    /// Starts `iperf3 -s -1` and waits until it accepts connections.
    pub fn iperf3_server(&self, addr: &str) -> Background {
        let child = self
            .cmd("iperf3")
            .args(["-s", "-1", "-B", addr])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("iperf3");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let listening = self
                .cmd("ss")
                .args(["-Hltn", "sport = :5201"])
                .output()
                .map(|o| !o.stdout.is_empty())
                .unwrap_or(false);
            if listening {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Background(child)
    }

    /// Starts tcpdump on `dev` with `filter`, stopping after `count` packets,
    /// and returns once it is capturing.
    pub fn tcpdump(&self, dev: &str, count: u32, filter: &str) -> Background {
        let mut child = self
            .cmd("tcpdump")
            .args(["-i", dev, "-nn", "-l", "-c", &count.to_string(), filter])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tcpdump");
        let stderr: ChildStderr = child.stderr.take().expect("tcpdump stderr");
        let mut lines = BufReader::new(stderr).lines();
        loop {
            match lines.next() {
                Some(Ok(line)) if line.contains("listening on") => break,
                Some(Ok(_)) => continue,
                _ => panic!("tcpdump did not start"),
            }
        }
        Background(child)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &self.name]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// An interface of the host namespace, deleted when the test ends.
pub struct HostLink(pub String);

impl HostLink {
    /// Creates a veth pair: `host` here, `peer` in `ns` as eth0, both up.
    pub fn veth_into(host: &str, ns: &Netns) -> HostLink {
        run_ok(Command::new("ip").args([
            "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", &ns.name,
        ]));
        let link = HostLink(host.to_string());
        run_ok(Command::new("ip").args(["link", "set", host, "up"]));
        ns.ip(&["link", "set", "eth0", "up"]);
        link
    }
}

impl Drop for HostLink {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).status();
    }
}

/// A child process killed when the test ends, however it ends.
pub struct Background(pub Child);

impl Background {
    /// Waits at most `limit` for the process to exit by itself; kills it
    /// otherwise. Returns its stdout.
    pub fn finish(mut self, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let mut out = String::new();
        if let Some(stdout) = self.0.stdout.take() {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                out.push_str(&line);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Saves blocked ([`Switch::block_saves`]); dropped, the journal is back.
pub struct SavesBlocked {
    journal: PathBuf,
    tmp: PathBuf,
    kept: Option<Vec<u8>>,
}

impl Drop for SavesBlocked {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.journal);
        let _ = std::fs::remove_dir(&self.tmp);
        if let Some(kept) = self.kept.take() {
            let _ = std::fs::write(&self.journal, kept);
        }
    }
}

/// A vswitchd of this test's own, with its own socket and state directory.
pub struct Switch {
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    cores: String,
    /// Command (and arguments) vswitchd is started under, e.g. prlimit.
    wrapper: Vec<String>,
    /// Extra vswitchd arguments.
    args: Vec<String>,
    child: Option<Child>,
}

impl Switch {
    pub fn start(tag: &str, cores: &str) -> Switch {
        Switch::start_under(tag, cores, &[])
    }

    /// Starts vswitchd as an argument of `wrapper` (for limits and
    /// capabilities: `["prlimit", "--memlock=..."]`).
    pub fn start_under(tag: &str, cores: &str, wrapper: &[&str]) -> Switch {
        Switch::launch_new(tag, cores, wrapper, &[])
    }

    /// Starts vswitchd with extra arguments (`["--ct-max", "2"]`).
    pub fn start_with_args(tag: &str, cores: &str, args: &[&str]) -> Switch {
        Switch::launch_new(tag, cores, &[], args)
    }

    /// Starts vswitchd under `wrapper` with extra arguments.
    pub fn launch_new(tag: &str, cores: &str, wrapper: &[&str], args: &[&str]) -> Switch {
        let dir = std::env::temp_dir().join(unique(tag));
        std::fs::create_dir_all(&dir).expect("test dir");
        let mut sw = Switch {
            socket: dir.join("vswitchd.sock"),
            state_dir: dir.join("state"),
            dir,
            cores: cores.to_string(),
            wrapper: wrapper.iter().map(|s| s.to_string()).collect(),
            args: args.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        sw.launch();
        sw
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("vswitchd.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Starts the daemon and waits until it answers.
    pub fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        let mut cmd = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(bin("vswitchd"));
                c
            }
            None => Command::new(bin("vswitchd")),
        };
        let child = cmd
            .args(["--cores", &self.cores, "--log-level", "debug"])
            .args(&self.args)
            .arg("--socket")
            .arg(&self.socket)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start vswitchd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("vswitchd exited at start ({status}):\n{}", self.log());
            }
            if self.vsctl(&["show"]).status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "vswitchd did not answer within 10 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// kill -9, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, as a clean stop would; waits for the process to exit.
    pub fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// What is saved in the state directory, as text: the state file and
    /// the journal of changes since it was written (either may be missing).
    pub fn saved(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.state_dir.join(name)).unwrap_or_default();
        format!("{}\n-- journal --\n{}", read("state.json"), read("state.journal"))
    }

    /// The number of changes in the journal.
    pub fn journal_lines(&self) -> usize {
        std::fs::read_to_string(self.state_dir.join("state.journal")).map_or(0, |t| t.lines().count())
    }

    /// Makes every save fail until [`SavesBlocked`] is dropped: directories
    /// where the journal and the state file's temporary go stop even root.
    pub fn block_saves(&self) -> SavesBlocked {
        let journal = self.state_dir.join("state.journal");
        let kept = std::fs::read(&journal).ok();
        let _ = std::fs::remove_file(&journal);
        std::fs::create_dir(&journal).expect("journal blocker");
        let tmp = self.state_dir.join("state.json.tmp");
        std::fs::create_dir(&tmp).expect("state file blocker");
        SavesBlocked { journal, tmp, kept }
    }

    pub fn vsctl(&self, args: &[&str]) -> Output {
        self.vsctl_cmd(args).output().expect("run vsctl")
    }

    /// vsctl on this switch's socket, not started yet (to run beside).
    pub fn vsctl_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin("vsctl"));
        cmd.arg("--socket").arg(&self.socket).args(args).stdin(Stdio::null());
        cmd
    }

    /// Runs vsctl; panics with its stderr if it fails.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.vsctl(args);
        assert!(
            out.status.success(),
            "vsctl {args:?} failed: {}\nvswitchd log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs vsctl expecting a refusal: exit status 1, one line on stderr,
    /// containing `needle`.
    pub fn expect_error(&self, args: &[&str], needle: &str) {
        let out = self.vsctl(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "vsctl {args:?} should fail with status 1: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "one line, not a trace: {stderr}");
        assert!(
            stderr.contains(needle),
            "vsctl {args:?}: expected '{needle}' in: {stderr}"
        );
    }

    /// Runs a read command with --json and parses the result.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.push("--json");
        serde_json::from_str(&self.ok(&all)).expect("vsctl --json output")
    }

    /// One counter of one port, e.g. ("p1", "tx_packets") or ("p1", "drops.tx-full").
    pub fn port_counter(&self, port: &str, counter: &str) -> u64 {
        let stats = self.json(&["port-stats", port]);
        let entry = &stats[0];
        let value = match counter.split_once('.') {
            Some((group, key)) => &entry[group][key],
            None => &entry[counter],
        };
        value
            .as_u64()
            .unwrap_or_else(|| panic!("no counter {counter} in {entry}"))
    }

    /// Adds a TAP port moved into `ns` as eth0.
    pub fn add_port(&self, bridge: &str, port: &str, ns: &Netns) {
        self.ok(&[
            "add-port", bridge, port, "--type", "tap", "--netns", &ns.name, "--ifname", "eth0",
        ]);
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- vswitchd log ({}) ----\n{}", self.log_path().display(), self.log());
        }
        self.kill9();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Removes what earlier test processes left behind when they died before
/// their cleanup ran: namespaces named `vst-TAG-PID-N` whose PID is gone
/// (their processes are killed first) and their scratch directories.
pub fn sweep_stale() {
    let alive = |name: &str| {
        let pid = name.rsplit('-').nth(1).and_then(|p| p.parse::<u32>().ok());
        pid.is_none_or(|pid| Path::new(&format!("/proc/{pid}")).exists())
    };
    if let Ok(out) = Command::new("ip").args(["netns", "list"]).output() {
        let list = String::from_utf8_lossy(&out.stdout).into_owned();
        for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
            if name.starts_with("vst-") && !alive(name) {
                drop(Netns { name: name.to_string() });
            }
        }
    }
    if let Ok(dir) = std::fs::read_dir(std::env::temp_dir()) {
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("vst-") && !alive(name.trim_end_matches(".log")) {
                let _ = std::fs::remove_dir_all(entry.path());
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// Kills every process started from under `dir` (containerd, shims,
/// container processes), unmounts what is mounted there, removes it.
pub fn remove_scratch(dir: &Path) {
    let needle = dir.display().to_string();
    for _ in 0..3 {
        let _ = Command::new("pkill").args(["-9", "-f", &needle]).status();
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let mut under: Vec<&str> = (mounts.lines())
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|m| m.starts_with(&needle))
            .collect();
        under.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in under {
            let _ = Command::new("umount").args(["-l", m]).status();
        }
        if std::fs::remove_dir_all(dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Fails early with a clear message when the tests cannot work here.
pub fn require_root() {
    let uid = run_ok(Command::new("id").arg("-u"));
    assert_eq!(
        uid.trim(),
        "0",
        "the end-to-end tests create namespaces and TAP devices: run them as root"
    );
}
