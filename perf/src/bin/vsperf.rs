//! `vsperf run`: measures vswitch against the Linux bridge (Docker model)
//! and Open vSwitch's userspace datapath. See perf/README in the main
//! README's "Performance" section.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use vswitch_perf::cmd::{self, CmdError};
use vswitch_perf::measure::Plan;
use vswitch_perf::report;
use vswitch_perf::run::{self, Case, Config};
use vswitch_perf::systems::{Opts, PortKind, Scenario, System, UplinkKind};

#[derive(Parser)]
#[command(
    name = "vsperf",
    about = "Measure vswitch side by side with the Linux bridge and Open vSwitch"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build each scenario on each system, measure, tear down; repeat.
    Run(RunArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// Scenarios to run (default: all).
    #[arg(long = "scenario", value_enum, value_delimiter = ',')]
    scenarios: Vec<Scenario>,
    /// Port types of vswitch's and OVS's containers (default: tap,afxdp).
    #[arg(long = "ports", value_enum, value_delimiter = ',')]
    ports: Vec<PortKind>,
    /// vswitch's uplink in the nat scenarios (default: tap,afxdp; each is a
    /// case of its own, the other systems measured again beside it).
    #[arg(long = "uplink", value_enum, value_delimiter = ',')]
    uplinks: Vec<UplinkKind>,
    /// Systems to measure (default: vswitch,bridge,ovs,direct; a system whose
    /// tools are missing is skipped with a note).
    #[arg(long, value_enum, value_delimiter = ',')]
    systems: Vec<System>,
    /// Repetitions of every figure.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    reps: u32,
    /// Seconds per figure.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    seconds: u32,
    /// Seconds of idle CPU measurement.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    idle_seconds: u32,
    /// Cores of the switch (vswitchd --cores, OVS's PMD mask and pinning).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    switch_cores: Vec<usize>,
    /// Core every tool (clients, servers, generator) runs on.
    #[arg(long, default_value_t = 0)]
    tool_core: usize,
    /// vswitchd's --spin-us.
    #[arg(long, default_value_t = 200)]
    spin_us: u32,
    /// Print JSON instead of Markdown.
    #[arg(long)]
    json: bool,
    /// Also write results.md, results.json and plot.svg here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Start of every namespace and link name the run creates (keep it to
    /// 5 characters or fewer).
    #[arg(long, default_value = "vp")]
    prefix: String,
    /// Directory of vswitchd and vsctl (default: next to vsperf).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => match run_cmd(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e)
                if e.downcast_ref::<CmdError>()
                    .is_some_and(|c| matches!(c, CmdError::Interrupted)) =>
            {
                eprintln!("vsperf: interrupted; everything it created was removed");
                ExitCode::from(130)
            }
            Err(e) => {
                eprintln!("vsperf: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// `chosen`, or `all` when nothing was chosen.
fn or_all<T: Clone>(chosen: Vec<T>, all: &[T]) -> Vec<T> {
    if chosen.is_empty() {
        all.to_vec()
    } else {
        chosen
    }
}

fn run_cmd(args: RunArgs) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("must run as root (it creates network namespaces)");
    }
    if args.prefix.is_empty() || args.prefix.len() > 5 || !args.prefix.chars().all(|c| c.is_ascii_alphanumeric()) {
        bail!("--prefix must be 1 to 5 letters or digits, not '{}'", args.prefix);
    }
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    if let Some(c) = args.switch_cores.iter().chain([&args.tool_core]).find(|c| **c >= cores) {
        bail!("core {c} does not exist (this machine has {cores})");
    }
    for tool in [
        "ip", "iperf3", "sockperf", "trafgen", "taskset", "ethtool", "ping", "ss", "timeout",
    ] {
        if !cmd::have(tool) {
            bail!("{tool} is not installed (scripts/install-deps.sh installs everything vsperf needs)");
        }
    }
    let bin_dir = match args.bin_dir {
        Some(d) => d,
        None => std::env::current_exe()
            .context("where vsperf is")?
            .parent()
            .map(PathBuf::from)
            .unwrap_or_default(),
    };
    let scenarios = or_all(
        args.scenarios,
        &[
            Scenario::L2,
            Scenario::Routed,
            Scenario::NatOut,
            Scenario::NatIn,
            Scenario::Overlay,
        ],
    );
    let ports = or_all(args.ports, &[PortKind::Tap, PortKind::Afxdp]);
    let systems = or_all(
        args.systems,
        &[System::Vswitch, System::Bridge, System::Ovs, System::Direct],
    );
    let uplinks = or_all(args.uplinks, &[UplinkKind::Tap, UplinkKind::Afxdp]);
    let mut cases = Vec::new();
    for &scenario in &scenarios {
        for &port in &ports {
            let nat = matches!(scenario, Scenario::NatOut | Scenario::NatIn);
            if nat {
                cases.extend(uplinks.iter().map(|&u| Case {
                    scenario,
                    port,
                    uplink: Some(u),
                }));
            } else {
                cases.push(Case {
                    scenario,
                    port,
                    uplink: None,
                });
            }
        }
    }
    let work_dir = std::env::temp_dir().join(format!("vsperf-{}-{}", args.prefix, std::process::id()));
    let cfg = Config {
        cases,
        systems,
        reps: args.reps,
        plan: Plan {
            seconds: args.seconds,
            idle_seconds: args.idle_seconds,
            tool_core: args.tool_core,
        },
        opts: Opts {
            switch_cores: args.switch_cores,
            vswitchd: bin_dir.join("vswitchd"),
            vsctl: bin_dir.join("vsctl"),
            spin_us: args.spin_us,
        },
        prefix: args.prefix,
        work_dir: work_dir.clone(),
    };
    cmd::catch_interrupts();
    // As typed, but with the program's own name instead of its path.
    let command = std::iter::once("vsperf".to_string())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
    let result = run::run(&cfg, command);
    let _ = std::fs::remove_dir_all(&work_dir);
    let report = result?;
    let md = report::markdown(&report);
    let json = serde_json::to_string_pretty(&report).context("JSON")?;
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        for (name, text) in [
            ("results.md", &md),
            ("results.json", &json),
            ("plot.svg", &report::svg(&report)),
        ] {
            let file = out.join(name);
            std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
        }
    }
    println!("{}", if args.json { &json } else { &md });
    Ok(())
}
