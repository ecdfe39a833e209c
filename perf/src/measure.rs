//! The figures, each taken with independent tools pinned to the tool core:
//! iperf3 (TCP, 1 and 4 streams), trafgen (64-byte frames from AF_PACKET,
//! faster than any switch here; delivered = the receiver's rx counter),
//! sockperf (TCP ping-pong, full round trip percentiles) and the switch's
//! CPU time from /proc.
//!
//! The Linux bridge has no process: its forwarding runs in softirq on
//! whichever core the traffic is, so its CPU is the machine's softirq time.

use std::collections::BTreeMap;
use std::path::Path as FsPath;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cmd::{self, CmdError};
use crate::systems::{Path, Scenario};

/// One figure: its key in the JSON, its label, and which way is better.
pub struct Metric {
    pub key: &'static str,
    pub label: &'static str,
    pub higher_is_better: bool,
}

pub const METRICS: &[Metric] = &[
    Metric {
        key: "tcp1_gbps",
        label: "TCP, 1 stream, Gbit/s",
        higher_is_better: true,
    },
    Metric {
        key: "tcp4_gbps",
        label: "TCP, 4 streams, Gbit/s",
        higher_is_better: true,
    },
    Metric {
        key: "pps_sent_k",
        label: "64 B frames offered, kpps",
        higher_is_better: true,
    },
    Metric {
        key: "pps_delivered_k",
        label: "64 B frames delivered, kpps",
        higher_is_better: true,
    },
    Metric {
        key: "loss_pct",
        label: "64 B frames lost, %",
        higher_is_better: false,
    },
    Metric {
        key: "cpu_s_per_mpkt",
        label: "switch CPU per million frames, core-s",
        higher_is_better: false,
    },
    Metric {
        key: "rr_tps",
        label: "TCP RR, transactions/s",
        higher_is_better: true,
    },
    Metric {
        key: "rr_p50_us",
        label: "TCP RR round trip p50, us",
        higher_is_better: false,
    },
    Metric {
        key: "rr_p99_us",
        label: "TCP RR round trip p99, us",
        higher_is_better: false,
    },
    Metric {
        key: "rr_p999_us",
        label: "TCP RR round trip p99.9, us",
        higher_is_better: false,
    },
    Metric {
        key: "idle_cpu_pct",
        label: "switch CPU when idle, % of a core",
        higher_is_better: false,
    },
];

/// How long each figure runs, and where the tools run.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Plan {
    pub seconds: u32,
    pub idle_seconds: u32,
    pub tool_core: usize,
}

/// The figures of one system in one repetition; a figure that could not
/// be taken is absent and its error listed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Sample {
    pub values: BTreeMap<&'static str, f64>,
    pub errors: Vec<String>,
}

impl Sample {
    fn record(&mut self, what: &str, result: Result<Vec<(&'static str, f64)>, CmdError>) -> Result<(), CmdError> {
        match result {
            Ok(values) => self.values.extend(values),
            Err(CmdError::Interrupted) => return Err(CmdError::Interrupted),
            Err(e) => self.errors.push(format!("{what}: {e}")),
        }
        Ok(())
    }
}

/// Takes every figure over `path`.
pub fn all(path: &Path, scenario: Scenario, plan: &Plan, dir: &FsPath) -> Result<Sample, CmdError> {
    let mut s = Sample::default();
    for streams in [1, 4] {
        let key = if streams == 1 { "tcp1_gbps" } else { "tcp4_gbps" };
        s.record(key, tcp(path, plan, streams).map(|g| vec![(key, g)]))?;
    }
    s.record("64 B frames", frames(path, scenario, plan, dir))?;
    s.record("TCP RR", rr(path, plan))?;
    s.record("idle CPU", idle(path, plan).map(|c| vec![("idle_cpu_pct", c)]))?;
    Ok(s)
}

fn failed(what: String, detail: String) -> CmdError {
    CmdError::Failed {
        cmd: what,
        status: "unexpected output".into(),
        stderr: detail,
    }
}

/// Runs `server` (listening on TCP `port`) in the server's namespace and
/// `client` in the client's, both on the tool core; the client's output.
fn client_server(path: &Path, plan: &Plan, server: &str, port: u16, client: &str) -> Result<String, CmdError> {
    let core = plan.tool_core;
    let mut srv = cmd::spawn(Some(&path.server), &format!("taskset -c {core} {server}"))?;
    cmd::wait_listening(&path.server, port)?;
    let out = cmd::run(Some(&path.client), &format!("taskset -c {core} {client}"));
    // iperf3 -1 exits by itself once its client is done; sockperf is killed.
    srv.wait_for_exit(Duration::from_millis(500));
    out
}

/// iperf3 with `streams` parallel streams: Gbit/s received.
fn tcp(path: &Path, plan: &Plan, streams: u32) -> Result<f64, CmdError> {
    let (sp, tp) = path.tcp_ports;
    let out = client_server(
        path,
        plan,
        &format!("iperf3 -s -1 -B {} -p {sp}", path.server_addr),
        sp,
        &format!("iperf3 -c {} -p {tp} -t {} -P {streams} -J", path.target, plan.seconds),
    )?;
    let report: serde_json::Value =
        serde_json::from_str(&out).map_err(|e| failed("iperf3 -J".into(), e.to_string()))?;
    report["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .map(|b| b / 1e9)
        .ok_or_else(|| failed("iperf3 -J".into(), format!("no sum_received: {}", report["error"])))
}

/// CPU time (user + system) of `pid` and all its threads, in seconds; for
/// None, the machine's softirq time.
fn cpu_seconds(pid: Option<u32>) -> Result<f64, CmdError> {
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let read = |file: &str| {
        std::fs::read_to_string(file).map_err(|source| CmdError::Spawn {
            cmd: format!("read {file}"),
            source,
        })
    };
    let ticks: f64 = match pid {
        Some(pid) => {
            let stat = read(&format!("/proc/{pid}/stat"))?;
            // Fields after the command name (which may hold spaces).
            let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
            let f: Vec<f64> = rest.split_whitespace().filter_map(|v| v.parse().ok()).collect();
            // utime and stime are fields 14 and 15: 12 and 13 after ')'.
            f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)
        }
        None => {
            let stat = read("/proc/stat")?;
            let cpu = stat.lines().next().unwrap_or("");
            // cpu user nice system idle iowait irq softirq ...
            cpu.split_whitespace()
                .nth(7)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0)
        }
    };
    Ok(ticks / hz)
}

