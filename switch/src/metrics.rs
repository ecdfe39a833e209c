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

use prometheus::{CounterVec, Encoder, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};
use tracing::{debug, warn};
use vswitch_ctl::{
    req, BridgeInfo, ClusterInfo, ControlStatsInfo, CtStatsInfo, PmdStats, PortStats, Reply, Request, Response,
};

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
    pub control: Option<ControlStatsInfo>,
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
        if let Some(Reply::ControlStats(c)) = ask(Request::ControlStats) {
            s.control = Some(c);
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

        set(
            &gauges(
                "build_info",
                "1, labelled with the version vswitchd was built as",
                &["version"],
            )?,
            &[env!("CARGO_PKG_VERSION")],
            1,
        )?;

        // Who a port is, once: the other port series join on (port, bridge).
        let info = gauges(
            "port_info",
            "1 for each port, labelled with its type, owner (a container ID) and address",
            &["port", "bridge", "type", "owner", "address"],
        )?;
        let up = gauges(
            "port_up",
            "1 while a port forwards, 0 when it is down (vsctl show says why)",
            &["port", "bridge"],
        )?;
        for b in &self.bridges {
            for p in &b.ports {
                let lease = b.leases.iter().find(|l| l.port == p.name);
                let owner = lease.and_then(|l| l.owner.as_deref()).unwrap_or_default();
                let address = lease.map(|l| l.ip.to_string()).unwrap_or_default();
                let kind = p.port_type.to_string();
                set(&info, &[&p.name, &b.name, &kind, owner, &address], 1)?;
                set(&up, &[&p.name, &b.name], i64::from(p.state == "up"))?;
            }
        }

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
            // Only the reasons that happened: ~40 reasons a port, most
            // of them zero forever, were most of the series at scale.
            for (reason, n) in p.drops.iter().filter(|(_, n)| **n > 0) {
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
        let busy_seconds = CounterVec::new(
            Opts::new(
                "pmd_busy_seconds_total",
                "Time a poll thread spent in iterations that moved frames (its rate over pmd_packets_total's is the time a frame)",
            ),
            &core,
        )?;
        reg.register(Box::new(busy_seconds.clone()))?;
        for p in &self.pmds {
            let c = p.core.to_string();
            count(&pmd_packets, &[&c], p.packets)?;
            count(&busy, &[&c], p.busy_iterations)?;
            count(&idle, &[&c], p.idle_iterations)?;
            count(&sleeps, &[&c], p.sleeps)?;
            count(&reads, &[&c], p.port_reads)?;
            busy_seconds
                .get_metric_with_label_values(&[&c])?
                .inc_by(p.busy_ns as f64 * 1e-9);
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
                ("host-limit", ct.host_limit),
            ] {
                count(&refused, &[reason], n)?;
            }
        }

        let bridge = ["bridge"];
        let macs = gauges("bridge_fdb_entries", "MAC addresses a bridge has learned", &bridge)?;
        let max_macs = gauges("bridge_fdb_max_entries", "Most MAC addresses a bridge learns", &bridge)?;
        let leases = gauges("bridge_leases", "Addresses a bridge has handed out", &bridge)?;
        let free = gauges(
            "bridge_addresses_free",
            "Addresses a bridge can still hand out",
            &bridge,
        )?;
        let remotes = gauges(
            "bridge_tunnel_remote_vteps",
            "Remote VTEPs of a bridge's tunnel",
            &bridge,
        )?;
        for b in &self.bridges {
            set(&macs, &[&b.name], b.learned_macs as i64)?;
            set(&max_macs, &[&b.name], b.max_macs as i64)?;
            set(&leases, &[&b.name], b.leases.len() as i64)?;
            if let Some(n) = addresses_free(b) {
                set(&free, &[&b.name], n as i64)?;
            }
            if let Some(t) = &b.tunnel {
                set(&remotes, &[&b.name], t.remotes.len() as i64)?;
            }
        }

        if let Some(c) = &self.control {
            count(
                &counters(
                    "config_changes_total",
                    "Configuration changes committed since the start",
                    &[],
                )?,
                &[],
                c.changes,
            )?;
            count(
                &counters(
                    "config_save_failures_total",
                    "Changes refused because the configuration could not be saved (a full or read-only disk)",
                    &[],
                )?,
                &[],
                c.save_failures,
            )?;
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

/// The addresses `attach` can still hand out on a bridge with a subnet:
/// its range's (or subnet's) host addresses, less the gateway and the
/// leases in it. Counted, not walked (a /8 has 16M).
fn addresses_free(b: &BridgeInfo) -> Option<u64> {
    let subnet = b.subnet?;
    let range = b.ip_range.unwrap_or(subnet);
    let size = 1u64 << (32 - u32::from(range.prefix_len()));
    let mut taken: Vec<std::net::Ipv4Addr> = [Some(subnet.network()), Some(subnet.broadcast()), b.gateway]
        .into_iter()
        .flatten()
        .chain(b.leases.iter().map(|l| l.ip))
        .filter(|ip| range.contains(ip))
        .collect();
    taken.sort_unstable();
    taken.dedup();
    Some(size.saturating_sub(taken.len() as u64))
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
        drops.insert("ttl-exceeded".to_string(), 0);
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
        assert!(
            !text.contains("reason=\"ttl-exceeded\""),
            "zero drop reasons are not series: {text}"
        );
        assert!(text.contains("vswitch_build_info{version=\""), "{text}");
        assert!(text.contains("# TYPE vswitch_port_rx_packets_total counter"), "{text}");
        assert!(
            text.contains("vswitch_port_rx_packets_total{bridge=\"br0\",port=\"p1\"} 7"),
            "{text}"
        );
        let drop_line = "vswitch_port_drops_total{bridge=\"br0\",port=\"p1\",reason=\"tx-full\"} 3";
        assert!(text.contains(drop_line), "{text}");
        assert!(text.contains("vswitch_ct_entries 2"), "{text}");
    }

    fn bridge(subnet: &str, range: Option<&str>, leased: &[&str]) -> BridgeInfo {
        let subnet: vswitch_ctl::Ipv4Net = subnet.parse().expect("subnet");
        BridgeInfo {
            name: "br0".into(),
            subnet: Some(subnet),
            gateway: Some(vswitch_ctl::SubnetExt::first_host(&subnet)),
            ip_range: range.map(|r| r.parse().expect("range")),
            leases: leased
                .iter()
                .map(|ip| vswitch_ctl::LeaseInfo {
                    ip: ip.parse().expect("ip"),
                    netns: "n".into(),
                    port: "p".into(),
                    owner: Some("c0ffee".into()),
                })
                .collect(),
            ..serde_json::from_value(serde_json::json!({
                "name": "br0", "aging_secs": 300, "max_macs": 10, "learned_macs": 0,
                "learn_limit_hits": 0, "mac_moves": 0, "ports": []
            }))
            .expect("a bridge")
        }
    }

    #[test]
    fn addresses_left_are_counted_not_walked() {
        // 256 less network, broadcast, gateway and two leases.
        assert_eq!(
            addresses_free(&bridge("10.1.0.0/24", None, &["10.1.0.2", "10.1.0.3"])),
            Some(251)
        );
        // The upper half: its 128 less the broadcast and one lease (the gateway is below).
        let upper = bridge("10.1.0.0/24", Some("10.1.0.128/25"), &["10.1.0.130", "10.1.0.2"]);
        assert_eq!(addresses_free(&upper), Some(126));
        // A /8 answers at once.
        assert_eq!(addresses_free(&bridge("10.0.0.0/8", None, &[])), Some((1 << 24) - 3));
        let mut l2 = bridge("10.1.0.0/24", None, &[]);
        l2.subnet = None;
        assert_eq!(addresses_free(&l2), None, "no subnet, no addresses");
    }

    #[test]
    fn addresses() {
        assert_eq!(parse_addr("9477").unwrap(), "127.0.0.1:9477".parse().unwrap());
        assert_eq!(parse_addr("0.0.0.0:80").unwrap(), "0.0.0.0:80".parse().unwrap());
        assert!(parse_addr("localhost:x").is_err());
    }
}
