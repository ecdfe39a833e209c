//! A whole Docker setup for a test: vswitchd with a bridge `ul` whose TAP
//! uplink lives in an outside namespace, a dockerd, and vswitch-docker
//! between them; and the HTTP helpers the Docker tests share.

use std::process::Command;
use std::time::{Duration, Instant};

use super::{Docker, Driver, IMAGE};
use crate::{require_root, run_ok, Netns, Switch};

/// The uplink's address; the outside namespace is 10.160.0.1 and has no
/// route to any container subnet.
pub const UPLINK_IP: &str = "10.160.0.2";
pub const OUTSIDE_IP: &str = "10.160.0.1";

/// vswitchd with a bridge `ul` whose TAP uplink lives in an outside
/// namespace, dockerd, and the driver between them.
pub struct World {
    // Dropped in this order: the driver first, then dockerd, vswitchd last.
    pub driver: Driver,
    pub docker: Docker,
    pub sw: Switch,
    pub outside: Netns,
}

impl World {
    pub fn new(tag: &str) -> World {
        require_root();
        let sw = Switch::start(tag, "0,1");
        let outside = Netns::new(&format!("{tag}o"));
        sw.ok(&["add-br", "ul", "--subnet", "10.159.0.0/24"]);
        uplink_up(&sw, &outside);
        let docker = Docker::start();
        let driver = Driver::start(&sw);
        World {
            driver,
            docker,
            sw,
            outside,
        }
    }

    /// `docker network create -d <this test's driver> ...`.
    pub fn network(&self, name: &str, subnet: &str, opts: &[&str]) -> String {
        let mut args = vec!["network", "create", "-d", &self.driver.name, "--subnet", subnet];
        for o in opts {
            args.extend(["-o", o]);
        }
        args.push(name);
        self.docker.ok(&args)
    }

    /// The vswitch bridge behind a Docker network.
    pub fn bridge(&self, network_id: &str) -> String {
        format!("dk-{}", &network_id[..12])
    }

    pub fn run(&self, name: &str, net: &str, extra: &[&str], cmd: &[&str]) {
        let mut args = vec!["run", "-d", "--name", name, "--network", net];
        args.extend_from_slice(extra);
        args.push(IMAGE);
        args.extend_from_slice(cmd);
        self.docker.ok(&args);
    }

    pub fn attachments(&self) -> Vec<serde_json::Value> {
        self.sw
            .json(&["list-attachments"])
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub fn published(&self, bridge: &str) -> Vec<serde_json::Value> {
        self.sw
            .json(&["list-published", bridge])
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Nothing left that no container owns: no attachment, no published
    /// port on `bridge`, no driver-made device in the host namespace.
    pub fn assert_clean(&self, bridge: &str) {
        let left = wait_for(Duration::from_secs(10), || {
            let devices = run_ok(Command::new("ip").args(["-br", "link"]));
            let ours: Vec<&str> = (devices.lines())
                .filter_map(|l| l.split_whitespace().next())
                .filter(|d| d.starts_with("vsd") || d.starts_with("vsa"))
                .collect();
            let attachments = self.attachments();
            let published = self.published(bridge);
            (attachments.is_empty() && published.is_empty() && ours.is_empty())
                .then_some(())
                .ok_or(format!(
                    "attachments {attachments:?}, published {published:?}, devices {ours:?}"
                ))
        });
        if let Err(what) = left {
            panic!("left behind: {what}");
        }
    }
}

/// (Re)configures the outside end of the TAP uplink (a TAP is a new device
/// after a vswitchd restart).
pub fn uplink_up(sw: &Switch, outside: &Netns) {
    sw.ok(&[
        "add-uplink",
        "ul",
        "up0",
        "--ip",
        "10.160.0.2/24",
        "--gw",
        OUTSIDE_IP,
        "--type",
        "tap",
        "--netns",
        &outside.name,
    ]);
    outside.add_addr("up0", "10.160.0.1/24");
}

pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Result<T, String>) -> Result<T, String> {
    let deadline = Instant::now() + limit;
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// HTTP status of a GET with curl run by `cmd` (empty on no answer).
pub fn http(mut cmd: Command, url: &str) -> String {
    let out = cmd
        .args(["-s", "-m", "3", "-o", "/dev/null", "-w", "%{http_code}", url])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn curl_host(url: &str) -> String {
    http(Command::new("curl"), url)
}

/// Waits until `url` answers 200 (a container's httpd takes a moment).
pub fn wait_http(cmd: impl Fn() -> Command, url: &str) {
    let got = wait_for(Duration::from_secs(10), || {
        let code = http(cmd(), url);
        (code == "200").then_some(()).ok_or(code)
    });
    assert!(got.is_ok(), "{url} did not answer 200: {got:?}");
}

pub fn host_port_of(published: &[serde_json::Value], to_port: u64) -> u64 {
    (published.iter())
        .find(|r| r["to_port"] == to_port)
        .and_then(|r| r["port"].as_u64())
        .unwrap_or_else(|| panic!("no published port to {to_port} in {published:?}"))
}
