//! `vsctl`: the command-line client of vswitchd.
//!
//! Every command is one request/response over the daemon's Unix socket. Read
//! commands print a human table, or the raw JSON result with `--json`. Any
//! failure prints one line on stderr and exits 1 (2 for usage errors).
//! `vsctl A -- B -- C` sends the commands as one transaction: applied
//! together, saved once, or not at all.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use vswitch_ctl::{req, PublishRule, Reply, Request, DEFAULT_SOCKET};

mod args;
mod capture;
mod command;
mod print;
mod trace;
use args::{IpChoice, NatMode};
use command::Command;
use print::{print_cluster, print_reply};

#[derive(Parser)]
#[command(name = "vsctl", version, about = "Configure and inspect vswitchd")]
struct Cli {
    /// vswitchd's control socket.
    #[arg(long, global = true, default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Print the result as JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

fn main() -> ExitCode {
    // `vsctl show | head`: a reader that goes away ends vsctl quietly, as
    // it does any Unix tool, instead of a panic in the middle of printing.
    // SAFETY: setting a signal's disposition to the default, before any
    // thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let segments: Vec<&[OsString]> = args.split(|a| a == "--").collect();
    let outcome = if segments.len() > 1 {
        transaction(&segments)
    } else {
        run(Cli::parse())
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("vsctl: {err:#}");
            ExitCode::FAILURE
        }
    }
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
        let argv = std::iter::once(OsString::from("vsctl")).chain(segment.iter().cloned());
        clis.push(Cli::try_parse_from(argv).unwrap_or_else(|e| e.exit()));
    }
    let socket = clis[0].socket.clone();
    let json = clis.iter().any(|c| c.json);
    let mut requests = Vec::with_capacity(clis.len());
    for (i, cli) in clis.into_iter().enumerate() {
        if matches!(cli.command, Command::Trace { .. } | Command::Capture { .. }) {
            anyhow::bail!("command {}: capture and trace stream; run them on their own", i + 1);
        }
        if let Some(request) = to_request(cli.command, &socket, json)? {
            requests.push(request);
        }
    }
    let replies = match call(&socket, &Request::Transaction(req::Transaction { requests }))? {
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
    let every_drop = matches!(cli.command, Command::PortStats { all: true, .. });
    let Some(request) = to_request(cli.command, &cli.socket, cli.json)? else {
        return Ok(());
    };
    let show = matches!(request, Request::Show);
    let reply = call(&cli.socket, &request)?;
    if cli.json {
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
        if let Reply::Cluster(Some(info)) = call(&cli.socket, &Request::ClusterStatus)? {
            print_cluster(&info);
        }
    }
    Ok(())
}

/// The request for `command`; None for the commands that ran themselves
/// (capture and trace talk to vswitchd for as long as they last).
fn to_request(command: Command, socket: &Path, json: bool) -> anyhow::Result<Option<Request>> {
    let request = match command {
        Command::AddBr {
            name,
            aging,
            max_macs,
            subnet,
            gateway,
            ip_range,
            uplink_via,
        } => Request::AddBr(req::AddBr {
            name,
            aging_secs: aging,
            max_macs,
            subnet,
            gateway,
            ip_range,
            uplink_via,
        }),
        Command::DelBr { name } => Request::DelBr(req::DelBr { name }),
        Command::ListBr => Request::ListBr,
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
        }),
        Command::DelPort { bridge, name } => Request::DelPort(req::DelPort { bridge, name }),
        Command::ListPorts { bridge } => Request::ListPorts(req::ListPorts { bridge }),
        Command::Show => Request::Show,
        Command::FdbShow { bridge } => Request::FdbShow(req::FdbShow { bridge }),
        Command::PortStats { port, .. } => Request::PortStats(req::PortStats { port }),
        Command::PmdStats => Request::PmdStats,
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
        } => Request::Attach(req::Attach {
            bridge,
            netns,
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
        }),
        Command::ListAttachments => Request::ListAttachments,
        Command::Detach { bridge, netns } => Request::Detach(req::Detach { bridge, netns }),
        Command::LinkBr { a, b } => Request::LinkBr(req::LinkBr { a, b }),
        Command::UnlinkBr { a, b } => Request::UnlinkBr(req::UnlinkBr { a, b }),
        Command::NeighShow { bridge } => Request::NeighShow(req::NeighShow { bridge }),
        Command::AddUplink {
            bridge,
            iface,
            ip: (ip, prefix),
            gw,
            port_type,
            mode,
            netns,
            shared,
            mac,
        } => Request::AddUplink(req::AddUplink {
            bridge,
            iface,
            ip,
            prefix,
            gw,
            port_type: port_type.into(),
            mode: mode.map(Into::into),
            netns,
            shared,
            mac,
        }),
        Command::DelUplink { bridge } => Request::DelUplink(req::DelUplink { bridge }),
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
        }),
        Command::Unpublish { bridge, proto, port } => Request::Unpublish(req::Unpublish {
            bridge,
            proto: proto.into(),
            port,
        }),
        Command::ListPublished { bridge } => Request::ListPublished(req::ListPublished { bridge }),
        Command::CtShow { bridge } => Request::CtShow(req::CtShow { bridge }),
        Command::CtFlush { bridge, addr } => Request::CtFlush(req::CtFlush { bridge, addr }),
        Command::CtStats => Request::CtStats,
        Command::CtSave => Request::CtSave,
        Command::Trace {
            port,
            all,
            count,
            seconds,
        } => {
            let ports = match (port, all) {
                (Some(target), _) => trace::ports_of(socket, &target)?,
                (None, _) => trace::all_ports(socket)?,
            };
            trace::run(socket, ports, count, seconds, json)?;
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
                socket,
                ports: trace::ports_of(socket, &port)?,
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
            port,
            underlay,
            remotes,
            no_learn,
            udp_csum,
        } => Request::AddVxlan(req::AddVxlan {
            bridge,
            vni,
            port: Some(port),
            underlay,
            remotes,
            learn: !no_learn,
            udp_csum,
        }),
        Command::DelVxlan { bridge } => Request::DelVxlan(req::DelVxlan { bridge }),
        Command::AddVtep { bridge, ip } => Request::AddVtep(req::AddVtep { bridge, ip }),
        Command::DelVtep { bridge, ip } => Request::DelVtep(req::DelVtep { bridge, ip }),
        Command::FdbAdd { bridge, mac, vtep } => Request::FdbAdd(req::FdbAdd { bridge, mac, vtep }),
        Command::FdbDel { bridge, mac } => Request::FdbDel(req::FdbDel { bridge, mac }),
        Command::VtepShow { bridge } => Request::VtepShow(req::VtepShow { bridge }),
        Command::NetCreate {
            name,
            subnet,
            vni,
            host_prefix,
            port,
        } => Request::NetCreate(req::NetCreate {
            name,
            subnet,
            vni,
            host_prefix: Some(host_prefix),
            port: Some(port),
        }),
        Command::NetDelete { name } => Request::NetDelete(req::NetDelete { name }),
        Command::NetList => Request::NetList,
        Command::ClusterStatus => Request::ClusterStatus,
        Command::ClusterLeave => Request::ClusterLeave,
        Command::ClusterJoin => Request::ClusterJoin,
    };
    Ok(Some(request))
}

/// Sends one request and waits for its response.
fn call(socket: &Path, request: &Request) -> anyhow::Result<Reply> {
    Ok(vswitch_ctl::client::call(socket, request)?)
}
