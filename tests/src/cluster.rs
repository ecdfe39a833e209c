//! Helpers for the cluster tests: an underlay LAN (a Linux bridge in a
//! namespace of its own), etcd members on it, and "hosts": a namespace each,
//! with a management veth to the LAN (for etcd) and a vswitchd whose TAP
//! uplink is moved into the LAN namespace and plugged into its bridge.
//!
//! Every test makes its own LAN namespace, so addresses (10.99.0.0/24 for
//! the LAN) repeat between tests without meeting.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{run_ok, short_name, unique, Background, Netns, Switch};

/// The LAN's own address (etcd members listen on .1, .2, .3).
pub const LAN_GW: &str = "10.99.0.1";

/// The underlay: a bridge in its own namespace.
pub struct Lan {
    pub ns: Netns,
}

impl Lan {
    pub fn new() -> Lan {
        crate::sweep_stale();
        let ns = Netns::new("lan");
        // A fixed MAC: a Linux bridge otherwise takes its lowest port's, and
        // changes it as hosts' uplinks come and go, leaving the hosts' ARP
        // entries for etcd's address pointing at a MAC the bridge dropped.
        ns.ip(&["link", "add", "br0", "address", "02:99:00:00:00:01", "type", "bridge"]);
        ns.ip(&["link", "set", "br0", "up"]);
        ns.add_addr("br0", &format!("{LAN_GW}/24"));
        Lan { ns }
    }

    /// Plugs `dev` (already in the LAN namespace) into the bridge.
    pub fn plug(&self, dev: &str) {
        self.ns.ip(&["link", "set", dev, "master", "br0", "up"]);
    }
}

impl Default for Lan {
    fn default() -> Self {
        Lan::new()
    }
}

/// One etcd member on the LAN, with its own data directory.
pub struct Etcd {
    pub name: String,
    pub ip: String,
    peers: String,
    dir: PathBuf,
    lan: String,
    child: Option<Background>,
}

impl Etcd {
    /// `members` etcd processes forming one cluster, on 10.99.0.1.. of the LAN.
    pub fn cluster(lan: &Lan, members: usize) -> Vec<Etcd> {
        let ips: Vec<String> = (1..=members).map(|i| format!("10.99.0.{i}")).collect();
        for ip in ips.iter().skip(1) {
            lan.ns.add_addr("br0", &format!("{ip}/24"));
        }
        let peers: Vec<String> = ips
            .iter()
            .enumerate()
            .map(|(i, ip)| format!("e{i}=http://{ip}:2380"))
            .collect();
        let mut all: Vec<Etcd> = ips
            .iter()
            .enumerate()
            .map(|(i, ip)| Etcd {
                name: format!("e{i}"),
                ip: ip.clone(),
                peers: peers.join(","),
                dir: std::env::temp_dir().join(unique("etcd")),
                lan: lan.ns.name.clone(),
                child: None,
            })
            .collect();
        for member in &mut all {
            member.start();
        }
        for member in &all {
            member.wait_healthy();
        }
        all
    }

    pub fn url(&self) -> String {
        format!("http://{}:2379", self.ip)
    }

    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.with_extension("log"))
            .expect("etcd log");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.lan, "etcd", "--name", &self.name, "--data-dir"])
            .arg(&self.dir)
            .args([
                "--listen-client-urls",
                &self.url(),
                "--advertise-client-urls",
                &self.url(),
            ])
            .args(["--listen-peer-urls", &format!("http://{}:2380", self.ip)])
            .args(["--initial-advertise-peer-urls", &format!("http://{}:2380", self.ip)])
            .args(["--initial-cluster", &self.peers, "--initial-cluster-token", &self.lan])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd (Debian etcd-server) must be installed: scripts/install-deps.sh");
        self.child = Some(Background(child));
    }

    /// Waits until the member answers its health endpoint.
    pub fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let out = Command::new("ip")
                .args(["netns", "exec", &self.lan, "curl", "-s", "-m", "1"])
                .arg(format!("{}/health", self.url()))
                .output();
            if out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("\"true\"")) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("etcd member {} did not become healthy", self.name);
    }

    /// kill -9.
    pub fn kill(&mut self) {
        self.child = None;
    }

    /// Writes a raw key through etcd's JSON gateway (for foreign data).
    pub fn put_raw(&self, key: &str, value: &str) {
        let body = format!(r#"{{"key":"{}","value":"{}"}}"#, b64(key), b64(value));
        run_ok(
            Command::new("ip")
                .args([
                    "netns", "exec", &self.lan, "curl", "-sf", "-m", "3", "-X", "POST", "-d", &body,
                ])
                .arg(format!("{}/v3/kv/put", self.url())),
        );
    }
}

