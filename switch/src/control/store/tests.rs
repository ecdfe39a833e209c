use std::fs;
use std::path::{Path, PathBuf};

use super::*;
use crate::control::config::tests::sample;
use crate::control::config::{BridgeConfig, L4Proto, PortKind, Published, XdpChoice};
use crate::control::error_chain;

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vswitch-store-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// The sample with the bridge its link names: a state that keeps the rules.
fn valid() -> DesiredState {
    let mut state = sample();
    let mut br1 = BridgeConfig {
        name: "br1".into(),
        subnet: Some("10.21.0.0/24".parse().unwrap()),
        gateway: Some("10.21.0.1".parse().unwrap()),
        ..sample().bridges[0].clone()
    };
    (br1.ports, br1.leases, br1.uplink, br1.vxlan, br1.ip_range) =
        (Default::default(), Default::default(), None, None, None);
    br1.published.clear();
    state.bridges.push(br1);
    state
}

/// `state` with one more port of br0 published.
fn publish(state: &DesiredState, port: u16) -> DesiredState {
    let mut next = state.clone();
    let rule = sample().bridges[0].published[0];
    if let Some(br0) = next.bridge_mut("br0") {
        br0.published.push(Published { port, ..rule });
    }
    next
}

fn open(dir: &Path) -> DesiredState {
    Store::open(dir).unwrap().0
}

/// A store in `dir` that saved two changes: a valid state, then a rule
/// more. The store and both states.
fn two_changes(dir: &Path) -> (Store, DesiredState, DesiredState) {
    let (empty, mut store) = Store::open(dir).unwrap();
    let first = valid();
    store.save(&empty, &first).unwrap();
    let second = publish(&first, 9000);
    store.save(&first, &second).unwrap();
    (store, first, second)
}

fn journal_lines(dir: &Path) -> usize {
    fs::read_to_string(dir.join(JOURNAL_FILE)).map_or(0, |t| t.lines().count())
}