fn counter(ns: &str, dev: &str, name: &str) -> Result<f64, CmdError> {
    let out = cmd::run(Some(ns), &format!("cat /sys/class/net/{dev}/statistics/{name}"))?;
    out.trim()
        .parse()
        .map_err(|_| failed(format!("{dev} {name}"), out.trim().to_string()))
}

/// The MAC address frames from `ns` to `target` go to (the gateway's, or
/// the target's on the same network).
fn next_hop_mac(ns: &str, target: std::net::Ipv4Addr) -> Result<String, CmdError> {
    let route = cmd::run(Some(ns), &format!("ip -4 route get {target}"))?;
    let words: Vec<&str> = route.split_whitespace().collect();
    let hop = words
        .windows(2)
        .find(|w| w[0] == "via")
        .map(|w| w[1].to_string())
        .unwrap_or_else(|| target.to_string());
    // Resolve it (the ping itself may go unanswered: only ARP matters).
    let _ = cmd::run(Some(ns), &format!("ping -c 1 -W 1 -q {hop}"));
    let neigh = cmd::run(Some(ns), &format!("ip neigh show {hop}"))?;
    let words: Vec<&str> = neigh.split_whitespace().collect();
    words
        .windows(2)
        .find(|w| w[0] == "lladdr")
        .map(|w| w[1].to_string())
        .ok_or_else(|| failed(format!("resolve {hop} from {ns}"), neigh.trim().to_string()))
}

