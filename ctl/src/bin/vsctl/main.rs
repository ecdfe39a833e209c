//! `vsctl`: the command-line client of vswitchd.
//!
//! Every command is one request/response over the daemon's Unix socket. Read
//! commands print a human table, or the raw JSON result with `--json`. Any
//! failure prints one line on stderr and exits 1 (2 for usage errors).
//! `vsctl A -- B -- C` sends the commands as one transaction: applied
//! together, saved once, or not at all.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use vswitch_ctl::{req, PublishRule, Reply, Request, DEFAULT_SOCKET};

mod args;
mod capture;
mod check;
mod command;
mod get;
mod observe;
mod policy;
mod print;
mod trace;
use args::{IpChoice, NatMode, Setting, Table};
use command::Command;
use print::{print_cluster, print_reply};

#[derive(Parser)]
#[command(name = "vsctl", version, about = "Configure and inspect vswitchd")]
struct Cli {
    /// vswitchd's control socket (or the environment's VSCTL_SOCKET).
    #[arg(long, global = true, env = "VSCTL_SOCKET", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Print the result as JSON instead of a table; errors too, as one JSON object on stderr.
    #[arg(long, global = true)]
    json: bool,
    /// add-X: nothing to do, and no error, if X is already there (in a transaction: also if an earlier command added it).
    #[arg(long, global = true)]
    may_exist: bool,
    /// del-X: nothing to do, and no error, if there is no X.
    #[arg(long, global = true)]
    if_exists: bool,
    /// Seconds to wait for each answer of vswitchd before giving up.
    #[arg(long, global = true, value_name = "SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    timeout: u64,
    #[command(subcommand)]
    command: Command,
    /// The command's canonical name, filled in after parsing.
    #[arg(skip)]
    command_name: String,
}

/// What a command's request depends on besides the command itself.
struct Flags {
    json: bool,
    idempotence: Idempotence,
    command_name: String,
}

impl Cli {
    /// Splits off the command from the flags that shape its request.
    fn split(self) -> (Command, Flags) {
        let flags = Flags {
            json: self.json,
            idempotence: Idempotence {
                may_exist: self.may_exist,
                if_exists: self.if_exists,
            },
            command_name: self.command_name,
        };
        (self.command, flags)
    }
}

fn main() -> ExitCode {
    // `vsctl show | head`: a reader that goes away ends vsctl quietly, as
    // it does any Unix tool, instead of a panic in the middle of printing.
    // SAFETY: setting a signal's disposition to the default, before any
    // thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let json = args.iter().any(|a| a == "--json");
    let segments: Vec<&[OsString]> = args.split(|a| a == "--").collect();
    let outcome = if segments.len() > 1 {
        transaction(&segments)
    } else {
        parse(&args).and_then(run)
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let (code, text) = match err.downcast_ref::<clap::Error>() {
                // What clap says, as clap says it (with its usage line).
                Some(usage) => (USAGE_EXIT, usage.render().to_string()),
                None => (FAILURE_EXIT, format!("vsctl: {err:#}")),
            };
            if json {
                let message = match err.downcast_ref::<clap::Error>() {
                    Some(usage) => usage_message(usage),
                    None => format!("{err:#}"),
                };
                eprintln!("{}", serde_json::json!({ "error": message, "exit": code }));
            } else {
                eprintln!("{}", text.trim_end());
            }
            ExitCode::from(code)
        }
    }
}

/// Exit codes: a command vsctl could not parse, and any other failure.
const USAGE_EXIT: u8 = 2;
const FAILURE_EXIT: u8 = 1;