#[test]
fn changes_go_to_the_journal_and_come_back() {
    let dir = temp_dir("rt");
    let (empty, mut store) = Store::open(&dir).unwrap();
    assert_eq!(empty, DesiredState::default(), "no file, nothing configured");
    let first = valid();
    store.save(&empty, &first).unwrap();
    let second = publish(&first, 9000);
    store.save(&first, &second).unwrap();
    assert_eq!(journal_lines(&dir), 2);
    assert!(!dir.join(STATE_FILE).exists(), "small changes wait in the journal");
    assert_eq!(open(&dir), second);
    let line = fs::read_to_string(dir.join(JOURNAL_FILE)).unwrap();
    let last = line.lines().last().unwrap();
    assert!(last.starts_with("{\"seq\":2,") && last.len() < 200, "{last}");

    // A change a delta cannot say (bridges reordered) writes the state.
    let mut third = second.clone();
    third.bridges.reverse();
    third.links.clear();
    store.save(&second, &third).unwrap();
    assert_eq!(journal_lines(&dir), 0, "the journal is emptied");
    assert!(dir.join(STATE_FILE).exists() && !dir.join("state.json.tmp").exists());
    assert_eq!(open(&dir), third);
    let fourth = publish(&third, 9001);
    store.save(&third, &fourth).unwrap();
    assert_eq!((journal_lines(&dir), open(&dir)), (1, fourth));
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_long_journal_is_folded_into_the_state_file() {
    let dir = temp_dir("fold");
    let (mut state, mut store) = Store::open(&dir).unwrap();
    let first = valid();
    store.save(&state, &first).unwrap();
    state = first;
    let mut folded = false;
    for port in 1000..3000 {
        let next = publish(&state, port);
        store.save(&state, &next).unwrap();
        state = next;
        let len = |file| fs::metadata(dir.join(file)).map_or(0, |m| m.len());
        let (journal, state_file) = (len(JOURNAL_FILE), len(STATE_FILE));
        assert!(
            journal <= state_file.max(FOLD_AT) + 200,
            "the journal outgrew its limit: {journal} (state file: {state_file})"
        );
        folded |= journal_lines(&dir) == 0;
    }
    assert!(folded, "the state file was rewritten on the way");
    assert_eq!(open(&dir), state);
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_torn_last_line_is_left_out_and_cut_off() {
    let dir = temp_dir("torn");
    let (_, first, second) = two_changes(&dir);
    let path = dir.join(JOURNAL_FILE);
    let whole = fs::read(&path).unwrap();
    fs::write(&path, &whole[..whole.len() - 5]).unwrap();
    let (state, mut store) = Store::open(&dir).unwrap();
    assert_eq!(state, first, "the change that was being written is left out");
    assert_eq!(fs::read(&path).unwrap().last(), Some(&b'\n'), "the torn end is cut off");
    store.save(&first, &second).unwrap();
    assert_eq!(open(&dir), second, "the next change follows a whole line");
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_damaged_journal_stops_the_start_with_the_way_out() {
    let dir = temp_dir("journal");
    two_changes(&dir);
    let path = dir.join(JOURNAL_FILE);
    let text = fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let err = |dir: &Path| error_chain(&Store::open(dir).map(|_| ()).unwrap_err());

    fs::write(&path, format!("{{\"seq\":1,\"bridges\":[\n{}\n", lines[1])).unwrap();
    let text = err(&dir);
    assert!(
        text.starts_with(&format!(
            "state journal {} is damaged at line 1 (move it away to start from the configuration in {}/state.json",
            path.display(),
            dir.display()
        )),
        "{text}"
    );
    fs::write(&path, format!("{}\n", lines[1])).unwrap();
    assert!(
        err(&dir).ends_with("change 2 follows change 0: the ones between are missing"),
        "{}",
        err(&dir)
    );
    // A line for another state: it changes a bridge that is not there.
    fs::write(
        &path,
        format!(
            "{}\n",
            lines[1].replace("\"seq\":2", "\"seq\":1").replace("br0", "gone")
        ),
    )
    .unwrap();
    assert!(
        err(&dir)
            .ends_with("it does not fit the configuration before it: it changes bridge 'gone', which does not exist"),
        "{}",
        err(&dir)
    );
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn lines_the_state_file_already_holds_are_skipped() {
    let dir = temp_dir("skip");
    let (mut store, _, second) = two_changes(&dir);
    let journal = fs::read(dir.join(JOURNAL_FILE)).unwrap();
    // The state written, then a crash before the journal was emptied.
    store.write_state(&second).unwrap();
    fs::write(dir.join(JOURNAL_FILE), &journal).unwrap();
    let (state, mut store) = Store::open(&dir).unwrap();
    assert_eq!(state, second);
    let third = publish(&second, 9001);
    store.save(&second, &third).unwrap();
    assert_eq!(open(&dir), third);
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_failed_append_saves_nothing() {
    let dir = temp_dir("fail");
    let (empty, mut store) = Store::open(&dir).unwrap();
    let first = valid();
    store.save(&empty, &first).unwrap();
    let journal = fs::read(dir.join(JOURNAL_FILE)).unwrap();
    // A directory in its place stops even root.
    fs::remove_file(dir.join(JOURNAL_FILE)).unwrap();
    fs::create_dir(dir.join(JOURNAL_FILE)).unwrap();
    let err = store.save(&first, &publish(&first, 9000)).unwrap_err();
    assert!(
        error_chain(&err).starts_with("cannot write state file"),
        "{}",
        error_chain(&err)
    );
    fs::remove_dir(dir.join(JOURNAL_FILE)).unwrap();
    fs::write(dir.join(JOURNAL_FILE), &journal).unwrap();
    assert_eq!(open(&dir), first);
    let second = publish(&first, 9001);
    store.save(&first, &second).unwrap();
    assert_eq!(
        open(&dir),
        second,
        "the next change is numbered after the last saved one"
    );
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_damaged_state_file_names_the_way_back() {
    let dir = temp_dir("damaged");
    let err = |dir: &Path| error_chain(&Store::open(dir).map(|_| ()).unwrap_err());
    let (empty, mut store) = Store::open(&dir).unwrap();
    store.write_state(&empty).unwrap();
    fs::write(dir.join(STATE_FILE), "{\"version\":1,\"bridges\":[{").unwrap();
    let text = err(&dir);
    assert!(text.contains("fix it, or move it and"), "no earlier state yet: {text}");
    fs::remove_dir_all(&dir).unwrap();

    let dir = temp_dir("damaged2");
    let (empty, mut store) = Store::open(&dir).unwrap();
    store.write_state(&empty).unwrap();
    let second = valid();
    store.write_state(&second).unwrap();
    assert_eq!(open(&dir), second);
    // The state file before the last one is kept beside it.
    let prev: DesiredState = serde_json::from_slice(&fs::read(dir.join("state.json.prev")).unwrap()).unwrap();
    assert_eq!(prev, empty);
    fs::write(dir.join(STATE_FILE), b"\0\0\0").unwrap();
    let text = err(&dir);
    assert!(
        text.starts_with(&format!(
            "state file {}/state.json is not valid (an earlier configuration is in {0}/state.json.prev: move it over",
            dir.display()
        )),
        "{text}"
    );
    // A file that parses but breaks a rule is refused too.
    let mut broken = second.clone();
    broken.bridges.push(second.bridges[0].clone());
    fs::write(dir.join(STATE_FILE), serde_json::to_vec(&broken).unwrap()).unwrap();
    let text = err(&dir);
    assert!(
        text.contains("breaks a rule") && text.contains("already exists"),
        "{text}"
    );
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_corrupt_file_is_an_error_not_an_empty_config() {
    let dir = temp_dir("bad");
    fs::write(dir.join(STATE_FILE), "{ not json").unwrap();
    assert!(matches!(Store::open(&dir), Err(StateError::Parse { .. })));
    fs::write(dir.join(STATE_FILE), r#"{"version": 99, "bridges": []}"#).unwrap();
    assert!(matches!(Store::open(&dir), Err(StateError::Version { found: 99, .. })));
    fs::remove_dir_all(dir).unwrap();
}

/// A file as earlier versions wrote it (no `seq`), with the protocol's spelling.
#[test]
fn an_earlier_file_still_loads() {
    let dir = temp_dir("old");
    let text = r#"{"version":1,"bridges":[{"name":"br0","aging_secs":300,"max_macs":8192,
        "ports":[{"name":"p1","port_type":"afxdp","netns":"c1","ifname":"eth0","mac":null,
        "afxdp":{"mode":"generic","queue":0,"iface":null}}],
        "subnet":"10.20.0.0/24","gateway":"10.20.0.1",
        "uplink":{"iface":"up0","port_type":"tap","mode":"auto","ip":"192.0.2.2","prefix":24,"gw":"192.0.2.1","mac":null},
        "masquerade":true,"published":[{"proto":"udp","port":53,"to_ip":"10.20.0.2","to_port":5353}]}],
        "links":[]}"#;
    fs::write(dir.join(STATE_FILE), text).unwrap();
    let state = open(&dir);
    let br = &state.bridges[0];
    assert_eq!(br.ports[0].port_type, PortKind::Afxdp);
    assert_eq!(br.ports[0].afxdp.as_ref().unwrap().mode, XdpChoice::Generic);
    assert_eq!(br.uplink.as_ref().unwrap().port_type, PortKind::Tap);
    assert_eq!(br.published[0].proto, L4Proto::Udp);
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_failed_state_file_write_saves_nothing() {
    let dir = temp_dir("failstate");
    let (mut store, _, second) = two_changes(&dir);
    let journal = fs::read(dir.join(JOURNAL_FILE)).unwrap();
    // A change only the whole state can say (bridges reordered), and no
    // room for the state file's temporary.
    let mut third = second.clone();
    third.bridges.reverse();
    third.links.clear();
    fs::create_dir(dir.join("state.json.tmp")).unwrap();
    let err = store.save(&second, &third).unwrap_err();
    assert!(
        error_chain(&err).starts_with("cannot write state file"),
        "{}",
        error_chain(&err)
    );
    assert!(!dir.join(STATE_FILE).exists(), "no state file appeared");
    assert_eq!(
        fs::read(dir.join(JOURNAL_FILE)).unwrap(),
        journal,
        "the journal was kept"
    );
    assert_eq!(open(&dir), second);
    fs::remove_dir(dir.join("state.json.tmp")).unwrap();
    store.save(&second, &third).unwrap();
    assert_eq!((open(&dir), journal_lines(&dir)), (third, 0));
    fs::remove_dir_all(dir).unwrap();
}

/// A state file and journal written by vswitchd at cb07a3b, the last
/// commit whose networks were ctl's own type (now ipnet's): they load, and
/// the next save spells the networks as before.
#[test]
fn a_state_written_before_the_ipnet_types_loads() {
    let dir = temp_dir("before-ipnet");
    fs::write(dir.join(STATE_FILE), include_str!("written-by-cb07a3b/state.json")).unwrap();
    fs::write(dir.join(JOURNAL_FILE), include_str!("written-by-cb07a3b/state.journal")).unwrap();
    let (state, mut store) = Store::open(&dir).unwrap();
    let names: Vec<&str> = state.bridges.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["br0", "br1", "l2only", "br2", "br3"]);
    let br0 = state.bridge("br0").unwrap();
    assert_eq!(br0.subnet, Some("10.20.0.0/24".parse().unwrap()));
    assert_eq!(br0.ip_range, Some("10.20.0.128/25".parse().unwrap()));
    assert_eq!(
        state.bridge("br1").unwrap().gateway,
        Some("10.21.0.254".parse().unwrap())
    );
    assert_eq!(
        state.bridge("br2").unwrap().subnet,
        Some("10.23.0.0/16".parse().unwrap())
    );
    assert_eq!(
        state.bridge("br3").unwrap().ip_range,
        Some("10.24.0.64/26".parse().unwrap())
    );
    assert_eq!(state.bridge("l2only").unwrap().subnet, None);
    assert_eq!(state.links, [("br0".to_string(), "br2".to_string())]);
    state.validate().unwrap();

    let mut next = state.clone();
    next.bridges.retain(|b| b.name != "br3");
    store.save(&state, &next).unwrap();
    let journal = fs::read_to_string(dir.join(JOURNAL_FILE)).unwrap();
    let base = fs::read_to_string(dir.join(STATE_FILE)).unwrap();
    assert!((journal.clone() + &base).contains(r#""10.20.0.0/24""#));
    assert_eq!(Store::open(&dir).unwrap().0, next);
    fs::remove_dir_all(dir).unwrap();
}
