//! A short run of the perf harness: every scenario on every system that is
//! installed produces figures, and nothing it created is left behind. No
//! speed is asserted.

use std::process::Command;

use vswitch_tests::{bin, require_root, unique};

/// Runs vsperf briefly with `extra` arguments; returns its JSON report.
fn short_run(prefix: &str, extra: &[&str]) -> serde_json::Value {
    let out_dir = std::env::temp_dir().join(unique("vsperf"));
    let out = Command::new(bin("vsperf"))
        .args([
            "run",
            "--reps",
            "1",
            "--seconds",
            "1",
            "--idle-seconds",
            "1",
            "--json",
            "--prefix",
            prefix,
        ])
        .args(extra)
        .arg("--out")
        .arg(&out_dir)
        .output()
        .expect("vsperf runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "vsperf failed: {stderr}");
    for file in ["results.md", "results.json", "plot.svg"] {
        let text = std::fs::read_to_string(out_dir.join(file)).unwrap_or_default();
        assert!(!text.is_empty(), "{file} written");
    }
    let _ = std::fs::remove_dir_all(&out_dir);
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

/// Every system of every case produced every figure (OVS may be missing).
fn check_cases(report: &serde_json::Value, expected: usize) {
    let cases = report["cases"].as_array().expect("cases");
    assert_eq!(
        cases.len(),
        expected,
        "{:?}",
        cases.iter().map(|c| &c["case"]).collect::<Vec<_>>()
    );
    for case in cases {
        let c = &case["case"];
        let name = format!("{} {} {}", c["scenario"], c["port"], c["uplink"]);
        let systems = case["systems"].as_object().expect("systems");
        assert!(systems.contains_key("direct"), "{name}: the floor is measured too");
        for (system, series) in systems {
            if let Some(why) = series["skipped"].as_str() {
                assert!(
                    system == "ovs" && why.contains("not installed"),
                    "{name}: {system} skipped for no good reason: {why}"
                );
                continue;
            }
            let samples = series["samples"].as_array().expect("samples");
            assert_eq!(samples.len(), 1, "{name} {system}");
            let s = &samples[0];
            assert_eq!(s["errors"], serde_json::json!([]), "{name} {system}: {s}");
            for key in [
                "tcp1_gbps",
                "tcp4_gbps",
                "pps_delivered_k",
                "rr_tps",
                "rr_p99_us",
                "rr_p999_us",
            ] {
                let v = s["values"][key].as_f64().unwrap_or(0.0);
                assert!(v > 0.0, "{name} {system}: {key} = {v} ({s})");
            }
            assert!(s["values"]["idle_cpu_pct"].is_number(), "{name} {system}: {s}");
        }
        assert!(
            case["systems"]["vswitch"]["skipped"].is_null(),
            "{name}: vswitch always runs"
        );
    }
}

#[test]
fn a_short_vsperf_run_measures_every_scenario_and_cleans_up() {
    require_root();
    let prefix = format!("s{}", std::process::id() % 10_000);
    // TAP ports: every scenario, the nat ones over both uplinks (3 + 2 x 2).
    check_cases(&short_run(&prefix, &["--ports", "tap"]), 7);
    // AF_XDP ports, where setting them up differs: a bridge and the way out.
    let afxdp = ["--ports", "afxdp", "--scenario", "l2,nat-out", "--uplink", "afxdp"];
    check_cases(&short_run(&prefix, &afxdp), 2);

    let namespaces = Command::new("ip").args(["netns", "list"]).output().expect("ip");
    let left: Vec<String> = String::from_utf8_lossy(&namespaces.stdout)
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .map(str::to_string)
        .collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    let links = Command::new("ip").args(["-o", "link"]).output().expect("ip");
    assert!(
        !String::from_utf8_lossy(&links.stdout).contains(&format!(": {prefix}")),
        "links left behind"
    );
    // Every file of the run, OVS's database and sockets among them, was
    // under /tmp/vsperf-PREFIX-PID; a daemon still running would name it.
    let daemons = Command::new("pgrep")
        .args(["-f", &format!("vsperf-{prefix}-")])
        .output();
    assert!(
        daemons.map(|o| o.stdout.is_empty()).unwrap_or(true),
        "daemons left behind"
    );
}
