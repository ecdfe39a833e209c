//! The docs a user follows, checked against the code: every `vsctl`
//! command they show exists (run with `--help`), and every relative link
//! resolves. Nothing refers to a file outside the repository.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use vswitch_tests::bin;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// README.md, CONTRIBUTING.md and every page under docs/.
fn pages() -> Vec<PathBuf> {
    let mut pages = vec![root().join("README.md"), root().join("CONTRIBUTING.md")];
    let mut docs: Vec<PathBuf> = fs::read_dir(root().join("docs"))
        .expect("docs/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

/// The vsctl commands a page shows: in its code blocks (a line's
/// `vsctl CMD`, and `/ CMD` for the alternatives a line lists) and in its
/// inline code (`vsctl CMD ...`).
fn vsctl_commands(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut take = |words: &mut dyn Iterator<Item = &str>| {
        // Past the options vsctl takes before its command.
        let mut words = words.skip_while(|w| w.starts_with("--") || w.contains('='));
        if let Some(cmd) = words.next() {
            let cmd = cmd.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '-');
            if !cmd.is_empty() && cmd.chars().next().is_some_and(|c| c.is_ascii_lowercase()) {
                found.insert(cmd.to_string());
            }
        }
    };
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            let code = line.split(" # ").next().unwrap_or_default();
            for (i, part) in code.split(" / ").enumerate() {
                let mut words = part.split_whitespace().peekable();
                if i == 0 {
                    let Some(at) = part.split_whitespace().position(|w| w == "vsctl") else {
                        break;
                    };
                    let mut rest = part.split_whitespace().skip(at + 1);
                    take(&mut rest);
                } else if words.peek().is_some() {
                    take(&mut words);
                }
            }
        } else {
            for span in line.split('`').skip(1).step_by(2) {
                if let Some(rest) = span.strip_prefix("vsctl ") {
                    take(&mut rest.split_whitespace());
                }
            }
        }
    }
    found
}

#[test]
fn every_vsctl_command_the_docs_show_exists() {
    let mut shown = BTreeSet::new();
    for page in pages() {
        let text = fs::read_to_string(&page).expect("a page");
        shown.extend(vsctl_commands(&text));
    }
    assert!(shown.len() > 20, "the docs show the commands: {shown:?}");
    let missing: Vec<&String> = shown
        .iter()
        .filter(|cmd| {
            let out = Command::new(bin("vsctl")).args([cmd.as_str(), "--help"]).output();
            !out.is_ok_and(|o| o.status.success())
        })
        .collect();
    assert!(
        missing.is_empty(),
        "commands the docs show that vsctl does not know: {missing:?}"
    );
}

#[test]
fn every_relative_link_resolves() {
    let mut broken = Vec::new();
    for page in pages() {
        let text = fs::read_to_string(&page).expect("a page");
        for link in text.split("](").skip(1) {
            let Some(target) = link.split(')').next() else { continue };
            let target = target.split('#').next().unwrap_or_default();
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let dir = page.parent().expect("a folder");
            if !dir.join(target).exists() {
                broken.push(format!("{}: {target}", page.display()));
            }
        }
    }
    assert!(broken.is_empty(), "links that lead nowhere: {broken:?}");
}

#[test]
fn the_docs_name_no_file_outside_the_repository() {
    for page in pages() {
        let text = fs::read_to_string(&page).expect("a page");
        for outside in ["DESIGN.md", "STYLE.md", "../shared"] {
            assert!(!text.contains(outside), "{} names {outside}", page.display());
        }
    }
}

#[test]
fn the_readme_stays_a_users_path() {
    let text = fs::read_to_string(root().join("README.md")).expect("README");
    assert!(
        text.lines().count() <= 250,
        "README.md is {} lines",
        text.lines().count()
    );
    for section in [
        "## Quick start",
        "## Requirements",
        "## Install",
        "## Concepts",
        "## Commands",
        "## Limitations",
        "## Troubleshooting",
        "## Upgrade and uninstall",
    ] {
        assert!(text.contains(section), "README has no '{section}'");
    }
}
