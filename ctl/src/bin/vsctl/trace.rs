//! `vsctl trace PORT|BRIDGE`: arms vswitchd's per-port trace, prints each
//! frame's stages as they come; and which ports a target names (shared with
//! `vsctl capture`).

use vswitch_ctl::{req, Reply, Request};

use crate::{print, Daemon};

/// The ports `target` names: itself, or every port of the bridge it names.
pub fn ports_of(daemon: &Daemon, target: &str) -> anyhow::Result<Vec<String>> {
    if let Reply::Bridges(bridges) = daemon.call(&Request::ListBr)? {
        if bridges.iter().any(|b| b == target) {
            if let Reply::Ports(ports) = daemon.call(&Request::ListPorts(req::ListPorts {
                bridge: Some(target.to_string()),
            }))? {
                if ports.is_empty() {
                    anyhow::bail!("bridge '{target}' has no ports");
                }
                return Ok(ports);
            }
        }
    }
    Ok(vec![target.to_string()])
}

/// `vsctl trace`: arms the port (or every port of a bridge), prints each
/// frame's block as it comes (or all as JSON at the end), disarms.
pub fn run(daemon: &Daemon, ports: Vec<String>, count: u64, seconds: u64, json: bool) -> anyhow::Result<()> {
    let mut started = Vec::new();
    for port in &ports {
        let start = Request::TraceStart(req::TraceStart {
            port: port.clone(),
            count,
        });
        match daemon.call(&start) {
            Ok(_) => started.push(port.clone()),
            Err(err) if ports.len() > 1 => eprintln!("vsctl: {port} not traced: {err:#}"),
            Err(err) => return Err(err),
        }
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    let mut all = Vec::new();
    let result = (|| -> anyhow::Result<()> {
        loop {
            std::thread::sleep(std::time::Duration::from_millis(20));
            for port in &started {
                let Reply::Traced(chunk) = daemon.call(&Request::TraceRead(req::TraceRead { port: port.clone() }))?
                else {
                    anyhow::bail!("vswitchd answered trace-read with something else");
                };
                for f in chunk.frames {
                    if (all.len() as u64) < count {
                        if !json {
                            print::print_traced(&f);
                        }
                        all.push(f);
                    }
                }
            }
            if all.len() as u64 >= count || std::time::Instant::now() >= deadline {
                return Ok(());
            }
        }
    })();
    for port in &started {
        let _ = daemon.call(&Request::TraceStop(req::TraceStop { port: port.clone() }));
    }
    result?;
    if json {
        println!("{}", serde_json::to_string_pretty(&all)?);
    } else if (all.len() as u64) < count {
        eprintln!("{} of {count} frames traced in {seconds} s", all.len());
    }
    Ok(())
}

/// Every port of every bridge (`trace --all`).
pub fn all_ports(daemon: &Daemon) -> anyhow::Result<Vec<String>> {
    let Reply::Show(bridges) = daemon.call(&Request::Show)? else {
        anyhow::bail!("vswitchd answered show with something else");
    };
    let ports: Vec<String> = bridges
        .into_iter()
        .flat_map(|b| b.ports.into_iter().map(|p| p.name))
        .collect();
    if ports.is_empty() {
        anyhow::bail!("the switch has no ports");
    }
    Ok(ports)
}