/// One command line (without the program's name). `--help` and
/// `--version` print and exit here; a usage error is returned as the
/// `clap::Error` it is, for `main` to report.
fn parse(args: &[OsString]) -> anyhow::Result<Cli> {
    use clap::{CommandFactory, FromArgMatches};
    let argv = std::iter::once(OsString::from("vsctl")).chain(args.iter().cloned());
    let usage = |e: clap::Error| match e.kind() {
        clap::error::ErrorKind::DisplayHelp
        | clap::error::ErrorKind::DisplayVersion
        | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
        _ => anyhow::Error::new(e),
    };
    let matches = Cli::command().try_get_matches_from(argv).map_err(usage)?;
    let mut cli = Cli::from_arg_matches(&matches).map_err(usage)?;
    cli.command_name = matches.subcommand_name().unwrap_or_default().to_string();
    Ok(cli)
}

/// A usage error in one line: clap's message without its `error: ` in
/// front and the usage and help lines after it.
fn usage_message(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let message = text.split("\n\n").next().unwrap_or_default();
    let message = message.strip_prefix("error: ").unwrap_or(message);
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `vsctl [OPTIONS] CMD ARGS -- CMD ARGS -- ...`: every command parsed
/// as on its own (options anywhere; the socket is the first command's),
/// sent as one transaction, and each reply printed in order.
fn transaction(segments: &[&[OsString]]) -> anyhow::Result<()> {
    let mut clis = Vec::with_capacity(segments.len());
    for segment in segments {
        if segment.is_empty() {
            anyhow::bail!("an empty command between '--' separators");
        }
        clis.push(parse(segment)?);
    }
    let daemon = Daemon::of(&clis[0]);
    let json = clis.iter().any(|c| c.json);
    let mut requests = Vec::with_capacity(clis.len());
    for (i, cli) in clis.into_iter().enumerate() {
        if matches!(
            cli.command,
            Command::Trace { .. }
                | Command::Capture { .. }
                | Command::Get { .. }
                | Command::ShowPolicy { .. }
                | Command::CheckPolicy { .. }
                | Command::Observe { .. }
        ) {
            anyhow::bail!(
                "command {} ({}): capture and trace stream, get reads as it goes; run them on their own",
                i + 1,
                cli.command_name
            );
        }
        let (command, mut flags) = cli.split();
        flags.json = json;
        if let Some(request) = to_request(command, &daemon, &flags)? {
            requests.push(request);
        }
    }
    let replies = match daemon.call(&Request::Transaction(req::Transaction { requests }))? {
        Reply::Replies(replies) => replies,
        other => anyhow::bail!("vswitchd answered a transaction with {other:?}"),
    };
    if json {
        let data: Vec<serde_json::Value> = replies
            .iter()
            .map(|r| {
                Ok(serde_json::to_value(r)?
                    .get("data")
                    .cloned()
                    .unwrap_or(serde_json::Value::Null))
            })
            .collect::<anyhow::Result<_>>()?;
        println!("{}", serde_json::to_string_pretty(&data)?);
    } else {
        replies.iter().for_each(print_reply);
    }
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let every_drop = matches!(cli.command, Command::ShowPortStats { zeros: true, .. });
    let daemon = Daemon::of(&cli);
    let (command, flags) = cli.split();
    let Some(request) = to_request(command, &daemon, &flags)? else {
        return Ok(());
    };
    let show = matches!(request, Request::Show);
    let reply = daemon.call(&request)?;
    if flags.json {
        let value = serde_json::to_value(&reply)?;
        let data = value.get("data").cloned().unwrap_or(serde_json::Value::Null);
        println!("{}", serde_json::to_string_pretty(&data)?);
        return Ok(());
    }
    let mut reply = reply;
    if let (Reply::PortStats(stats), false) = (&mut reply, every_drop) {
        // People read the reasons that happened; scripts get all (--json).
        for s in stats.iter_mut() {
            s.drops.retain(|_, n| *n > 0);
        }
    }
    print_reply(&reply);
    if show {
        // `show` ends with the cluster's state when vswitchd is in one.
        if let Reply::Cluster(Some(info)) = daemon.call(&Request::ClusterStatus)? {
            print_cluster(&info);
        }
    }
    Ok(())
}

/// What a command line asks beyond its command: `--may-exist` (an add-X
/// that finds X there does nothing) and `--if-exists` (a del-X that finds
/// no X does nothing). A command they mean nothing to refuses them.
#[derive(Clone, Copy)]
struct Idempotence {
    may_exist: bool,
    if_exists: bool,
}

impl Idempotence {
    fn may_exist(&mut self) -> bool {
        std::mem::take(&mut self.may_exist)
    }

    fn if_exists(&mut self) -> bool {
        std::mem::take(&mut self.if_exists)
    }

    /// After the command took what it understands: what is left is an error.
    fn all_taken(self, command: &str) -> anyhow::Result<()> {
        if self.may_exist {
            anyhow::bail!("--may-exist means nothing to {command} (it is for add-X commands)");
        }
        if self.if_exists {
            anyhow::bail!("--if-exists means nothing to {command} (it is for del-X commands)");
        }
        Ok(())
    }
}

/// The positional spelling or the option's (clap lets one be given).
fn either(positional: Option<String>, option: Option<String>, what: &str) -> anyhow::Result<String> {
    positional
        .or(option)
        .ok_or_else(|| anyhow::anyhow!("{what} is missing"))
}

/// The request for `command`; None for the commands that ran themselves
/// (capture, trace and get talk to vswitchd for as long as they last).
fn to_request(command: Command, daemon: &Daemon, cli: &Flags) -> anyhow::Result<Option<Request>> {
    let mut idem = cli.idempotence;
    let request = match command {
        Command::AddBr {
            name,
            aging,
            max_macs,
            subnet,
            gateway,
            ip_range,
            uplink_via,
            no_icc,
        } => Request::AddBr(req::AddBr {
            name,
            aging_secs: aging,
            max_macs,
            subnet,
            gateway,
            ip_range,
            uplink_via,
            icc: no_icc.then_some(false),
            may_exist: idem.may_exist(),
        }),
        Command::DelBr { name } => Request::DelBr(req::DelBr {
            name,
            if_exists: idem.if_exists(),
        }),
        Command::ListBr => Request::ListBr,
        Command::Set {
            table: Table::Bridge,
            name,
            settings,
        } => {
            let mut set = req::SetBridge {
                name,
                aging_secs: None,
                max_macs: None,
                icc: None,
            };
            for setting in settings {
                match setting {
                    Setting::Aging(secs) => set.aging_secs = Some(secs),
                    Setting::MaxMacs(n) => set.max_macs = Some(n),
                    Setting::Icc(on) => set.icc = Some(on),
                }
            }
            Request::SetBridge(set)
        }
        Command::Get {
            table: Table::Bridge,
            name,
            keys,
        } => {
            get::bridge(daemon, &name, &keys, cli.json)?;
            return Ok(None);
        }
        Command::AddPort {
            bridge,
            name,
            port_type,
            netns,
            ifname,
            mac,
            mode,
            queue,
            iface,
        } => Request::AddPort(req::AddPort {
            bridge,
            name,
            port_type: port_type.into(),
            netns,
            ifname,
            mac,
            mode: mode.map(Into::into),
            queue,
            iface,
            may_exist: idem.may_exist(),
        }),
        Command::DelPort { bridge, name } => Request::DelPort(req::DelPort {
            bridge,
            name,
            if_exists: idem.if_exists(),
        }),
        Command::ListPorts { bridge } => Request::ListPorts(req::ListPorts { bridge }),
        Command::Show => Request::Show,
        Command::ListFdb { bridge } => Request::FdbShow(req::FdbShow { bridge }),
        Command::ShowPortStats { port, .. } => Request::PortStats(req::PortStats { port }),
        Command::ShowPmdStats => Request::PmdStats,
        Command::Attach {
            bridge,
            netns,
            port_type,
            ip,
            ifname,
            mac,
            owner,
            no_default_route,
            allow_any_src,
            name,
            namespace,
            labels,
        } => Request::Attach(req::Attach {
            bridge,
            netns: netns.name()?,
            port_type: port_type.into(),
            ip: match ip {
                IpChoice::Auto => None,
                IpChoice::Fixed(ip) => Some(ip),
            },
            ifname: Some(ifname),
            mac,
            owner,
            handoff: false,
            default_route: Some(!no_default_route),
            allow_any_src,
            name,
            namespace,
            labels: labels.into_iter().collect(),
        }),
        Command::Label { target, changes } => policy::label(&target, &changes)?,
        Command::LabelNamespace { namespace, changes } => policy::label_namespace(namespace, &changes)?,
        Command::Apply { file } => policy::apply(&file)?,
        Command::Delete {
            names,
            file,
            ignore_not_found,
        } => policy::delete(&names, file.as_deref(), ignore_not_found || idem.if_exists())?,
        Command::ListPolicies => Request::ListPolicies,
        Command::ShowPolicy { target } => {
            policy::show(daemon, &target, cli.json)?;
            return Ok(None);
        }
        Command::Observe {
            follow,
            verdict,
            last,
            seconds,
        } => {
            let verdict = verdict.map(|v| match v {
                command::CliVerdict::Allowed => req::FlowVerdict::Allowed,
                command::CliVerdict::Denied => req::FlowVerdict::Denied,
            });
            let options = observe::Options {
                follow,
                verdict,
                last,
                seconds,
                json: cli.json,
            };
            observe::run(daemon, &options)?;
            return Ok(None);
        }
        Command::CheckPolicy { from, to, port } => {
            check::run(daemon, &from, &to, port, cli.json)?;
            return Ok(None);
        }
        Command::ListAttachments => Request::ListAttachments,
        Command::Detach { bridge, netns } => Request::Detach(req::Detach {
            bridge,
            netns: netns.name()?,
            if_exists: idem.if_exists(),
        }),
        Command::LinkBr { a, b } => Request::LinkBr(req::LinkBr { a, b }),
        Command::UnlinkBr { a, b } => Request::UnlinkBr(req::UnlinkBr { a, b }),
        Command::ListNeigh { bridge } => Request::NeighShow(req::NeighShow { bridge }),
        Command::AddUplink {
            bridge,
            iface,
            iface_opt,
            ip: (ip, prefix),
            gateway,
            port_type,
            mode,
            netns,
            shared,
            mac,
        } => Request::AddUplink(req::AddUplink {
            bridge,
            iface: either(iface, iface_opt, "the interface")?,
            ip,
            prefix,
            gw: gateway,
            port_type: port_type.into(),
            mode: mode.map(Into::into),
            netns,
            shared,
            mac,
            may_exist: idem.may_exist(),
        }),
        Command::DelUplink { bridge } => Request::DelUplink(req::DelUplink {
            bridge,
            if_exists: idem.if_exists(),
        }),
        Command::SetNat { bridge, mode } => Request::SetNat(req::SetNat {
            bridge,
            masquerade: matches!(mode, NatMode::Masquerade),
        }),
        Command::Publish {
            bridge,
            proto,
            port,
            to: (to_ip, to_port),
        } => Request::Publish(req::Publish {
            bridge,
            rule: PublishRule {
                proto: proto.into(),
                port,
                to_ip,
                to_port,
            },
            may_exist: idem.may_exist(),
        }),
        Command::Unpublish { bridge, proto, port } => Request::Unpublish(req::Unpublish {
            bridge,
            proto: proto.into(),
            port,
            if_exists: idem.if_exists(),
        }),
        Command::ListPublished { bridge: Some(bridge) } => Request::ListPublished(req::ListPublished { bridge }),
        Command::ListPublished { bridge: None } => {
            get::published(daemon, cli.json)?;
            return Ok(None);
        }
        Command::ListConns { bridge } => Request::CtShow(req::CtShow {
            bridge: bridge.bridge(),
        }),
        Command::DelConns { bridge, addr } => Request::CtFlush(req::CtFlush {
            bridge: bridge.bridge(),
            addr,
        }),
        Command::ShowCtStats => Request::CtStats,
        Command::ShowControlStats => Request::ControlStats,
        Command::SaveConns => Request::CtSave,
        Command::Trace {
            port,
            any,
            count,
            seconds,
        } => {
            let ports = match (port, any) {
                (Some(target), _) => trace::ports_of(daemon, &target)?,
                (None, _) => trace::all_ports(daemon)?,
            };
            trace::run(daemon, ports, count, seconds, cli.json)?;
            return Ok(None);
        }
        Command::Capture {
            port,
            count,
            seconds,
            direction,
            write,
            filter,
        } => {
            if count.is_none() && seconds.is_none() {
                anyhow::bail!("capture needs --count N or --seconds S (or both)");
            }
            capture::run(capture::Capture {
                daemon,
                ports: trace::ports_of(daemon, &port)?,
                count,
                direction: direction.into(),
                seconds,
                write: &write,
                filter,
            })?;
            return Ok(None);
        }
        Command::AddVxlan {
            bridge,
            vni,
            udp_port,
            underlay,
            remotes,
            no_learn,
            udp_csum,
        } => Request::AddVxlan(req::AddVxlan {
            bridge,
            vni,
            port: Some(udp_port),
            underlay,
            remotes,
            learn: !no_learn,
            udp_csum,
            may_exist: idem.may_exist(),
        }),
        Command::DelVxlan { bridge } => Request::DelVxlan(req::DelVxlan {
            bridge,
            if_exists: idem.if_exists(),
        }),
        // Adding a VTEP or a static MAC that is there already is no error.
        Command::AddVtep { bridge, ip } => {
            idem.may_exist();
            Request::AddVtep(req::AddVtep { bridge, ip })
        }
        Command::DelVtep { bridge, ip } => Request::DelVtep(req::DelVtep {
            bridge,
            ip,
            if_exists: idem.if_exists(),
        }),
        Command::AddFdb { bridge, mac, vtep } => {
            idem.may_exist();
            Request::FdbAdd(req::FdbAdd { bridge, mac, vtep })
        }
        Command::DelFdb { bridge, mac } => Request::FdbDel(req::FdbDel {
            bridge,
            mac,
            if_exists: idem.if_exists(),
        }),
        Command::ListVteps { bridge } => Request::VtepShow(req::VtepShow { bridge }),
        Command::AddNet {
            name,
            subnet,
            vni,
            host_prefix,
            udp_port,
        } => Request::NetCreate(req::NetCreate {
            name,
            subnet,
            vni,
            host_prefix: Some(host_prefix),
            port: Some(udp_port),
        }),
        Command::DelNet { name } => Request::NetDelete(req::NetDelete { name }),
        Command::ListNets => Request::NetList,
        Command::ShowCluster => Request::ClusterStatus,
        Command::LeaveCluster => Request::ClusterLeave,
        Command::JoinCluster => Request::ClusterJoin,
    };
    idem.all_taken(&cli.command_name)?;
    Ok(Some(request))
}

/// Where vswitchd answers, and how long vsctl waits for each answer.
pub struct Daemon {
    pub socket: PathBuf,
    pub timeout: Duration,
}

impl Daemon {
    fn of(cli: &Cli) -> Daemon {
        Daemon {
            socket: cli.socket.clone(),
            timeout: Duration::from_secs(cli.timeout),
        }
    }

    /// Sends one request and waits for its response.
    pub fn call(&self, request: &Request) -> anyhow::Result<Reply> {
        Ok(vswitch_ctl::client::call_within(&self.socket, request, self.timeout)?)
    }
}
