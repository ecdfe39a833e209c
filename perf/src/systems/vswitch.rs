//! vswitch: vswitchd of the run's own on the switch cores, configured with vsctl.

use std::time::Duration;

use super::*;

pub(super) fn build(
    scenario: Scenario,
    port: PortKind,
    uplink_kind: UplinkKind,
    lab: &mut Lab,
    opts: &Opts,
) -> Result<Path, SetupError> {
    let sock = lab.dir().join("vswitchd.sock");
    let state = lab.dir().join("state");
    let cores: Vec<String> = opts.switch_cores.iter().map(|c| c.to_string()).collect();
    let daemon = cmd::spawn(
        None,
        &format!(
            "{} --cores {} --spin-us {} --socket {} --state-dir {} --log-level warn",
            opts.vswitchd.display(),
            cores.join(","),
            opts.spin_us,
            sock.display(),
            state.display()
        ),
    )?;
    let pid = lab.own_process(daemon);
    let vsctl = |args: &str| {
        cmd::run(
            None,
            &format!("{} --socket {} {args}", opts.vsctl.display(), sock.display()),
        )
    };
    let mut up = false;
    for _ in 0..100 {
        if vsctl("show").is_ok() {
            up = true;
            break;
        }
        cmd::sleep(Duration::from_millis(50))?;
    }
    if !up {
        return Err(SetupError::NotReady {
            what: "vswitchd".into(),
            detail: format!("no answer on {}", sock.display()),
        });
    }
    let t = port.name();
    let c1 = lab.netns("c1")?;
    vsctl(&format!("add-br a --subnet {}", cidr(NET_A)))?;
    vsctl(&format!("attach a {c1} --type {t} --ip {}", ip(NET_A, 2)))?;
    let peer = match scenario {
        Scenario::L2 => {
            let c2 = lab.netns("c2")?;
            vsctl(&format!("attach a {c2} --type {t} --ip {}", ip(NET_A, 3)))?;
            c2
        }
        Scenario::Routed => {
            let c2 = lab.netns("c2")?;
            vsctl(&format!("add-br b --subnet {}", cidr(NET_B)))?;
            vsctl("link-br a b")?;
            vsctl(&format!("attach b {c2} --type {t} --ip {}", ip(NET_B, 2)))?;
            c2
        }
        Scenario::Overlay => {
            // The container was attached before the tunnel: again, for the
            // overlay's MTU and super-frame size.
            vsctl(&format!("detach a {c1}"))?;
            let uplink = lab.name("up");
            let r = lab.netns("r")?;
            vsctl(&format!(
                "add-uplink a {uplink} --type tap --netns {r} --ip {}/24 --gw {}",
                ip(UNDERLAY, 1),
                ip(UNDERLAY, 254)
            ))?;
            remote_host(&r, &uplink)?;
            vsctl(&format!(
                "add-vxlan a --vni {VNI} --port {VXLAN_PORT} --remote {}",
                ip(UNDERLAY, 2)
            ))?;
            vsctl(&format!("attach a {c1} --type {t} --ip {}", ip(NET_A, 2)))?;
            r
        }
        Scenario::NatOut | Scenario::NatIn => {
            let x = lab.netns("x")?;
            let addr = format!("--ip {}/24 --gw {}", ip(OUTSIDE, 1), ip(OUTSIDE, 2));
            match uplink_kind {
                UplinkKind::Afxdp => {
                    let uplink = lab.name("up");
                    lab.veth(None, &uplink, &x, "eth0", None)?;
                    vsctl(&format!("add-uplink a {uplink} {addr}"))?;
                }
                // The TAP is the outside's eth0 (it goes with the namespace).
                UplinkKind::Tap => {
                    vsctl(&format!("add-uplink a eth0 --type tap --netns {x} {addr}"))?;
                }
            }
            outside(&x, "eth0")?;
            vsctl("set-nat a masquerade")?;
            let c = ip(NET_A, 2);
            vsctl(&format!(
                "publish a --proto tcp --port {PUBLISHED} --to {c}:{CONTAINER_PORT}"
            ))?;
            vsctl(&format!(
                "publish a --proto udp --port {PUBLISHED} --to {c}:{CONTAINER_PORT}"
            ))?;
            vsctl(&format!(
                "publish a --proto tcp --port {PUBLISHED_RR} --to {c}:{CONTAINER_RR_PORT}"
            ))?;
            x
        }
    };
    let mut path = veth_path(scenario, &c1, &peer);
    path.switch_pid = Some(pid);
    Ok(path)
}
