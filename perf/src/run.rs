//! The run: for every case (scenario x port type), every repetition, every
//! system in turn (A B C A B C ...), build the topology, take the figures,
//! tear it down. Interleaving puts each repetition's systems close in time,
//! so the per-repetition ratios cancel most of what this shared, noisy
//! machine does meanwhile; building each system afresh keeps one system's
//! busy-polling threads from running during another's figures.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::cmd::{self, CmdError};
use crate::lab::Lab;
use crate::measure::{self, Plan, Sample};
use crate::systems::{self, Opts, PortKind, Scenario, SetupError, System, UplinkKind};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Case {
    pub scenario: Scenario,
    pub port: PortKind,
    /// vswitch's uplink, in the NAT scenarios.
    pub uplink: Option<UplinkKind>,
}

impl Case {
    pub fn name(&self) -> String {
        match self.uplink {
            Some(u) => format!("{} ({}, {} uplink)", self.scenario.name(), self.port.name(), u.name()),
            None => format!("{} ({})", self.scenario.name(), self.port.name()),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub cases: Vec<Case>,
    pub systems: Vec<System>,
    pub reps: u32,
    pub plan: Plan,
    pub opts: Opts,
    /// Start of every name the run creates.
    pub prefix: String,
    pub work_dir: PathBuf,
}

/// One system's repetitions in one case.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Series {
    pub samples: Vec<Sample>,
    /// Why the system was not measured, if it was not.
    pub skipped: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CaseResult {
    pub case: Case,
    pub systems: BTreeMap<&'static str, Series>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub date: String,
    pub machine: String,
    pub command: String,
    pub reps: u32,
    pub plan: Plan,
    pub switch_cores: Vec<usize>,
    pub cases: Vec<CaseResult>,
}

/// Runs every case; progress goes to stderr. Ctrl-C stops at the next
/// step with everything removed, and returns `Interrupted`.
pub fn run(cfg: &Config, command: String) -> Result<Report, CmdError> {
    let mut cases = Vec::new();
    for &case in &cfg.cases {
        let mut systems: BTreeMap<&'static str, Series> = BTreeMap::new();
        for &sys in &cfg.systems {
            let skipped = sys.missing(&cfg.opts);
            if let Some(why) = &skipped {
                eprintln!("{}: {} skipped: {why}", case.name(), sys.name());
            }
            systems.insert(
                sys.name(),
                Series {
                    samples: Vec::new(),
                    skipped,
                },
            );
        }
        for rep in 1..=cfg.reps {
            for &sys in &cfg.systems {
                let series = systems.get_mut(sys.name()).expect("inserted above");
                if series.skipped.is_some() {
                    continue;
                }
                let sample = match one(cfg, case, sys) {
                    Ok(sample) => sample,
                    Err(SetupError::Cmd(CmdError::Interrupted)) => return Err(CmdError::Interrupted),
                    Err(SetupError::Unsupported(why)) => {
                        eprintln!("{}: {} skipped: {why}", case.name(), sys.name());
                        series.skipped = Some(why);
                        continue;
                    }
                    Err(e) => Sample {
                        errors: vec![format!("setup: {e}")],
                        ..Sample::default()
                    },
                };
                eprintln!(
                    "{} rep {rep} {}: {}{}",
                    case.name(),
                    sys.name(),
                    sample
                        .values
                        .iter()
                        .map(|(k, v)| format!("{k}={v:.2}"))
                        .collect::<Vec<_>>()
                        .join(" "),
                    if sample.errors.is_empty() {
                        String::new()
                    } else {
                        format!(" errors: {}", sample.errors.join("; "))
                    }
                );
                series.samples.push(sample);
            }
        }
        cases.push(CaseResult { case, systems });
    }
    Ok(Report {
        date: cmd::run(None, "date -u +%Y-%m-%dT%H:%MZ")?.trim().to_string(),
        machine: format!(
            "kernel {}, {} cores",
            cmd::run(None, "uname -r")?.trim(),
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
        ),
        command,
        reps: cfg.reps,
        plan: cfg.plan,
        switch_cores: cfg.opts.switch_cores.clone(),
        cases,
    })
}

/// One system, one case, one repetition: build, measure, tear down.
fn one(cfg: &Config, case: Case, sys: System) -> Result<Sample, SetupError> {
    let tag = match sys {
        System::Vswitch => "v",
        System::Bridge => "b",
        System::Ovs => "o",
        System::Direct => "d",
    };
    let dir = cfg.work_dir.join(format!(
        "{}-{}-{}-{}",
        sys.name(),
        case.scenario.name(),
        case.port.name(),
        case.uplink.map_or("", |u| u.name())
    ));
    let mut lab = Lab::new(&format!("{}{tag}", cfg.prefix), &dir)?;
    let uplink = case.uplink.unwrap_or(UplinkKind::Afxdp);
    let path = systems::build(sys, case.scenario, case.port, uplink, &mut lab, &cfg.opts)?;
    let sample = measure::all(&path, case.scenario, &cfg.plan, lab.dir())?;
    drop(lab);
    Ok(sample)
}
