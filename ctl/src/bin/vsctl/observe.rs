//! `vsctl observe [--follow] [--verdict allowed|denied] [--last N] [--json]`:
//! the policy stages' connection events, as Hubble's `observe` shows
//! flows: the most recent ones, then with `--follow` each new one as it
//! comes (polled every 250 ms), until interrupted or `--seconds` pass.
//! `--json` prints one JSON object a line.

use std::time::{Duration, Instant};

use vswitch_ctl::req::{self, FlowVerdict};
use vswitch_ctl::{FlowInfo, Reply, Request};

use crate::Daemon;

const POLL: Duration = Duration::from_millis(250);

pub struct Options {
    pub follow: bool,
    pub verdict: Option<FlowVerdict>,
    pub last: usize,
    pub seconds: Option<u64>,
    pub json: bool,
}

pub fn run(daemon: &Daemon, o: &Options) -> anyhow::Result<()> {
    let read = |after: Option<u64>| -> anyhow::Result<(Vec<FlowInfo>, u64)> {
        let request = Request::ObserveRead(req::ObserveRead {
            after,
            last: o.last,
            verdict: o.verdict,
        });
        match daemon.call(&request)? {
            Reply::Flows(chunk) => Ok((chunk.flows, chunk.last)),
            _ => anyhow::bail!("vswitchd answered observe with something else"),
        }
    };
    let (flows, mut last) = read(None)?;
    print(&flows, o.json)?;
    if !o.follow {
        return Ok(());
    }
    let deadline = o.seconds.map(|s| Instant::now() + Duration::from_secs(s));
    while deadline.is_none_or(|d| Instant::now() < d) {
        std::thread::sleep(POLL);
        let (flows, next) = read(Some(last))?;
        print(&flows, o.json)?;
        last = next;
    }
    Ok(())
}

fn print(flows: &[FlowInfo], json: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for f in flows {
        if json {
            writeln!(out, "{}", serde_json::to_string(f)?)?;
        } else {
            let ms = f.time_ms % 86_400_000;
            let (h, m, s, milli) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
            let end = |who: &str, port: u16| match (f.protocol.as_str(), port) {
                ("icmp", _) | (_, 0) => who.to_string(),
                _ => format!("{who}:{port}"),
            };
            writeln!(
                out,
                "{h:02}:{m:02}:{s:02}.{milli:03} {:<7} {:<4} {} -> {}  {}",
                f.event,
                f.protocol,
                end(&f.src, f.src_port),
                end(&f.dst, f.dst_port),
                f.reason
            )?;
        }
    }
    out.flush()?;
    Ok(())
}