/// trafgen sends 64-byte UDP frames (60 + FCS, one 5-tuple) from the
/// client's interface as fast as one core can; offered, delivered, loss,
/// and the switch's CPU per million delivered frames.
fn frames(path: &Path, scenario: Scenario, plan: &Plan, dir: &FsPath) -> Result<Vec<(&'static str, f64)>, CmdError> {
    const DISCARD: u16 = 9;
    let dport = if scenario == Scenario::NatIn {
        path.tcp_ports.1
    } else {
        DISCARD
    };
    let src_mac = cmd::run(
        Some(&path.client),
        &format!("cat /sys/class/net/{}/address", path.client_if),
    )?;
    let dst_mac = next_hop_mac(&path.client, path.target)?;
    let src_ip = cmd::run(
        Some(&path.client),
        &format!("ip -4 -o addr show dev {}", path.client_if),
    )?;
    let src_ip = src_ip
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .map(str::to_string)
        .ok_or_else(|| failed("client address".into(), src_ip.clone()))?;
    let cfg = dir.join("trafgen.cfg");
    let text = format!(
        "{{ eth(da={dst_mac}, sa={}), ipv4(saddr={src_ip}, daddr={}, ttl=64), udp(sp=40000, dp={dport}), fill(0x41, 18) }}\n",
        src_mac.trim(),
        path.target
    );
    std::fs::write(&cfg, text).map_err(|source| CmdError::Spawn {
        cmd: format!("write {}", cfg.display()),
        source,
    })?;
    let tx = |name| counter(&path.client, &path.client_if, name);
    let rx = || counter(&path.server, &path.server_if, "rx_packets");
    let (tx0, drop0, rx0, cpu0) = (
        tx("tx_packets")?,
        tx("tx_dropped")?,
        rx()?,
        cpu_seconds(path.switch_pid)?,
    );
    let start = Instant::now();
    let out = cmd::command(
        Some(&path.client),
        &format!(
            "timeout -s INT {} taskset -c {} trafgen -o {} -i {} -P 1 --no-sock-mem -Q",
            plan.seconds,
            plan.tool_core,
            path.client_if,
            cfg.display()
        ),
    )
    .output()
    .map_err(|source| CmdError::Spawn {
        cmd: "trafgen".into(),
        source,
    })?;
    cmd::check()?;
    // Let what is queued arrive before reading the counters.
    cmd::sleep(Duration::from_millis(200))?;
    let secs = start.elapsed().as_secs_f64() - 0.2;
    let sent = tx("tx_packets")? + tx("tx_dropped")? - tx0 - drop0;
    let delivered = rx()? - rx0;
    let cpu = cpu_seconds(path.switch_pid)? - cpu0;
    if sent <= 0.0 {
        return Err(failed(
            "trafgen".into(),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    let mut values = vec![
        ("pps_sent_k", sent / secs / 1e3),
        ("pps_delivered_k", delivered / secs / 1e3),
        ("loss_pct", (100.0 * (1.0 - delivered / sent)).max(0.0)),
    ];
    if delivered > 0.0 {
        values.push(("cpu_s_per_mpkt", cpu / (delivered / 1e6)));
    }
    Ok(values)
}

/// sockperf TCP ping-pong, 14-byte messages: transactions/s and the full
/// round trip's p50, p99 and p99.9 in microseconds.
fn rr(path: &Path, plan: &Plan) -> Result<Vec<(&'static str, f64)>, CmdError> {
    let (sp, tp) = path.rr_ports;
    let out = client_server(
        path,
        plan,
        &format!("sockperf sr --tcp -i {} -p {sp}", path.server_addr),
        sp,
        &format!(
            "sockperf pp --tcp -i {} -p {tp} -t {} -m 14 --full-rtt",
            path.target, plan.seconds
        ),
    )?;
    parse_sockperf(&out).ok_or_else(|| failed("sockperf pp".into(), out.lines().last().unwrap_or("").to_string()))
}

fn parse_sockperf(out: &str) -> Option<Vec<(&'static str, f64)>> {
    let mut values = Vec::new();
    let mut runtime = None;
    let mut received = None;
    for line in out.lines() {
        // sockperf colours its output; drop escape sequences.
        let line: String = {
            let mut clean = String::new();
            let mut esc = false;
            for ch in line.chars() {
                match (esc, ch) {
                    (false, '\u{1b}') => esc = true,
                    (true, c) if c.is_ascii_alphabetic() => esc = false,
                    (true, _) => {}
                    (false, c) => clean.push(c),
                }
            }
            clean
        };
        if let Some((_, p)) = line.split_once("---> percentile ") {
            let (pct, val) = p.split_once('=')?;
            let key = match pct.trim() {
                "50.000" => "rr_p50_us",
                "99.000" => "rr_p99_us",
                "99.900" => "rr_p999_us",
                _ => continue,
            };
            values.push((key, val.trim().parse().ok()?));
        }
        for field in line.split(|c: char| c == ';' || c.is_whitespace()) {
            if let Some(v) = field.strip_prefix("RunTime=") {
                runtime = v.parse::<f64>().ok();
            }
            if let Some(v) = field.strip_prefix("ReceivedMessages=") {
                received = v.parse::<f64>().ok();
            }
        }
    }
    let (t, n) = (runtime?, received?);
    if t <= 0.0 || values.len() != 3 {
        return None;
    }
    values.push(("rr_tps", n / t));
    Some(values)
}

/// The switch's CPU with no traffic, in % of one core.
fn idle(path: &Path, plan: &Plan) -> Result<f64, CmdError> {
    let before = cpu_seconds(path.switch_pid)?;
    let start = Instant::now();
    cmd::sleep(Duration::from_secs(u64::from(plan.idle_seconds)))?;
    let used = cpu_seconds(path.switch_pid)? - before;
    Ok(100.0 * used / start.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockperf_output_is_read() {
        let out = "sockperf: == version #3.10-0.git ==\n\
            sockperf: [\u{1b}[2;35mTotal Run\u{1b}[0m] RunTime=5.000 sec; Warm up time=400 msec; SentMessages=101; ReceivedMessages=100\n\
            sockperf: ========= Printing statistics for Server No: 0\n\
            sockperf: [\u{1b}[2;35mValid Duration\u{1b}[0m] RunTime=4.000 sec; SentMessages=90; ReceivedMessages=80\n\
            sockperf: ---> <MAX> observation =  279.468\n\
            sockperf: ---> percentile 99.900 =   51.894\n\
            sockperf: ---> percentile 99.000 =   36.016\n\
            sockperf: ---> percentile 50.000 =   24.600\n";
        let v: BTreeMap<_, _> = parse_sockperf(out).expect("parses").into_iter().collect();
        assert_eq!(v["rr_p50_us"], 24.6);
        assert_eq!(v["rr_p99_us"], 36.016);
        assert_eq!(v["rr_p999_us"], 51.894);
        assert_eq!(v["rr_tps"], 20.0, "the valid duration's count, the last one printed");
        assert_eq!(parse_sockperf("sockperf: ERROR: connection refused"), None);
    }
}
