//! The house's layering, checked on the sources: the datapath's rooms do
//! not reach up into what is built on them. (farm-studio draws the same;
//! this keeps it from coming back unnoticed.)

use std::fs;
use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Files under `under` (a file or a folder of src/) whose text has `needle`.
fn offenders(under: &str, needle: &str) -> Vec<String> {
    let mut files = Vec::new();
    let root = src().join(under);
    if root.is_file() {
        files.push(root);
    } else {
        sources(&root, &mut files);
    }
    files
        .into_iter()
        .filter(|f| fs::read_to_string(f).is_ok_and(|text| text.contains(needle)))
        .map(|f| f.display().to_string())
        .collect()
}

#[test]
fn the_pipeline_uses_the_switchs_own_types_not_the_protocols() {
    assert_eq!(offenders("pipeline", "vswitch_ctl"), Vec::<String>::new());
}

#[test]
fn what_the_pipeline_reads_and_records_imports_nothing_of_it() {
    for below in [
        "snapshot.rs",
        "tables",
        "port",
        "trace.rs",
        "verdict.rs",
        "packet.rs",
        "capture.rs",
    ] {
        assert_eq!(offenders(below, "crate::pipeline"), Vec::<String>::new(), "{below}");
    }
}

/// `use PREFIX{...}` or `use PREFIX Name`: names taken from the module
/// itself, not from one of its submodules (`use PREFIX sub::Name`).
fn from_runner(line: &str, prefix: &str) -> bool {
    line.strip_prefix(prefix)
        .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(|c: char| c.is_ascii_uppercase()))
}

#[test]
fn no_stage_calls_back_into_the_runner() {
    let mut files = Vec::new();
    sources(&src().join("pipeline"), &mut files);
    for f in files {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name == "mod.rs" && f.parent() == Some(&src().join("pipeline")) || name.starts_with("tests") {
            continue;
        }
        let text = fs::read_to_string(&f).unwrap_or_default();
        for runner in ["run_batch", "run_held"] {
            assert!(!text.contains(runner), "{} names `{runner}`", f.display());
        }
        // The shared vocabulary comes from its own modules, not re-exported
        // through the runner's.
        let through_runner = |line: &&str| {
            let line = line.trim_start();
            (from_runner(line, "use crate::pipeline::")
                || f.parent() == Some(&src().join("pipeline")) && from_runner(line, "use super::"))
                && ["Verdict", "NextHop", "FloodFrom", "Scratch", "Held"]
                    .iter()
                    .any(|name| line.contains(name))
        };
        let found: Vec<&str> = text.lines().filter(through_runner).collect();
        assert!(found.is_empty(), "{}: {found:?}", f.display());
    }
}

#[test]
fn no_source_file_is_over_600_lines() {
    let mut files = Vec::new();
    sources(&src(), &mut files);
    let long: Vec<_> = files
        .iter()
        .filter_map(|f| Some((f, fs::read_to_string(f).ok()?.lines().count())))
        .filter(|(_, n)| *n > 600)
        .collect();
    assert!(long.is_empty(), "{long:?}");
}
