//! What a run says: medians with min and max per system, and the ratio
//! vswitch / other system taken per repetition pair (the same repetition
//! of both, measured minutes apart at most) then summarised the same way.
//! Markdown for perf/RESULTS.md, JSON for machines, SVG for people.

use std::fmt::Write;

use serde::Serialize;

use crate::measure::METRICS;
use crate::run::{CaseResult, Report};

/// Median, min and max of a set of figures.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

pub fn spread(values: &[f64]) -> Option<Spread> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Spread {
        median,
        min: v[0],
        max: v[n - 1],
        n,
    })
}

/// The figures of `metric` for `system` in `case`, one per repetition
/// (None where that repetition has none).
fn series(case: &CaseResult, system: &str, metric: &str) -> Vec<Option<f64>> {
    case.systems
        .get(system)
        .map(|s| s.samples.iter().map(|x| x.values.get(metric).copied()).collect())
        .unwrap_or_default()
}

pub fn value(case: &CaseResult, system: &str, metric: &str) -> Option<Spread> {
    let v: Vec<f64> = series(case, system, metric).into_iter().flatten().collect();
    spread(&v)
}

/// vswitch / `anchor` per repetition pair.
pub fn ratio(case: &CaseResult, anchor: &str, metric: &str) -> Option<Spread> {
    let ours = series(case, "vswitch", metric);
    let theirs = series(case, anchor, metric);
    let r: Vec<f64> = ours
        .iter()
        .zip(&theirs)
        .filter_map(|(a, b)| match (a, b) {
            (Some(a), Some(b)) if *b > 0.0 => Some(a / b),
            _ => None,
        })
        .collect();
    spread(&r)
}

fn num(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn cell(s: Option<Spread>) -> String {
    match s {
        None => "-".into(),
        Some(s) if s.n == 1 => num(s.median),
        Some(s) => format!("{} ({}-{})", num(s.median), num(s.min), num(s.max)),
    }
}

fn ratio_cell(s: Option<Spread>) -> String {
    match s {
        None => "-".into(),
        Some(s) if s.n == 1 => format!("{:.2}x", s.median),
        Some(s) => format!("{:.2}x ({:.2}-{:.2})", s.median, s.min, s.max),
    }
}

fn systems_of(report: &Report) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    for case in &report.cases {
        for name in case.systems.keys() {
            if !names.contains(name) {
                names.push(name);
            }
        }
    }
    // vswitch first, then the anchors in a fixed order.
    names.sort_by_key(|n| match *n {
        "vswitch" => 0,
        "bridge" => 1,
        _ => 2,
    });
    names
}

pub fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let systems = systems_of(report);
    let anchors: Vec<&str> = systems.iter().copied().filter(|s| *s != "vswitch").collect();
    let _ = writeln!(out, "`{}`", report.command);
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{}, {}; {} repetitions, {} s per figure; switch on core(s) {:?}, tools on core {}. \
         Median (min-max) over repetitions; ratios are vswitch / system, per repetition pair \
         (above 1 is better for vswitch in the throughput and transaction rows, below 1 in the \
         loss, latency and CPU rows).",
        report.date, report.machine, report.reps, report.plan.seconds, report.switch_cores, report.plan.tool_core
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "The Linux bridge has no process: its CPU is the machine's softirq time, and it forwards on \
         the core of whoever sends (the tools' core), so its offered and delivered frame rates are \
         the same and its frame loss is nil: the generator slows down to the bridge's pace."
    );
    for case in &report.cases {
        let _ = writeln!(out);
        let _ = writeln!(out, "### {}", case.case.name());
        let _ = writeln!(out);
        let mut header = "| metric |".to_string();
        let mut rule = "| --- |".to_string();
        for s in &systems {
            let _ = write!(header, " {s} |");
            rule.push_str(" ---: |");
        }
        for a in &anchors {
            let _ = write!(header, " vswitch / {a} |");
            rule.push_str(" ---: |");
        }
        let _ = writeln!(out, "{header}\n{rule}");
        for m in METRICS {
            let mut row = format!("| {} |", m.label);
            for s in &systems {
                let _ = write!(row, " {} |", cell(value(case, s, m.key)));
            }
            for a in &anchors {
                let _ = write!(row, " {} |", ratio_cell(ratio(case, a, m.key)));
            }
            let _ = writeln!(out, "{row}");
        }
        for (name, series) in &case.systems {
            if let Some(why) = &series.skipped {
                let _ = writeln!(out, "\n{name}: not measured ({why}).");
            }
            for (i, sample) in series.samples.iter().enumerate() {
                for e in &sample.errors {
                    let _ = writeln!(out, "\n{name}, repetition {}: {e}", i + 1);
                }
            }
        }
    }
    out
}

