//! `vsctl check-policy --from A --to B --port 80/tcp`: asks vswitchd what
//! the policies would do to a new connection and prints the answer with
//! its reasons; exits 1 when the connection would be denied (as `kubectl
//! auth can-i` says no), so scripts can test it.

use std::net::Ipv4Addr;

use vswitch_ctl::req::{self, Party};
use vswitch_ctl::{PolicyCheck, Reply, Request, SideCheck};

use crate::Daemon;

/// `NS/NAME`, `NAME` (namespace "default") or an IPv4 address.
fn party(text: &str) -> anyhow::Result<Party> {
    if let Ok(ip) = text.parse::<Ipv4Addr>() {
        return Ok(Party::Address(ip));
    }
    let (namespace, name) = crate::policy::target(text)?;
    Ok(Party::Attachment { namespace, name })
}

/// `80`, `80/tcp`, `53/udp` or `icmp`: the IP protocol and port.
pub fn port(text: &str) -> Result<(u8, u16), String> {
    if text.eq_ignore_ascii_case("icmp") {
        return Ok((1, 0));
    }
    let (number, proto) = text.split_once('/').unwrap_or((text, "tcp"));
    let protocol = match proto.to_ascii_lowercase().as_str() {
        "tcp" => 6,
        "udp" => 17,
        "sctp" => 132,
        other => return Err(format!("'{other}' is not tcp, udp or sctp (or give icmp alone)")),
    };
    match number.parse::<u16>() {
        Ok(port) if port > 0 => Ok((protocol, port)),
        _ => Err(format!("'{number}' is not a port (1-65535)")),
    }
}

fn proto_name(protocol: u8) -> &'static str {
    match protocol {
        6 => "tcp",
        17 => "udp",
        132 => "sctp",
        _ => "icmp",
    }
}

pub fn run(daemon: &Daemon, from: &str, to: &str, spec: (u8, u16), json: bool) -> anyhow::Result<()> {
    let (protocol, port) = spec;
    let request = Request::CheckPolicy(req::CheckPolicy {
        from: party(from)?,
        to: party(to)?,
        protocol,
        port,
    });
    let Reply::PolicyChecked(check) = daemon.call(&request)? else {
        anyhow::bail!("vswitchd answered check-policy with something else");
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&check)?);
    } else {
        print(&check);
    }
    if !check.allowed {
        anyhow::bail!("denied");
    }
    Ok(())
}

pub fn print(c: &PolicyCheck) {
    let what = match c.protocol {
        1 => "icmp".to_string(),
        p => format!("{}/{}", proto_name(p), c.port),
    };
    let verdict = if c.allowed { "allowed" } else { "denied" };
    println!("{verdict}: {} -> {} {what}", c.from, c.to);
    if let Some(note) = &c.note {
        println!("  {note}");
    }
    let side = |dir: &str, s: &Option<SideCheck>| {
        let Some(s) = s else { return };
        let why = match (&s.allowed_by, s.isolated_by.is_empty(), s.allowed) {
            (_, true, _) => "not isolated: everything allowed".to_string(),
            (Some((policy, rule)), false, _) => format!("allowed by {policy}, {dir} rule {rule}"),
            (None, false, _) => format!("isolated by {}; no rule allows it", s.isolated_by.join(", ")),
        };
        println!("  {dir} of {}: {why}", s.attachment);
    };
    side("egress", &c.egress);
    side("ingress", &c.ingress);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_parties_parse() {
        assert_eq!(port("80"), Ok((6, 80)));
        assert_eq!(port("53/UDP"), Ok((17, 53)));
        assert_eq!(port("icmp"), Ok((1, 0)));
        assert!(port("0/tcp").is_err());
        assert!(port("80/gre").unwrap_err().contains("'gre'"));
        assert_eq!(party("10.0.0.1").unwrap(), Party::Address([10, 0, 0, 1].into()));
        assert!(matches!(party("shop/web").unwrap(), Party::Attachment { namespace, .. } if namespace == "shop"));
        assert!(party("a/b/c").is_err());
    }
}
