//! `vsctl capture PORT -w FILE|-`: asks vswitchd to copy a port's frames
//! and writes them as pcap (with the pcap-file crate), as they come, so
//! `vsctl capture p1 -w - | tcpdump -r -` reads them live. Ends when the
//! count is reached or after `--seconds`; a vsctl that is killed leaves a
//! capture vswitchd stops by itself 10 s later.
//!
//! `--filter EXPR` is tcpdump's language, compiled by vswitchd's libpcap
//! and applied as vswitchd hands the frames over (vsctl itself does not
//! load libpcap: its start-up is every vsctl call's). vswitchd copies every
//! frame of the port, so with a filter the count counts what was written.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::DataLink;
use vswitch_ctl::{req, CaptureDirection, Reply, Request};

use crate::Daemon;

/// How often vsctl asks for what was captured.
const POLL: Duration = Duration::from_millis(20);
/// The snap length vswitchd cuts frames at (told again in every reply).
const SNAPLEN: u32 = 9216;

/// Flushes after every write: a reader on the other end of a pipe sees
/// each frame as it is written.
struct Flushing<W: Write>(W);

impl<W: Write> Write for Flushing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.0.write(buf)?;
        self.0.flush()?;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

fn unhex(text: &str) -> anyhow::Result<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        bail!("vswitchd sent a frame of odd hex length");
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            let pair = text.get(i..i + 2).context("vswitchd sent a frame that is not hex")?;
            u8::from_str_radix(pair, 16).context("vswitchd sent a frame that is not hex")
        })
        .collect()
}

pub struct Capture<'a> {
    pub daemon: &'a Daemon,
    /// One port, or every port of a bridge.
    pub ports: Vec<String>,
    pub count: Option<u64>,
    pub direction: CaptureDirection,
    pub seconds: Option<u64>,
    pub write: &'a Path,
    pub filter: Option<String>,
}

pub fn run(c: Capture<'_>) -> anyhow::Result<()> {
    let filter = c.filter.as_ref();
    let out: Box<dyn Write> = if c.write == Path::new("-") {
        Box::new(Flushing(std::io::stdout().lock()))
    } else {
        Box::new(Flushing(
            File::create(c.write).with_context(|| format!("cannot create {}", c.write.display()))?,
        ))
    };
    let header = PcapHeader {
        snaplen: SNAPLEN,
        datalink: DataLink::ETHERNET,
        ..Default::default()
    };
    let mut pcap = PcapWriter::with_header(out, header).context("cannot write the pcap header")?;
    // vswitchd counts for one port without a filter; otherwise vsctl counts
    // what it writes.
    let vsctl_counts = filter.is_some() || c.ports.len() > 1;
    let mut started = Vec::new();
    let mut refused = None;
    for port in &c.ports {
        let start = Request::CaptureStart(req::CaptureStart {
            port: port.clone(),
            count: if vsctl_counts { None } else { c.count },
            direction: c.direction,
            filter: filter.cloned(),
        });
        match c.daemon.call(&start) {
            Ok(_) => started.push(port.clone()),
            // A bridge's port that is down has nothing to capture.
            Err(err) if c.ports.len() > 1 => {
                eprintln!("vsctl: {port} not captured: {err:#}");
                refused = Some(err);
            }
            Err(err) => return Err(err),
        }
    }
    if let (true, Some(err)) = (started.is_empty(), refused) {
        return Err(err.context("no port of the bridge could be captured"));
    }
    let deadline = c.seconds.map(|s| Instant::now() + Duration::from_secs(s));
    let (mut taken, mut skipped, mut filtered) = (0u64, 0u64, 0u64);
    let result = (|| -> anyhow::Result<()> {
        loop {
            std::thread::sleep(POLL);
            // One round over the ports, written in time order.
            let mut round = Vec::new();
            let mut all_done = true;
            let mut round_skipped = 0;
            for port in &started {
                let Reply::Captured(chunk) = c
                    .daemon
                    .call(&Request::CaptureRead(req::CaptureRead { port: port.clone() }))?
                else {
                    bail!("vswitchd answered capture-read with something else");
                };
                all_done &= chunk.done;
                round_skipped += chunk.skipped;
                filtered += chunk.filtered;
                round.extend(chunk.frames);
            }
            skipped = round_skipped;
            round.sort_by_key(|f| f.unix_ns);
            for f in &round {
                let data = unhex(&f.data)?;
                let ts = Duration::from_nanos(f.unix_ns);
                pcap.write_packet(&PcapPacket::new(ts, f.orig_len, &data))
                    .context("cannot write a frame")?;
                taken += 1;
                if vsctl_counts && c.count.is_some_and(|n| taken >= n) {
                    return Ok(());
                }
            }
            if (!vsctl_counts && all_done) || deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(());
            }
        }
    })();
    for port in &started {
        let _ = c
            .daemon
            .call(&Request::CaptureStop(req::CaptureStop { port: port.clone() }));
    }
    match filter {
        Some(_) => eprintln!(
            "{taken} frames captured, {filtered} not matching the filter, {skipped} skipped (the reader was too slow)"
        ),
        None => eprintln!("{taken} frames captured, {skipped} skipped (the reader was too slow)"),
    }
    result
}
