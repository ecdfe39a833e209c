//! A podman of the test's own, on its CNI backend, with vswitch-cni as the
//! plugin of its networks.
//!
//! Own root, runroot, tmp dir, containers.conf (`CONTAINERS_CONF`), CNI
//! configuration directory and plugin directory (`vswitch` there is this
//! build's vswitch-cni), all under a scratch directory (`/tmp/vspm-PID-N`);
//! the image `vsbox:test` is imported from busybox-static. Drop removes the
//! containers and everything under the directory, also when the test failed.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::{bin, remove_scratch};

pub const IMAGE: &str = "vsbox:test";
/// Busybox applets the image links (`timeout`: this busybox's `wget -T`
/// crashes).
const APPLETS: [&str; 11] = [
    "sh", "ping", "nc", "wget", "httpd", "ip", "cat", "echo", "sleep", "true", "timeout",
];

static SEQ: AtomicUsize = AtomicUsize::new(0);

pub struct Podman {
    pub dir: PathBuf,
}

impl Podman {
    pub fn new() -> Podman {
        let dir = PathBuf::from(format!(
            "/tmp/vspm-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        for sub in ["bin", "net.d", "root", "runroot", "tmp", "image/bin"] {
            std::fs::create_dir_all(dir.join(sub)).expect("podman dirs");
        }
        std::os::unix::fs::symlink(bin("vswitch-cni"), dir.join("bin/vswitch")).expect("plugin link");
        // runc, cgroupfs and explicit limits: what podman 4.3 needs on these
        // machines (no systemd; no CAP_SYS_RESOURCE to raise limits, so
        // they are set below the ones we have).
        let conf = format!(
            "[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=4096:4096\"]\n\
             [engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
             tmp_dir = \"{d}/tmp\"\n\
             [network]\nnetwork_backend = \"cni\"\ncni_plugin_dirs = [\"{d}/bin\"]\n\
             network_config_dir = \"{d}/net.d\"\n",
            d = dir.display()
        );
        std::fs::write(dir.join("containers.conf"), conf).expect("containers.conf");
        let p = Podman { dir };
        p.import_image();
        p
    }

    fn import_image(&self) {
        let root = self.dir.join("image");
        std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static (/bin/busybox)");
        for applet in APPLETS {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).expect("applet link");
        }
        let out = self.cmd(&["import", "-", IMAGE]).stdin(Stdio::piped()).spawn();
        let mut child = out.expect("podman import");
        let tar = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .args(["-c", "."])
            .output()
            .expect("tar");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("stdin");
            stdin.write_all(&tar.stdout).expect("feed podman import");
        }
        let status = child.wait().expect("podman import");
        assert!(status.success(), "podman import failed");
    }

    /// A CNI network (conflist) of one vswitch plugin with `plugin` as its
    /// configuration (type and capabilities added).
    pub fn network(&self, name: &str, mut plugin: serde_json::Value) {
        plugin["type"] = "vswitch".into();
        plugin["capabilities"] = serde_json::json!({ "portMappings": true });
        let list = serde_json::json!({ "cniVersion": "1.0.0", "name": name, "plugins": [plugin] });
        std::fs::write(
            self.dir.join("net.d").join(format!("{name}.conflist")),
            list.to_string(),
        )
        .expect("conflist");
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("runroot"))
            .args(["--storage-driver", "vfs"])
            .args(args)
            .stdin(Stdio::null());
        c
    }

    pub fn podman(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run podman")
    }

    /// Runs podman; panics with its output if it fails.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.podman(args);
        assert!(
            out.status.success(),
            "podman {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Default for Podman {
    fn default() -> Self {
        Podman::new()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.podman(&["rm", "-a", "-f", "-t", "0"]);
        remove_scratch(&self.dir);
    }
}
