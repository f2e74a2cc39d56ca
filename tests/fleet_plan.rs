//! One manifest tree for a fleet: each node's `netpold plan --node N` holds what that
//! node enforces and nothing else (policies scoped by `nodeSelector`, endpoints of other
//! nodes as set members only). Needs no root: `plan` does not touch the kernel.

use std::process::Command;

const NETPOLD: &str = env!("CARGO_BIN_EXE_netpold");

const TREE: &str = "
apiVersion: v1
kind: Node
metadata: {name: n1, labels: {zone: east}}
---
apiVersion: v1
kind: Node
metadata: {name: n2, labels: {zone: west}}
---
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {name: web, namespace: a, labels: {app: web}}
spec: {node: n1, interfaceName: vweb, ips: [10.0.0.1]}
---
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {name: db, namespace: a, labels: {app: web}}
spec: {node: n2, interfaceName: vdb, ips: [10.0.0.2]}
---
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {name: cache, namespace: a, labels: {app: cache}}
spec: {node: n2, interfaceName: vcache, ips: [10.0.0.3]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: cache-in, namespace: a}
spec:
  podSelector: {matchLabels: {app: cache}}
  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: 6379}]}]
---
apiVersion: netpold.io/v1
kind: GlobalNetworkPolicy
metadata: {name: east-web}
spec:
  nodeSelector: zone == 'east'
  selector: app == 'web'
  ingress: [{action: Allow, source: {selector: app == 'web'}}]
---
apiVersion: netpold.io/v1
kind: GlobalNetworkPolicy
metadata: {name: only-n2}
spec:
  nodeSelector: kubernetes.io/hostname == 'n2'
  egress: [{action: Deny, protocol: UDP}]
---
apiVersion: netpold.io/v1
kind: GlobalNetworkPolicy
metadata: {name: everywhere}
spec:
  egress: [{action: Allow}]
";

fn plan(dir: &std::path::Path, node: &str) -> String {
    let out = Command::new(NETPOLD)
        .args(["plan", "--config", "/dev/null", "--manifests"])
        .arg(dir)
        .args(["--node", node])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "plan --node {node}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The comment lines naming policies' own chains, in order.
fn policy_chains(plan: &str) -> Vec<&str> {
    plan.lines()
        .map(str::trim)
        .filter(|l| {
            l.starts_with("comment \"GlobalNetworkPolicy ") || l.starts_with("comment \"policy ")
        })
        .collect()
}

/// The `set` blocks' names.
fn sets(plan: &str) -> Vec<&str> {
    plan.lines()
        .filter_map(|l| l.trim().strip_prefix("set "))
        .map(|l| l.trim_end_matches(" {"))
        .collect()
}

#[test]
fn each_node_plans_only_the_policies_that_select_its_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("fleet.yaml"), TREE).unwrap();
    let n1 = plan(dir.path(), "n1");
    let n2 = plan(dir.path(), "n2");
    let n3 = plan(dir.path(), "n3");
    // east-web's nodeSelector picks n1 only; cache-in selects cache, on n2 only.
    assert_eq!(
        policy_chains(&n1),
        [
            "comment \"GlobalNetworkPolicy east-web ingress\"",
            "comment \"GlobalNetworkPolicy everywhere egress\"",
        ],
        "{n1}"
    );
    assert_eq!(
        policy_chains(&n2),
        [
            "comment \"GlobalNetworkPolicy everywhere egress\"",
            "comment \"GlobalNetworkPolicy only-n2 egress\"",
            "comment \"policy a/cache-in ingress\"",
        ],
        "{n2}"
    );
    // A node with no endpoint enforces no policy, even one that applies everywhere.
    assert_eq!(policy_chains(&n3), Vec::<&str>::new(), "{n3}");
    assert_eq!(sets(&n3), ["local_addrs4", "local_addrs6"], "{n3}");
    // Each node's own endpoints are enforced; the others' are set members only.
    assert!(n1.contains("endpoint a/web ingress") && !n1.contains("endpoint a/db"));
    assert!(n2.contains("endpoint a/db ingress") && !n2.contains("endpoint a/web"));
    // db (n2) is a member of east-web's source set on n1, and web (n1) of cache-in's
    // on n2; n1 has no set of cache-in's peers, n2 none of east-web's.
    assert!(
        n1.contains("10.0.0.2") && !n1.contains("10.0.0.3") && n2.contains("10.0.0.1"),
        "{n1}\n{n2}"
    );
    assert_eq!(sets(&n1).len(), 2 + 2, "{n1}");
    assert!(
        n1.starts_with(
            "# netpold plan for node n1: 1 namespaces, 3 endpoints (1 local), 4 policies (2 enforced here);"
        ),
        "{n1}"
    );
    assert!(
        n2.starts_with(
            "# netpold plan for node n2: 1 namespaces, 3 endpoints (2 local), 4 policies (3 enforced here);"
        ),
        "{n2}"
    );
}

#[test]
fn a_bad_node_selector_is_reported_where_it_is_written() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        "apiVersion: netpold.io/v1\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\nspec:\n  nodeSelector: zone = 'east'\n",
    )
    .unwrap();
    let out = Command::new(NETPOLD)
        .args(["check", "--config", "/dev/null", "--manifests"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let file = dir.path().join("p.yaml");
    assert!(
        stdout.contains(&format!(
            "{}:5:22: error: spec.nodeSelector: selector at character 6: '=' is not an operator: write '=='",
            file.display()
        )),
        "{stdout}"
    );
}

#[test]
fn explain_decides_each_side_with_the_policies_of_its_node() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("fleet.yaml"), TREE).unwrap();
    let explain = |from: &str, to: &str, port: &str| -> String {
        let out = Command::new(NETPOLD)
            .args(["explain", "--config", "/dev/null", "--manifests"])
            .arg(dir.path())
            .args(["--from", from, "--to", to, "--port", port])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    // only-n2 isolates db's egress on n2 (after everywhere, which allows first by name),
    // never web's on n1; east-web isolates web's ingress on n1, never db's on n2.
    let from_db = explain("a/db", "a/web", "53/udp");
    assert!(
        from_db.contains("egress  of a/db (node n2): isolated by GlobalNetworkPolicy everywhere, GlobalNetworkPolicy only-n2;")
            && from_db.contains("ingress of a/web (node n1): isolated by GlobalNetworkPolicy east-web;"),
        "{from_db}"
    );
    let to_db = explain("a/web", "a/db", "53/udp");
    assert!(
        to_db.contains("egress  of a/web (node n1): isolated by GlobalNetworkPolicy everywhere;")
            && to_db.contains("ingress of a/db (node n2): not isolated"),
        "{to_db}"
    );
}
