//! vswitch-cni: a CNI plugin (spec 0.4.0, 1.0.0, 1.1.0) that attaches
//! containers to vswitchd. Installed as `/opt/cni/bin/vswitch` (and
//! `/usr/lib/cni/vswitch`, where Debian's podman looks), it is run by the
//! runtime once per command with the CNI_* environment and the network
//! configuration on stdin; it prints the result (or the spec's error
//! object, with a non-zero exit) on stdout. It talks to vswitchd only
//! through the control protocol.

#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::process::ExitCode;

use serde_json::{json, Value};

mod env;
mod inside;
mod ops;
mod spec;

use env::Env;
use ops::Net;
use spec::{CniError, Code, NetConf, SUPPORTED};

/// The largest configuration read from stdin.
const MAX_CONFIG: u64 = 1 << 20;

/// What the plugin says of itself, as the reference plugins do (skel's
/// "about" line and the versions it speaks).
fn about() -> String {
    format!(
        "CNI vswitch plugin v{}\nCNI protocol versions supported: {}",
        env!("CARGO_PKG_VERSION"),
        SUPPORTED.join(", ")
    )
}

fn main() -> ExitCode {
    // Run by hand: `--version` answers on stdout; with no CNI_COMMAND at
    // all the reference plugins print their about lines on stderr and exit
    // 0, before reading stdin (which a person's terminal never closes).
    if std::env::args().skip(1).any(|a| a == "--version" || a == "-V") {
        println!("{}", about());
        return ExitCode::SUCCESS;
    }
    if std::env::var_os("CNI_COMMAND").is_none_or(|c| c.is_empty()) {
        eprintln!("{}", about());
        return ExitCode::SUCCESS;
    }
    let mut input = Vec::new();
    let read = std::io::stdin().take(MAX_CONFIG).read_to_end(&mut input);
    // The version errors are reported in: the configuration's when it has
    // one this plugin speaks, else the newest.
    let version = serde_json::from_slice::<Value>(&input)
        .ok()
        .and_then(|v| v["cniVersion"].as_str().map(str::to_string))
        .filter(|v| SUPPORTED.contains(&v.as_str()))
        .unwrap_or_else(|| SUPPORTED[SUPPORTED.len() - 1].to_string());
    let result = match read {
        Ok(_) => run(&input, &version),
        Err(e) => Err(CniError::new(Code::Io, format!("cannot read stdin: {e}"))),
    };
    let (out, code) = match result {
        Ok(Some(v)) => (v, ExitCode::SUCCESS),
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => (e.to_json(&version), ExitCode::FAILURE),
    };
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{out}");
    code
}

fn run(input: &[u8], version: &str) -> Result<Option<Value>, CniError> {
    let env = Env::read()?;
    if env.command == "VERSION" {
        return Ok(Some(json!({ "cniVersion": version, "supportedVersions": SUPPORTED })));
    }
    let conf: NetConf = serde_json::from_slice(input).map_err(|e| {
        CniError::new(Code::Undecodable, "the network configuration cannot be decoded").details(e.to_string())
    })?;
    let net = Net::new(conf)?;
    match env.command.as_str() {
        "ADD" => net.add(&env).map(Some),
        "DEL" => net.del(&env).map(|()| None),
        "CHECK" => net.check(&env).map(|()| None),
        "GC" => net.gc().map(|()| None),
        "STATUS" => net.status().map(|()| None),
        other => Err(CniError::new(
            Code::BadEnvironment,
            format!("CNI_COMMAND '{other}' is not ADD, DEL, CHECK, GC, STATUS or VERSION"),
        )),
    }
}
