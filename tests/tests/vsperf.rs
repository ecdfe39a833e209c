//! A short run of the perf harness: every scenario on every system that is
//! installed produces figures, and nothing it created is left behind. No
//! speed is asserted.

use std::process::Command;

use vswitch_tests::{bin, require_root, unique};

#[test]
fn a_short_vsperf_run_measures_every_scenario_and_cleans_up() {
    require_root();
    let prefix = format!("s{}", std::process::id() % 10_000);
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
            &prefix,
        ])
        .arg("--out")
        .arg(&out_dir)
        .output()
        .expect("vsperf runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "vsperf failed: {stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");

    let cases = report["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 10, "5 scenarios x 2 port types");
    for case in cases {
        let name = format!("{} {}", case["case"]["scenario"], case["case"]["port"]);
        for (system, series) in case["systems"].as_object().expect("systems") {
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
    for file in ["results.md", "results.json", "plot.svg"] {
        let text = std::fs::read_to_string(out_dir.join(file)).unwrap_or_default();
        assert!(!text.is_empty(), "{file} written");
    }
    let _ = std::fs::remove_dir_all(&out_dir);

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
