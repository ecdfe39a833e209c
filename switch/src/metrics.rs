//! `vswitchd --metrics ADDR:PORT`: the counters in the Prometheus text
//! format (OpenMetrics), on `GET /metrics`.
//!
//! A client of the control plane like vsctl: each scrape asks the same
//! requests `port-stats`, `pmd-stats`, `ct-stats`, `show` and
//! `cluster-status` answer, and encodes the replies with the `prometheus`
//! crate into a registry built for that scrape (the values are read,
//! summed over poll threads, when asked; nothing is kept between scrapes).
//! The Prometheus text format 0.0.4, which promtool checks (the
//! prometheus-client crate writes OpenMetrics only, whose counter HELP
//! lines promtool does not match to their `_total` samples). The datapath
//! does not know it exists. HTTP is tiny_http's; one scrape at a time.

use std::net::SocketAddr;

use prometheus::{Encoder, GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};
use tracing::{debug, warn};
use vswitch_ctl::{req, BridgeInfo, ClusterInfo, CtStatsInfo, PmdStats, PortStats, Reply, Request, Response};

use crate::control::socket::Handler;

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What one scrape reports, as the control plane answered it.
#[derive(Default)]
pub struct Scrape {
    pub ports: Vec<PortStats>,
    pub pmds: Vec<PmdStats>,
    pub ct: Option<CtStatsInfo>,
    pub bridges: Vec<BridgeInfo>,
    pub cluster: Option<ClusterInfo>,
}

impl Scrape {
    /// Asks `handler` what the scrape reports.
    pub fn take(handler: &Handler) -> Scrape {
        let ask = |r: Request| match handler(r) {
            Response::Ok { result } => Some(result),
            Response::Error { message } => {
                debug!(%message, "metrics: a request was refused");
                None
            }
        };
        let mut s = Scrape::default();
        if let Some(Reply::PortStats(p)) = ask(Request::PortStats(req::PortStats { port: None })) {
            s.ports = p;
        }
        if let Some(Reply::PmdStats(p)) = ask(Request::PmdStats) {
            s.pmds = p;
        }
        if let Some(Reply::CtStats(c)) = ask(Request::CtStats) {
            s.ct = Some(c);
        }
        if let Some(Reply::Show(b)) = ask(Request::Show) {
            s.bridges = b;
        }
        if let Some(Reply::Cluster(Some(c))) = ask(Request::ClusterStatus) {
            s.cluster = Some(*c);
        }
        s
    }

