//! A real dockerd per test, and vswitch-docker serving it.
//!
//! Each dockerd has its own data root, exec root, pidfile and API socket
//! under a scratch directory (`/tmp/vsdk-PID-N`), no default bridge, and
//! the image `vsbox:test` imported from busybox-static (nothing is pulled).
//! Its driver listens on `/run/docker/plugins/NAME.sock` with a unique
//! NAME, so tests do not share a driver (dockerd finds plugins only
//! there). Drop stops both and removes their processes, mounts and files,
//! also when the test failed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::{bin, remove_scratch, run_ok, Switch};

pub mod world;

/// Debian's docker client (the one in /usr/local/bin may be another).
const DOCKER: &str = "/usr/bin/docker";
pub const IMAGE: &str = "vsbox:test";
const PLUGIN_DIR: &str = "/run/docker/plugins";
/// Busybox applets the image links (those the tests and the demo use).
const APPLETS: [&str; 14] = [
    "sh", "ping", "nc", "wget", "httpd", "ip", "cat", "echo", "sleep", "hostname", "nslookup", "true", "ls", "timeout",
];

static SEQ: AtomicUsize = AtomicUsize::new(0);

fn scratch(kind: &str) -> PathBuf {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    PathBuf::from(format!("/tmp/vsdk-{}-{n}-{kind}", std::process::id()))
}

pub struct Docker {
    pub dir: PathBuf,
    pub sock: PathBuf,
    child: Option<Child>,
}

impl Docker {
    /// Starts dockerd and imports the test image.
    pub fn start() -> Docker {
        sweep_stale();
        let dir = scratch("dockerd");
        std::fs::create_dir_all(&dir).expect("dockerd dir");
        let mut d = Docker {
            sock: dir.join("docker.sock"),
            dir,
            child: None,
        };
        d.launch();
        d.import_image();
        d
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("dockerd.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Starts dockerd (again) and waits until it answers.
    pub fn launch(&mut self) {
        let _ = std::fs::remove_file(self.dir.join("docker.pid"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("dockerd log");
        let child = Command::new("dockerd")
            .arg("--data-root")
            .arg(self.dir.join("data"))
            .arg("--exec-root")
            .arg(self.dir.join("exec"))
            .arg("--pidfile")
            .arg(self.dir.join("docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", self.sock.display()))
            .args(["--bridge", "none"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start dockerd (is docker.io installed?)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.docker(&["version"]).status.success() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("dockerd exited at start ({status}):\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "dockerd did not answer:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The image: busybox-static and links to its applets, `docker import`ed.
    fn import_image(&self) {
        let root = self.dir.join("image");
        std::fs::create_dir_all(root.join("bin")).expect("image dir");
        std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static (/bin/busybox)");
        for applet in APPLETS {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).expect("applet link");
        }
        let tar = format!(
            "tar -C {} -c . | {DOCKER} -H unix://{} import - {IMAGE}",
            root.display(),
            self.sock.display()
        );
        run_ok(Command::new("sh").args(["-c", &tar]));
    }

    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new(DOCKER)
            .arg("-H")
            .arg(format!("unix://{}", self.sock.display()))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run docker")
    }

    /// Runs a docker command; panics with its output (and dockerd's log)
    /// if it fails.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed: {}{}\ndockerd log (tail):\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail(&self.log(), 30)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A container's network namespace (its sandbox), for tools run in it.
    pub fn sandbox(&self, container: &str) -> String {
        self.ok(&["inspect", "-f", "{{.NetworkSettings.SandboxKey}}", container])
    }

    /// A command run in a container's network namespace with the host's
    /// tools (the image has busybox only).
    pub fn in_netns(&self, container: &str, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.sandbox(container))).arg(program);
        c
    }

    /// kill -9 of dockerd alone: containers and their shims live on; its
    /// containerd follows it (waited for, as a service manager's restart
    /// delay would: a dockerd started while that containerd is still dying
    /// waits for it in vain).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let pidfile = self.dir.join("exec/containerd/containerd.pid");
        let pid = std::fs::read_to_string(pidfile).unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !pid.trim().is_empty()
            && Path::new(&format!("/proc/{}", pid.trim())).exists()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline && !matches!(child.try_wait(), Ok(Some(_))) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- dockerd log (tail) ----\n{}", tail(&self.log(), 60));
        }
        self.stop();
        remove_scratch(&self.dir);
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Scratch directories of test processes that died before cleaning up.
fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir("/tmp") else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("vsdk-") else {
            continue;
        };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
            remove_scratch(&entry.path());
            let plugin = PathBuf::from(PLUGIN_DIR).join(format!("{name}.sock"));
            let _ = std::fs::remove_file(plugin);
        }
    }
}

/// vswitch-docker for one test: its own plugin name, state directory and
/// log; talks to `switch`.
pub struct Driver {
    pub name: String,
    pub plugin_socket: PathBuf,
    pub dir: PathBuf,
    vswitchd: PathBuf,
    child: Option<Child>,
}

impl Driver {
    pub fn start(switch: &Switch) -> Driver {
        let dir = scratch("driver");
        std::fs::create_dir_all(&dir).expect("driver dir");
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut d = Driver {
            plugin_socket: PathBuf::from(PLUGIN_DIR).join(format!("{name}.sock")),
            name,
            dir,
            vswitchd: switch.socket.clone(),
            child: None,
        };
        d.launch();
        d
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("driver.log")).unwrap_or_default()
    }

    pub fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("driver.log"))
            .expect("driver log");
        let child = Command::new(bin("vswitch-docker"))
            .arg("--socket")
            .arg(&self.vswitchd)
            .arg("--plugin-socket")
            .arg(&self.plugin_socket)
            .arg("--state-dir")
            .arg(self.dir.join("state"))
            .args(["--log-level", "debug"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start vswitch-docker");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(&self.plugin_socket).is_err() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("vswitch-docker exited at start ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "vswitch-docker did not listen:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, and waits until it is gone (its proxies' ports free).
    pub fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && !matches!(child.try_wait(), Ok(Some(_))) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// One driver call as dockerd would make it: (HTTP status, body).
    pub fn call(&self, method: &str, body: &str) -> (u16, String) {
        let out = run_ok(
            Command::new("curl")
                .args(["-s", "-w", "\n%{http_code}", "--unix-socket"])
                .arg(&self.plugin_socket)
                .args(["-X", "POST", "-d", body])
                .arg(format!("http://plugin{method}")),
        );
        let (body, code) = out.rsplit_once('\n').unwrap_or((&out, "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- vswitch-docker log ----\n{}", self.log());
        }
        self.terminate();
        let _ = std::fs::remove_file(&self.plugin_socket);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
