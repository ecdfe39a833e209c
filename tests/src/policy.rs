//! What the policy tests share: attaching with an identity, applying a
//! manifest, TCP and UDP servers and clients that say whether they got an
//! answer, echo with a chosen identifier, raw Ethernet.

use std::process::Stdio;
use std::thread::sleep;
use std::time::Duration;

use crate::{run_ok, Background, Netns, Switch};

/// Attaches `ns` to br0 as `namespace/name` with `labels`; its address.
pub fn attach(sw: &Switch, ns: &Netns, namespace: &str, name: &str, labels: &[&str]) -> (String, String) {
    let mut args = vec![
        "attach",
        "br0",
        ns.name.as_str(),
        "--name",
        name,
        "--namespace",
        namespace,
    ];
    for l in labels {
        args.extend(["--label", l]);
    }
    let reply = sw.json(&args);
    let field = |k: &str| reply[k].as_str().unwrap_or_default().to_string();
    (field("ip"), field("port"))
}

/// Applies a manifest given as text; vsctl's output.
pub fn apply(sw: &Switch, manifest: &str) -> String {
    let path = std::env::temp_dir().join(format!("vs-policy-{}.yaml", crate::unique("m")));
    std::fs::write(&path, manifest).expect("manifest written");
    let out = sw.ok(&["apply", "-f", path.to_str().unwrap_or_default()]);
    let _ = std::fs::remove_file(&path);
    out
}

/// TCP listeners on `ports` in `ns`, each answering a line with "ok".
pub fn serve_tcp(ns: &Netns, ports: &[u16]) -> Background {
    let script = format!(
        "import socket, threading\n\
         def serve(port):\n\
         \x20   s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         \x20   s.bind(('0.0.0.0', port)); s.listen(16)\n\
         \x20   while True:\n\
         \x20       c, _ = s.accept()\n\
         \x20       threading.Thread(target=talk, args=(c,), daemon=True).start()\n\
         def talk(c):\n\
         \x20   f = c.makefile('rwb', 0)\n\
         \x20   try:\n\
         \x20       for line in f: f.write(b'ok\\n')\n\
         \x20   except OSError: pass\n\
         for p in {ports:?}: threading.Thread(target=serve, args=(p,), daemon=True).start()\n\
         threading.Event().wait()\n"
    );
    let child = ns
        .cmd("python3")
        .args(["-c", &script])
        .stdout(Stdio::null())
        .spawn()
        .expect("python3");
    sleep(Duration::from_millis(400));
    Background(child)
}

/// A UDP listener on `port` in `ns` answering every datagram with "ok".
pub fn serve_udp(ns: &Netns, port: u16) -> Background {
    let script = format!(
        "import socket\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', {port}))\n\
         while True:\n\
         \x20   d, a = s.recvfrom(2048); s.sendto(b'ok', a)\n"
    );
    let child = ns.cmd("python3").args(["-c", &script]).spawn().expect("python3");
    sleep(Duration::from_millis(300));
    Background(child)
}

/// Does a TCP connection from `ns` to `ip:port` open and get an answer?
pub fn tcp_ok(ns: &Netns, ip: &str, port: u16) -> bool {
    tcp_ok_from(ns, "", ip, port)
}

/// [`tcp_ok`] from source address `src` ("" for the kernel's choice).
pub fn tcp_ok_from(ns: &Netns, src: &str, ip: &str, port: u16) -> bool {
    let script = format!(
        "import socket, sys\n\
         try:\n\
         \x20   s = socket.create_connection(('{ip}', {port}), timeout=1.5, source_address=('{src}', 0)); s.sendall(b'hi\\n')\n\
         \x20   sys.exit(0 if s.recv(16) == b'ok\\n' else 1)\n\
         except OSError: sys.exit(1)\n"
    );
    ns.cmd("python3")
        .args(["-c", &script])
        .status()
        .is_ok_and(|s| s.success())
}

pub fn udp_ok(ns: &Netns, ip: &str, port: u16) -> bool {
    let script = format!(
        "import socket, sys\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1.5)\n\
         s.sendto(b'hi', ('{ip}', {port}))\n\
         try: sys.exit(0 if s.recv(16) == b'ok' else 1)\n\
         except OSError: sys.exit(1)\n"
    );
    ns.cmd("python3")
        .args(["-c", &script])
        .status()
        .is_ok_and(|s| s.success())
}

/// One echo request with identifier `id`; true if answered.
pub fn ping_id(ns: &Netns, ip: &str, id: u16) -> bool {
    ns.cmd("ping")
        .args(["-c", "1", "-W", "1", "-q", "-e", &id.to_string(), ip])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Sends three raw Ethernet frames of ethertype 0x88b5 (local
/// experimental) from `ns`'s eth0 to `mac`.
pub fn send_raw(ns: &Netns, mac: &str) {
    let script = format!(
        "import socket\n\
         s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind(('eth0', 0))\n\
         src = bytes.fromhex(open('/sys/class/net/eth0/address').read().strip().replace(':', ''))\n\
         dst = bytes.fromhex('{}')\n\
         for _ in range(3): s.send(dst + src + b'\\x88\\xb5' + b'raw frame past policy'.ljust(46, b'.'))\n",
        mac.replace(':', "")
    );
    run_ok(ns.cmd("python3").args(["-c", &script]));
}