const COLORS: [(&str, &str); 4] = [
    ("vswitch", "#1f77b4"),
    ("bridge", "#7f7f7f"),
    ("ovs", "#ff7f0e"),
    ("direct", "#2ca02c"),
];

fn color(system: &str) -> &'static str {
    COLORS
        .iter()
        .find(|(s, _)| *s == system)
        .map(|(_, c)| *c)
        .unwrap_or("#2ca02c")
}

/// Two panels side by side, one row group per case: TCP throughput (one
/// stream) and latency p99, a bar per system at its median with a whisker
/// from min to max.
pub fn svg(report: &Report) -> String {
    let systems = systems_of(report);
    // Latencies span orders of magnitude (a busy-polling switch against a
    // sleeping one): that panel is logarithmic.
    let panels = [
        ("tcp1_gbps", "TCP, 1 stream (Gbit/s, more is better)", false),
        (
            "rr_p99_us",
            "TCP RR p99 round trip (us, log scale, less is better)",
            true,
        ),
    ];
    let (label_w, panel_w, gap, bar_h, top) = (150.0, 330.0, 40.0, 12.0, 56.0);
    let group_h = bar_h * systems.len() as f64 + 14.0;
    let height = top + group_h * report.cases.len() as f64 + 40.0;
    let width = label_w + 2.0 * panel_w + gap + 20.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="10" y="18" font-size="13" font-weight="bold">vsperf, {} ({} repetitions, median with min-max)</text>"#,
        report.date, report.reps
    );
    // Legend.
    for (i, s) in systems.iter().enumerate() {
        let x = label_w + i as f64 * 110.0;
        let _ = writeln!(
            out,
            r#"<rect x="{x}" y="26" width="10" height="10" fill="{}"/><text x="{}" y="35">{s}</text>"#,
            color(s),
            x + 14.0
        );
    }
    for (p, (metric, title, log)) in panels.iter().enumerate() {
        let x0 = label_w + p as f64 * (panel_w + gap);
        let all: Vec<Spread> = report
            .cases
            .iter()
            .flat_map(|c| systems.iter().filter_map(move |s| value(c, s, metric)))
            .collect();
        let max = all.iter().map(|s| s.max).fold(0.0f64, f64::max).max(f64::MIN_POSITIVE);
        // The log axis starts at the power of ten below the smallest figure.
        let floor = all
            .iter()
            .map(|s| s.min)
            .filter(|m| *m > 0.0)
            .fold(max, f64::min)
            .log10()
            .floor();
        let span = (max.log10() - floor).max(1e-9);
        let w = panel_w - 50.0;
        let scale = |x: f64| {
            if *log {
                x0 + w * ((x.max(f64::MIN_POSITIVE).log10() - floor) / span).max(0.0)
            } else {
                x0 + w * x / max
            }
        };
        let _ = writeln!(
            out,
            r#"<text x="{x0}" y="{}" font-weight="bold">{title}</text>"#,
            top - 6.0
        );
        for (ci, case) in report.cases.iter().enumerate() {
            let y0 = top + ci as f64 * group_h;
            if p == 0 {
                let _ = writeln!(
                    out,
                    r#"<text x="10" y="{}">{}</text>"#,
                    y0 + group_h / 2.0,
                    case.case.name()
                );
            }
            for (si, s) in systems.iter().enumerate() {
                let y = y0 + si as f64 * bar_h;
                let Some(v) = value(case, s, metric) else {
                    let _ = writeln!(
                        out,
                        r##"<text x="{}" y="{}" fill="#999">n/a</text>"##,
                        x0 + 2.0,
                        y + bar_h - 3.0
                    );
                    continue;
                };
                let _ = writeln!(
                    out,
                    r#"<rect x="{x0}" y="{y}" width="{:.1}" height="{:.1}" fill="{}"/>"#,
                    scale(v.median) - x0,
                    bar_h - 2.0,
                    color(s)
                );
                let wy = y + (bar_h - 2.0) / 2.0;
                let _ = writeln!(
                    out,
                    r#"<line x1="{:.1}" x2="{:.1}" y1="{wy:.1}" y2="{wy:.1}" stroke="black"/>"#,
                    scale(v.min),
                    scale(v.max)
                );
                let _ = writeln!(
                    out,
                    r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
                    scale(v.max) + 4.0,
                    y + bar_h - 3.0,
                    num(v.median)
                );
            }
        }
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::{Plan, Sample};
    use crate::run::{Case, Series};
    use crate::systems::{PortKind, Scenario};

    fn sample(tcp: f64) -> Sample {
        let mut s = Sample::default();
        s.values.insert("tcp1_gbps", tcp);
        s
    }

    fn report() -> Report {
        let mut systems = std::collections::BTreeMap::new();
        systems.insert(
            "vswitch",
            Series {
                samples: vec![sample(2.0), sample(4.0), sample(3.0)],
                skipped: None,
            },
        );
        systems.insert(
            "bridge",
            Series {
                samples: vec![sample(4.0), sample(4.0), Sample::default()],
                skipped: None,
            },
        );
        systems.insert(
            "ovs",
            Series {
                samples: vec![],
                skipped: Some("ovs-vswitchd is not installed".into()),
            },
        );
        Report {
            date: "2026-11-22T00:00Z".into(),
            machine: "test".into(),
            command: "vsperf run".into(),
            reps: 3,
            plan: Plan {
                seconds: 1,
                idle_seconds: 1,
                tool_core: 0,
            },
            switch_cores: vec![1],
            cases: vec![CaseResult {
                case: Case {
                    scenario: Scenario::L2,
                    port: PortKind::Tap,
                    uplink: None,
                },
                systems,
            }],
        }
    }

    #[test]
    fn medians_and_ratios_are_per_repetition_pair() {
        assert_eq!(
            spread(&[3.0, 1.0, 2.0]).map(|s| (s.median, s.min, s.max)),
            Some((2.0, 1.0, 3.0))
        );
        assert_eq!(spread(&[1.0, 4.0]).map(|s| s.median), Some(2.5));
        assert_eq!(spread(&[]), None);
        let r = report();
        let ratio = ratio(&r.cases[0], "bridge", "tcp1_gbps").expect("two pairs");
        assert_eq!(
            (ratio.n, ratio.min, ratio.max),
            (2, 0.5, 1.0),
            "the third repetition has no pair"
        );
        let md = markdown(&r);
        assert!(
            md.contains("| TCP, 1 stream, Gbit/s | 3.00 (2.00-4.00) | 4.00 (4.00-4.00) | - | 0.75x (0.50-1.00) | - |"),
            "{md}"
        );
        assert!(md.contains("ovs: not measured (ovs-vswitchd is not installed)"), "{md}");
        let svg = svg(&r);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("l2 (tap)") && svg.contains(">n/a<"), "{svg}");
    }
}
