//! `plan` output loads with `nft -f` into an empty network namespace, reloads over
//! itself, leaves other tables alone, and `nft` lists it back in text and JSON.
//! Needs root, `ip` and `nft`. Skips without them, except under `CI=true`, where an
//! end-to-end test that cannot run must fail.

use std::io::Write;
use std::process::{Command, Stdio};

use netpold::{compile::compile, manifest::parse_bytes, model::Model, render::render};

mod common;
use common::{NODE, Rng, scenario};

fn can_run() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    let tools = ["ip", "nft"]
        .iter()
        .all(|t| Command::new(t).arg("-V").output().is_ok());
    if root && tools {
        return true;
    }
    let why = format!("needs root, ip and nft (root: {root}, tools: {tools})");
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("end-to-end test cannot run under CI: {why}");
    }
    eprintln!("skipped: {why}");
    false
}

/// A network namespace that is deleted when dropped, also when a test panics.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("npd-{tag}-{}", std::process::id());
        let status = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap();
        assert!(status.success(), "ip netns add {name}");
        Netns(name)
    }

    fn nft(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.0, "nft"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
        drop(input);
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn plans_load_reload_and_list_back() {
    if !can_run() {
        return;
    }
    let ns = Netns::new("load");
    let (ok, _, err) = ns.nft(&["-f", "-"], Some("table ip other {\n chain c {\n  type filter hook forward priority 0; policy accept;\n }\n}\n"));
    assert!(ok, "{err}");
    let mut rng = Rng(99);
    let mut rules = 0;
    for n in 0..25 {
        let s = scenario(&mut rng);
        let mut problems = Vec::new();
        let raw = parse_bytes("s.yaml", s.yaml.as_bytes(), &mut problems);
        let (model, more) = Model::build(&raw);
        assert!(problems.is_empty() && more.is_empty());
        let ruleset = compile(&model, NODE, "netpold");
        rules += ruleset.rule_count();
        let text = render(&ruleset);
        // Twice: the second load replaces the first in one transaction.
        for round in 0..2 {
            let (ok, _, err) = ns.nft(&["-f", "-"], Some(&text));
            assert!(
                ok,
                "scenario {n} round {round}: nft -f failed: {err}\n{text}"
            );
        }
        let (ok, listed, err) = ns.nft(&["-a", "list", "table", "inet", "netpold"], None);
        assert!(ok, "{err}");
        let is_object = |l: &str| {
            ["table ", "chain ", "set ", "map "]
                .iter()
                .any(|k| l.trim_start().starts_with(k))
        };
        let listed_rules = listed
            .lines()
            .filter(|l| l.contains("# handle") && !is_object(l))
            .count();
        assert_eq!(listed_rules, ruleset.rule_count(), "scenario {n}\n{listed}");
        let (ok, json, err) = ns.nft(&["-j", "list", "table", "inet", "netpold"], None);
        assert!(
            ok && json.starts_with("{\"nftables\": ["),
            "scenario {n}: {err}\n{json}"
        );
        assert!(
            !json.contains("\"unknown\""),
            "scenario {n}: nft could not decode an expression\n{json}"
        );
    }
    // Another tool's table is untouched by every replace.
    let (ok, listed, _) = ns.nft(&["list", "table", "ip", "other"], None);
    assert!(ok && listed.contains("chain c"), "{listed}");
    assert!(rules > 100, "the scenarios compiled to only {rules} rules");
}

#[test]
fn examples_load() {
    if !can_run() {
        return;
    }
    let ns = Netns::new("ex");
    let mut loaded = 0;
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/examples")).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        let l = netpold::load::load_dir(&dir).unwrap();
        assert!(l.problems.is_empty(), "{}: {:?}", dir.display(), l.problems);
        let text = render(&compile(&l.model, "edge-1", "netpold"));
        let (ok, _, err) = ns.nft(&["-f", "-"], Some(&text));
        assert!(ok, "{}: {err}", dir.display());
        loaded += 1;
    }
    assert!(loaded >= 7, "only {loaded} examples");
}