fn b64(text: &str) -> String {
    let mut child = Command::new("base64")
        .arg("-w0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("base64");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to base64");
    let out = child.wait_with_output().expect("base64");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.child = None;
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.with_extension("log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            eprintln!(
                "---- etcd {} (last lines, newest first) ----\n{}",
                self.name,
                tail.join("\n")
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(self.dir.with_extension("log"));
    }
}

/// A simulated host: a namespace running its own vswitchd in the cluster.
pub struct Host {
    pub index: u8,
    pub node: String,
    pub sw: Switch,
    pub ns: Netns,
    pub uplink: String,
}

impl Host {
    /// Starts host `index` (1..): management address 10.99.0.(100+index),
    /// VTEP 10.99.0.(10+index), vswitchd with a 3 s lease TTL.
    pub fn start(lan: &Lan, etcd: &[&Etcd], index: u8, core: &str) -> Host {
        let ns = Netns::new("host");
        let mgmt = short_name("cm");
        run_ok(Command::new("ip").args([
            "link", "add", &mgmt, "type", "veth", "peer", "name", "mgmt", "netns", &ns.name,
        ]));
        run_ok(Command::new("ip").args(["link", "set", &mgmt, "netns", &lan.ns.name]));
        lan.plug(&mgmt);
        ns.ip(&["link", "set", "mgmt", "up"]);
        ns.add_addr("mgmt", &format!("10.99.0.{}/24", 100 + index));
        let urls: Vec<String> = etcd.iter().map(|e| e.url()).collect();
        let node = format!("h{index}");
        let args = ["--cluster", &urls.join(","), "--node", &node, "--cluster-ttl", "3"];
        let sw = Switch::launch_new("host", core, &["ip", "netns", "exec", &ns.name], &args);
        let host = Host {
            index,
            node,
            sw,
            ns,
            uplink: format!("up{index}"),
        };
        host.sw
            .ok(&["add-br", "ul", "--subnet", &format!("10.98.{index}.0/24")]);
        host.sw.ok(&[
            "add-uplink",
            "ul",
            &host.uplink,
            "--type",
            "tap",
            "--netns",
            &lan.ns.name,
            "--ip",
            &host.vtep_cidr(),
            "--gw",
            LAN_GW,
        ]);
        lan.plug(&host.uplink);
        host
    }

    pub fn vtep(&self) -> String {
        format!("10.99.0.{}", 10 + self.index)
    }

    fn vtep_cidr(&self) -> String {
        format!("{}/24", self.vtep())
    }

    /// Restarts vswitchd after a crash; its TAP uplink is the same device,
    /// still plugged into the LAN (plugging is idempotent).
    pub fn restart(&mut self, lan: &Lan) {
        self.sw.launch();
        lan.plug(&self.uplink);
    }

    /// The cluster status as JSON.
    pub fn status(&self) -> serde_json::Value {
        self.sw.json(&["cluster-status"])
    }

    /// The remote VTEPs this host's bridge for `net` floods to.
    pub fn remotes(&self, net: &str) -> Vec<String> {
        let tunnels = self.sw.json(&["vtep-show", net]);
        tunnels[0]["remotes"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
            .unwrap_or_default()
    }

    /// This host's slice of `net`, once it has one.
    pub fn slice(&self, net: &str) -> Option<String> {
        let status = self.status();
        status["networks"]
            .as_array()?
            .iter()
            .find(|n| n["name"] == net && n["state"] == "ready")
            .and_then(|n| n["slice"].as_str().map(String::from))
    }

    /// Waits until this host serves `net` (bridge made, slice held).
    pub fn wait_ready(&self, net: &str) -> String {
        wait_for(Duration::from_secs(15), || self.slice(net))
            .unwrap_or_else(|| panic!("{} never served {net}: {}\n{}", self.node, self.status(), self.sw.log()))
    }

    /// Attaches a new container namespace to `net`; returns it and its address.
    pub fn container(&self, net: &str) -> (Netns, String) {
        let c = Netns::new("c");
        let out = self.sw.json(&["attach", net, &c.name]);
        let ip = out["ip"].as_str().expect("attach gives an address").to_string();
        (c, ip)
    }
}

/// Polls `f` every 20 ms until it gives Some, or `limit` passes.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Pings once with a short wait until it is answered; the time it took.
pub fn first_ping(from: &Netns, to: &str, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    wait_for(limit, || {
        let ok = from
            .cmd("ping")
            .args(["-c", "1", "-W", "0.2", "-q", to])
            .output()
            .is_ok_and(|o| o.status.success());
        ok.then(|| start.elapsed())
    })
}