    /// The text a scrape answers with.
    pub fn encode(&self) -> prometheus::Result<String> {
        let reg = Registry::new_custom(Some("vswitch".into()), None)?;
        let counters = |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<IntCounterVec> {
            let v = IntCounterVec::new(Opts::new(name, help), labels)?;
            reg.register(Box::new(v.clone()))?;
            Ok(v)
        };
        let gauges = |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<IntGaugeVec> {
            let v = IntGaugeVec::new(Opts::new(name, help), labels)?;
            reg.register(Box::new(v.clone()))?;
            Ok(v)
        };
        // Counters: the value is the sum now; a fresh registry per scrape.
        let count = |v: &IntCounterVec, labels: &[&str], n: u64| -> prometheus::Result<()> {
            v.get_metric_with_label_values(labels)?.inc_by(n);
            Ok(())
        };
        let set = |v: &IntGaugeVec, labels: &[&str], n: i64| -> prometheus::Result<()> {
            v.get_metric_with_label_values(labels)?.set(n);
            Ok(())
        };

        let port = ["port", "bridge"];
        let rx_packets = counters("port_rx_packets_total", "Frames received on a port", &port)?;
        let rx_bytes = counters("port_rx_bytes_total", "Bytes received on a port", &port)?;
        let tx_packets = counters("port_tx_packets_total", "Frames sent on a port", &port)?;
        let tx_bytes = counters("port_tx_bytes_total", "Bytes sent on a port", &port)?;
        let gso = counters(
            "port_rx_gso_packets_total",
            "TCP super-frames received on a port",
            &port,
        )?;
        let drops = counters(
            "port_drops_total",
            "Frames dropped, by port and reason",
            &["port", "bridge", "reason"],
        )?;
        for p in &self.ports {
            let id = [p.name.as_str(), p.bridge.as_str()];
            count(&rx_packets, &id, p.rx_packets)?;
            count(&rx_bytes, &id, p.rx_bytes)?;
            count(&tx_packets, &id, p.tx_packets)?;
            count(&tx_bytes, &id, p.tx_bytes)?;
            count(&gso, &id, p.rx_gso_packets)?;
            for (reason, n) in &p.drops {
                count(&drops, &[&p.name, &p.bridge, reason], *n)?;
            }
        }

        let core = ["core"];
        let pmd_packets = counters("pmd_packets_total", "Frames a poll thread moved", &core)?;
        let busy = counters(
            "pmd_busy_iterations_total",
            "Poll loop iterations that moved frames",
            &core,
        )?;
        let idle = counters(
            "pmd_idle_iterations_total",
            "Poll loop iterations that found nothing",
            &core,
        )?;
        let sleeps = counters("pmd_sleeps_total", "Times a poll thread slept in epoll", &core)?;
        let reads = counters("pmd_port_reads_total", "Reads a poll thread made from ports", &core)?;
        let per_packet = GaugeVec::new(
            Opts::new(
                "pmd_busy_seconds_per_packet",
                "Busy time of a poll thread per frame moved",
            ),
            &core,
        )?;
        reg.register(Box::new(per_packet.clone()))?;
        for p in &self.pmds {
            let c = p.core.to_string();
            count(&pmd_packets, &[&c], p.packets)?;
            count(&busy, &[&c], p.busy_iterations)?;
            count(&idle, &[&c], p.idle_iterations)?;
            count(&sleeps, &[&c], p.sleeps)?;
            count(&reads, &[&c], p.port_reads)?;
            per_packet
                .get_metric_with_label_values(&[&c])?
                .set(p.avg_ns_per_packet * 1e-9);
        }

        if let Some(ct) = &self.ct {
            set(
                &gauges("ct_entries", "Connections tracked now", &[])?,
                &[],
                ct.entries as i64,
            )?;
            set(
                &gauges("ct_max_entries", "Most connections tracked at once", &[])?,
                &[],
                ct.max_entries as i64,
            )?;
            count(
                &counters("ct_creates_total", "Connections created", &[])?,
                &[],
                ct.creates,
            )?;
            count(
                &counters("ct_expiries_total", "Connections expired", &[])?,
                &[],
                ct.expiries,
            )?;
            count(
                &counters(
                    "ct_picked_up_total",
                    "TCP flows picked up mid-stream after a crash",
                    &[],
                )?,
                &[],
                ct.picked_up,
            )?;
            let refused = counters("ct_refused_total", "Packets conntrack refused, by reason", &["reason"])?;
            for (reason, n) in [
                ("invalid", ct.invalid),
                ("out-of-window", ct.out_of_window),
                ("table-full", ct.table_full),
                ("ports-exhausted", ct.ports_exhausted),
                ("container-limit", ct.host_limit),
            ] {
                count(&refused, &[reason], n)?;
            }
        }

        let bridge = ["bridge"];
        let macs = gauges("fdb_entries", "MAC addresses a bridge has learned", &bridge)?;
        let leases = gauges("leases", "Addresses a bridge has handed out", &bridge)?;
        let remotes = gauges("tunnel_remote_vteps", "Remote VTEPs of a bridge's tunnel", &bridge)?;
        for b in &self.bridges {
            set(&macs, &[&b.name], b.learned_macs as i64)?;
            set(&leases, &[&b.name], b.leases.len() as i64)?;
            if let Some(t) = &b.tunnel {
                set(&remotes, &[&b.name], t.remotes.len() as i64)?;
            }
        }

        if let Some(c) = &self.cluster {
            let up = gauges(
                "cluster_connected",
                "1 while the cluster's etcd is reachable",
                &["node"],
            )?;
            set(&up, &[&c.node], i64::from(c.state == "connected"))?;
            let resyncs = counters("cluster_resyncs_total", "Full reads of the cluster's state", &["node"])?;
            count(&resyncs, &[&c.node], c.resyncs)?;
        }

        let mut out = Vec::new();
        TextEncoder::new().encode(&reg.gather(), &mut out)?;
        String::from_utf8(out).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}

/// Serves `/metrics` on `addr` until the process ends.
pub fn serve(server: tiny_http::Server, handler: Handler) {
    for request in server.incoming_requests() {
        let (status, body, kind) = match (request.method(), request.url()) {
            (tiny_http::Method::Get, "/metrics") => match Scrape::take(&handler).encode() {
                Ok(text) => (200, text, CONTENT_TYPE),
                Err(err) => {
                    warn!(%err, "metrics could not be encoded");
                    (500, "encoding failed\n".to_string(), "text/plain")
                }
            },
            (_, "/metrics") => (405, "GET only\n".to_string(), "text/plain"),
            _ => (404, "vswitchd serves /metrics only\n".to_string(), "text/plain"),
        };
        let mut response = tiny_http::Response::from_string(body).with_status_code(status);
        if let Ok(h) = tiny_http::Header::from_bytes("Content-Type", kind) {
            response.add_header(h);
        }
        if let Err(err) = request.respond(response) {
            debug!(%err, "metrics: the scraper went away");
        }
    }
}

/// `--metrics`: "PORT" (on 127.0.0.1) or "ADDR:PORT".
pub fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse()
        .map_err(|_| format!("'{text}' is not PORT or ADDR:PORT (e.g. 9477 or 127.0.0.1:9477)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn counters_are_named_the_prometheus_way() {
        let mut drops = BTreeMap::new();
        drops.insert("tx-full".to_string(), 3);
        let scrape = Scrape {
            ports: vec![PortStats {
                name: "p1".into(),
                bridge: "br0".into(),
                rx_packets: 7,
                drops,
                ..Default::default()
            }],
            ct: Some(CtStatsInfo {
                entries: 2,
                ..Default::default()
            }),
            ..Default::default()
        };
        let text = scrape.encode().expect("encodes");
        assert!(text.contains("# TYPE vswitch_port_rx_packets_total counter"), "{text}");
        assert!(
            text.contains("vswitch_port_rx_packets_total{bridge=\"br0\",port=\"p1\"} 7"),
            "{text}"
        );
        let drop_line = "vswitch_port_drops_total{bridge=\"br0\",port=\"p1\",reason=\"tx-full\"} 3";
        assert!(text.contains(drop_line), "{text}");
        assert!(text.contains("vswitch_ct_entries 2"), "{text}");
    }

    #[test]
    fn addresses() {
        assert_eq!(parse_addr("9477").unwrap(), "127.0.0.1:9477".parse().unwrap());
        assert_eq!(parse_addr("0.0.0.0:80").unwrap(), "0.0.0.0:80".parse().unwrap());
        assert!(parse_addr("localhost:x").is_err());
    }
}
