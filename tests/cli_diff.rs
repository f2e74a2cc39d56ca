//! `netpold diff` and `netpold check --node` as a user runs them: two real trees where
//! a policy edit flips specific flows on specific nodes; exit codes as diff(1)'s.

use std::path::Path;
use std::process::{Command, Output};

fn netpold(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netpold"))
        .args(args)
        .args(["--config", "/dev/null"])
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Four endpoints on three nodes.
const ENDPOINTS: &str = "\
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {node: n1, interfaceName: veth-web, ips: [10.0.0.1]}
---
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {name: db, namespace: shop, labels: {app: db}}
spec: {node: n2, interfaceName: veth-db, ips: [10.0.0.2]}
---
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {name: api, namespace: shop, labels: {app: api}}
spec: {node: n3, interfaceName: veth-api, ips: [10.0.0.3]}
---
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {name: tool, namespace: ops, labels: {app: tool}}
spec: {node: n3, interfaceName: veth-tool, ips: [10.0.0.4]}
";

const OLD: &str = include_str!("fixtures/diff/old.yaml");

/// api may now reach db; web may send only to db.
const NEW: &str = include_str!("fixtures/diff/new.yaml");

fn trees(dir: &Path, new_policy: &str) -> (String, String) {
    let (old, new) = (dir.join("old"), dir.join("new"));
    for (d, policy) in [(&old, OLD), (&new, new_policy)] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(d.join("endpoints.yaml"), ENDPOINTS).unwrap();
        std::fs::write(d.join("policy.yaml"), policy).unwrap();
    }
    (old.display().to_string(), new.display().to_string())
}

fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("npd-diff-cli-")
        .tempdir()
        .unwrap()
}

/// The rows of the table, columns split on runs of spaces.
fn rows(stdout: &str) -> Vec<Vec<String>> {
    stdout
        .lines()
        .skip(1)
        .take_while(|l| !l.contains("flows change verdict"))
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

#[test]
fn a_policy_edit_flips_flows_on_the_nodes_that_enforce_them() {
    let dir = tmp();
    let (old, new) = trees(dir.path(), NEW);
    let out = netpold(&["diff", &old, &new]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(stdout.starts_with("NODE"), "{stdout}");
    let expected: Vec<Vec<&str>> = vec![
        vec![
            "n1",
            "shop/web",
            "ops/tool",
            "TCP 5432",
            "allowed → denied",
            "shop/web-out",
        ],
        vec![
            "n1",
            "shop/web",
            "shop/api",
            "TCP 5432",
            "allowed → denied",
            "shop/web-out",
        ],
        vec![
            "n2",
            "shop/api",
            "shop/db",
            "TCP 5432",
            "denied → allowed",
            "shop/db-in ingress[0]",
        ],
    ];
    assert_eq!(rows(&stdout), expected, "{stdout}");
    assert!(
        stdout.ends_with("3 flows change verdict on 2 nodes (10 of 12 pairs decided again)\n"),
        "{stdout}"
    );

    // One node's view.
    let out = netpold(&["diff", "--node", "n2", &old, &new]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(rows(&stdout), expected[2..].to_vec(), "{stdout}");
    // n3 enforces none of it: same, exit 0.
    let out = netpold(&["diff", "--node", "n3", &old, &new]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(text(&out.stdout).starts_with("0 flows change verdict on 0 nodes"));

    // JSON, and ports given on the command line.
    let out = netpold(&[
        "diff", "--json", "--port", "80", "--port", "5432/tcp", &old, &new,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let changes = v["changes"].as_array().unwrap();
    let on_80: Vec<(&str, &str, &str)> = changes
        .iter()
        .filter(|c| c["port"] == 80)
        .map(|c| {
            (
                c["node"].as_str().unwrap(),
                c["to"].as_str().unwrap(),
                c["new"]["verdict"].as_str().unwrap(),
            )
        })
        .collect();
    // Port 80 was open to api and tool (not to db, whose ingress is isolated).
    assert_eq!(
        on_80,
        vec![("n1", "ops/tool", "denied"), ("n1", "shop/api", "denied")]
    );
    assert_eq!(changes.len(), 5);
    assert_eq!(changes[4]["old"]["verdict"], "denied");
    assert_eq!(changes[4]["new"]["by"][0], "shop/db-in ingress[0]");
}

#[test]
fn the_same_tree_is_no_change() {
    let dir = tmp();
    let (old, new) = trees(dir.path(), OLD);
    let out = netpold(&["diff", &old, &new]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert_eq!(
        text(&out.stdout),
        "0 flows change verdict on 0 nodes (0 of 12 pairs decided again)\n"
    );
}

#[test]
fn an_invalid_tree_is_trouble_with_its_position() {
    let dir = tmp();
    let (old, new) = trees(
        dir.path(),
        &NEW.replace("port: 5432}\n---", "port: 99999}\n---"),
    );
    let out = netpold(&["diff", &old, &new]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("{new}/policy.yaml:11:")),
        "{stderr}"
    );
    assert!(stderr.contains("is invalid, no diff"), "{stderr}");
    assert!(out.stdout.is_empty());
    // A missing directory too.
    let out = netpold(&["diff", &old, &format!("{new}-missing")]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn check_node_summarises_what_the_node_enforces() {
    let dir = tmp();
    let (_, new) = trees(dir.path(), NEW);
    let out = netpold(&["check", "--manifests", &new, "--node", "n2"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut lines = stdout.lines();
    let head = lines.next().unwrap();
    assert!(
        head.starts_with("node n2: 1 endpoints, 0 host endpoints, 1 of 2 policies; "),
        "{stdout}"
    );
    assert_eq!(
        lines.next(),
        Some("  shop/db  ingress: shop/db-in  egress: -")
    );
    let out = netpold(&["check", "--manifests", &new, "--node", "n1"]);
    assert!(text(&out.stdout).contains("  shop/web  ingress: -  egress: shop/web-out"));
    // A node no endpoint names: a warning (a typo?), still valid.
    let out = netpold(&["check", "--manifests", &new, "--node", "n9"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("warning: no endpoint names node n9"));
    assert!(text(&out.stdout).starts_with("node n9: 0 endpoints"));
    // An invalid tree: errors, no summary.
    let (_, bad) = trees(
        &dir.path().join("bad"),
        &NEW.replace("port: 5432}\n---", "port: 99999}\n---"),
    );
    let out = netpold(&["check", "--manifests", &bad, "--node", "n2"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("{bad}/policy.yaml:11:")),
        "{stdout}"
    );
    assert!(!stdout.contains("node n2:"));
}
