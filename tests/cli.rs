//! The commands as a user runs them: exit codes, messages, output. (`apply` and `run`
//! against the kernel are in `nft_netlink.rs` and the `e2e_*` tests.)

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

/// Runs the binary. Unless a test names its own, an empty configuration is given, so
/// a `/etc/netpold/netpold.toml` on the test machine cannot change the outcome.
fn netpold(args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_netpold"));
    command.args(args);
    let verb_takes_config = matches!(
        args.first(),
        Some(&("check" | "plan" | "apply" | "explain" | "matrix"))
    );
    if verb_takes_config && !args.contains(&"--config") {
        command.args(["--config", "/dev/null"]);
    }
    command.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const VALID: &str = "\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-frontend, namespace: myns}
spec:
  podSelector: {matchLabels: {role: backend}}
  ingress:
  - from:
    - podSelector: {matchLabels: {role: frontend}}
    ports:
    - {protocol: TCP, port: 6379}
---
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {name: backend-1, namespace: myns, labels: {role: backend}}
spec: {node: edge-1, interfaceName: veth-be1, ips: [10.1.0.2]}
";

const BROKEN_DB: &str = "\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: db
  namespace: shop
spec:
  podSelector: {}
  ingress:
  - from:
    - ipBlock:
        cidr: 10.1.0.0/16
    - ipBlock:
        cidr: 10.1.0.0/16
        except:
        - 10.2.0.0/16
";

fn write(dir: &Path, rel: &str, content: &str) {
    let path = dir.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

#[test]
fn check_valid_directory_exits_0_and_prints_no_problem() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", VALID);
    let out = netpold(&["check", "--manifests", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "");
    assert!(text(&out.stderr).starts_with("ok: 1 files, 1 namespaces, 1 endpoints, 1 policies"));
}

#[test]
fn check_reports_every_problem_with_path_line_col_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "policies/db.yaml", BROKEN_DB);
    write(dir.path(), "b.yaml", "kind: Pod\napiVersion: v1\n");
    write(dir.path(), "c.yaml", "a: [1,\n");
    write(dir.path(), "ignored.yaml~", "garbage: [");
    let out = Command::new(env!("CARGO_BIN_EXE_netpold"))
        .current_dir(dir.path())
        .args(["check", "--config", "/dev/null", "--manifests", "."])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert_eq!(
        lines[0],
        "b.yaml:1:7: error: kind: unknown kind \"Pod\": one of Namespace (v1), Node (v1), NetworkPolicy (networking.k8s.io/v1 or netpold.io/v1), GlobalNetworkPolicy (netpold.io/v1), WorkloadEndpoint (netpold.io/v1), HostEndpoint (netpold.io/v1), AdminNetworkPolicy and BaselineAdminNetworkPolicy (policy.networking.k8s.io/v1alpha1)"
    );
    assert!(lines[1].starts_with("c.yaml:"), "{}", lines[1]);
    assert!(lines[1].contains(": error: invalid YAML"), "{}", lines[1]);
    assert_eq!(
        lines[2],
        "policies/db.yaml:15:11: error: spec.ingress[0].from[1].ipBlock.except[0]: 10.2.0.0/16 is not inside cidr 10.1.0.0/16"
    );
    assert!(text(&out.stderr).contains("3 errors in 3 files (3 manifest files read)"));
}

#[test]
fn check_names_files_under_the_directory_as_given() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "x/bad.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: Bad}\n",
    );
    let given = dir.path().to_str().unwrap();
    let out = netpold(&["check", "--manifests", given]);
    assert_eq!(out.status.code(), Some(1));
    let expected = format!(
        "{given}/x/bad.yaml:3:18: error: metadata.name: \"Bad\" is not a valid DNS-1123 label: lower-case letters, digits and '-', starting and ending with a letter or digit\n"
    );
    assert_eq!(text(&out.stdout), expected);
}

#[test]
fn check_files_are_checked_together() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "one.yaml", VALID);
    write(dir.path(), "two.yaml", VALID);
    let one = dir.path().join("one.yaml");
    let two = dir.path().join("two.yaml");
    let out = netpold(&["check", one.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let out = netpold(&["check", one.to_str().unwrap(), two.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "{}:1:1: error: duplicate NetworkPolicy myns/allow-frontend: also defined at {}:1:1",
            two.display(),
            one.display()
        )),
        "{stdout}"
    );
}

#[test]
fn missing_directory_and_usage_errors() {
    let out = netpold(&["check", "--manifests", "/nonexistent/netpold-test"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("manifest directory /nonexistent/netpold-test"),
        "{}",
        text(&out.stderr)
    );
    let out = netpold(&["check", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    let out = netpold(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn plan_prints_nothing_for_invalid_input() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", VALID);
    write(dir.path(), "policies/db.yaml", BROKEN_DB);
    let out = netpold(&[
        "plan",
        "--manifests",
        dir.path().to_str().unwrap(),
        "--node",
        "edge-1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "");
    assert!(text(&out.stderr).contains("is not inside cidr"));
}

#[test]
fn apply_programs_nothing_for_invalid_input() {
    // Invalid input is refused before any netlink socket is opened, so this needs
    // no privileges and touches no kernel state.
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", VALID);
    write(dir.path(), "policies/db.yaml", BROKEN_DB);
    let out = netpold(&["apply", "--manifests", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("policies/db.yaml:"), "{err}");
    assert!(
        err.contains("nothing programmed; the kernel keeps what it had"),
        "{err}"
    );
}

#[test]
fn plan_is_stable_and_names_the_sources() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", VALID);
    let args = [
        "plan",
        "--manifests",
        dir.path().to_str().unwrap(),
        "--node",
        "edge-1",
        "--table",
        "np_test",
    ];
    let first = netpold(&args);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    assert_eq!(first.stdout, netpold(&args).stdout);
    let plan = text(&first.stdout);
    assert!(plan.contains("table inet np_test {"), "{plan}");
    assert!(
        plan.contains("comment \"endpoint myns/backend-1 ingress (veth-be1)\""),
        "{plan}"
    );
    assert!(
        plan.contains("tcp dport 6379 counter accept comment \"myns/allow-frontend ingress[0]\""),
        "{plan}"
    );
    assert!(plan.contains("\"veth-be1\" : goto ep_"), "{plan}");
}

#[test]
fn config_file_is_strict_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "m/a.yaml", VALID);
    let config = dir.path().join("netpold.toml");
    fs::write(
        &config,
        format!(
            "manifests = \"{}/m\"\nnode = \"edge-1\"\ntabel = \"x\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let out = netpold(&["plan", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:3:1: error: unknown field `tabel`",
            config.display()
        )),
        "{stderr}"
    );

    fs::write(
        &config,
        format!(
            "manifests = \"{}/m\"\nnode = \"elsewhere\"\ntable = \"fromconfig\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let out = netpold(&[
        "plan",
        "--config",
        config.to_str().unwrap(),
        "--node",
        "edge-1",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let plan = text(&out.stdout);
    assert!(
        plan.starts_with("# netpold plan for node edge-1:"),
        "{plan}"
    );
    assert!(plan.contains("table inet fromconfig {"));
    let out = netpold(&["plan", "--config", "/nonexistent/netpold.toml"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn plan_shows_the_drop_logs_the_config_asks_for() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "m/a.yaml", VALID);
    let config = dir.path().join("netpold.toml");
    let plan = |keys: &str| {
        fs::write(
            &config,
            format!(
                "manifests = \"{}/m\"\nnode = \"edge-1\"\n{keys}",
                dir.path().display()
            ),
        )
        .unwrap();
        let out = netpold(&["plan", "--config", config.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{keys}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    let logged = "log prefix \"netpold drop ingress myns/backend-1 isolated: \"";
    let default = plan("");
    assert!(
        default.contains(&format!(
            "limit rate 10/second burst 20 packets {logged} comment"
        )),
        "{default}"
    );
    let group = plan("log_group = 5\nlog_rate = 2\nlog_burst = 4\n");
    assert!(
        group.contains(&format!(
            "limit rate 2/second burst 4 packets {logged} group 5 comment"
        )),
        "{group}"
    );
    let off = plan("log_denied = false\nlog_group = 5\n");
    assert!(!off.contains(" log "), "{off}");
    assert!(
        off.contains("counter drop comment \"myns/backend-1: isolated"),
        "{off}"
    );
    fs::write(&config, "log_burst = 0\n").unwrap();
    let out = netpold(&["plan", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(&format!(
            "{}:1:1: error: log_burst: must be at least 1",
            config.display()
        )),
        "{}",
        text(&out.stderr)
    );
}

const FRONTEND: &str = "\
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {name: frontend-1, namespace: myns, labels: {role: frontend}}
spec: {node: edge-1, interfaceName: veth-fe1, ips: [10.1.0.3]}
";

#[test]
fn explain_and_matrix_answer_or_say_why_not() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", VALID);
    write(dir.path(), "b.yaml", FRONTEND);
    let m = dir.path().to_str().unwrap();
    let flow = ["--from", "myns/frontend-1", "--to", "myns/backend-1"];
    let explain = |extra: &[&str]| {
        let mut args = vec!["explain", "--manifests", m];
        args.extend(flow);
        args.extend(extra);
        netpold(&args)
    };
    let out = explain(&["--port", "6379"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "myns/frontend-1 (10.1.0.3) -> myns/backend-1 (10.1.0.2), TCP 6379: allowed
  egress  of myns/frontend-1 (node edge-1): not isolated: no policy selects it for egress; allowed
  ingress of myns/backend-1 (node edge-1): isolated by myns/allow-frontend; allowed by myns/allow-frontend ingress[0]
"
    );
    // A denial is an answer too: exit code 0.
    let out = explain(&["--port", "6379/udp", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["verdict"], "denied");
    assert_eq!(json["decided_by"], "ingress");
    assert_eq!(json["protocol"], "UDP");
    assert_eq!(json["ingress"]["policies"][0], "myns/allow-frontend");

    let out = netpold(&[
        "explain",
        "--manifests",
        m,
        "--from",
        "myns/nobody",
        "--to",
        "10.1.0.2",
        "--port",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "netpold: error: no WorkloadEndpoint myns/nobody in the manifests\n"
    );
    for bad in [&["--port", "70000"][..], &["--port", "80/icmp"], &[]] {
        let out = explain(bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", text(&out.stderr));
    }

    let out = netpold(&[
        "matrix",
        "--manifests",
        m,
        "--format",
        "csv",
        "--port",
        "6379",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "from,to,protocol,port,verdict,decided_by,by,reason
myns/backend-1,myns/frontend-1,TCP,6379,allowed,,,allowed: neither the sender's egress nor the receiver's ingress is isolated
myns/frontend-1,myns/backend-1,TCP,6379,allowed,,myns/allow-frontend ingress[0],allowed by myns/allow-frontend ingress[0]
"
    );
    let out = netpold(&["matrix", "--manifests", m, "--format", "svg"]);
    assert_eq!(out.status.code(), Some(2));
    let out = netpold(&["matrix", "--manifests", m, "--namespace", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "netpold: error: no namespace nope in the manifests\n"
    );

    // Invalid manifests: the problems, and no answer.
    write(dir.path(), "policies/db.yaml", BROKEN_DB);
    for verb in [&["explain", "--port", "6379"][..], &["matrix"]] {
        let mut args = vec![verb[0], "--manifests", m];
        if verb[0] == "explain" {
            args.extend(flow);
        }
        args.extend(&verb[1..]);
        let out = netpold(&args);
        assert_eq!(out.status.code(), Some(1), "{verb:?}");
        assert_eq!(text(&out.stdout), "");
        assert!(
            text(&out.stderr).contains("policies/db.yaml:15:11: error: spec.ingress[0]"),
            "{}",
            text(&out.stderr)
        );
    }
}

#[test]
fn the_ordered_policy_kinds_are_checked_planned_explained_and_in_the_matrix() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "bad.yaml",
        "apiVersion: netpold.io/v1\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\nspec:\n  selector: app == web\n  ingress: [{action: Drop}]\n",
    );
    let d = dir.path().to_str().unwrap();
    let out = netpold(&["check", "--manifests", d]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stdout).replace(&format!("{d}/"), ""),
        "bad.yaml:5:20: error: spec.selector: selector at character 8: expected a quoted value ('web'), found \"web\"\n\
         bad.yaml:6:22: error: spec.ingress[0].action: unknown action \"Drop\": one of Allow, Deny, Log, Pass\n"
    );

    let ex = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/tiers");
    let out = netpold(&["check", "--manifests", ex]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).starts_with("ok: 1 files, 2 namespaces, 3 endpoints, 4 policies"),
        "{}",
        text(&out.stderr)
    );
    let out = netpold(&["plan", "--manifests", ex, "--node", "edge-1"]);
    assert_eq!(out.status.code(), Some(0));
    let plan = text(&out.stdout);
    for needle in [
        "oifname vmap @ingress_pass comment \"netpold.io/v1 NetworkPolicy shop/web-gate ingress[0] Pass\"",
        "log prefix \"netpold log ingress baseline ingress[0]: \"",
        "jump tp_",
        "comment \"GlobalNetworkPolicy baseline (order 10)\"",
    ] {
        assert!(plan.contains(needle), "{needle} not in\n{plan}");
    }

    let explain = |from: &str, port: &str| {
        let out = netpold(&[
            "explain",
            "--manifests",
            ex,
            "--from",
            from,
            "--to",
            "shop/web",
            "--port",
            port,
            "--json",
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let denied = explain("192.0.2.9", "80");
    assert_eq!(denied["verdict"], "denied");
    assert_eq!(
        denied["ingress"]["denied_by"],
        serde_json::json!({"policy": "GlobalNetworkPolicy baseline", "rule": 2})
    );
    let passed = explain("shop/client", "80");
    assert_eq!(passed["verdict"], "allowed");
    assert_eq!(
        passed["ingress"]["passed_by"],
        serde_json::json!({"policy": "netpold.io/v1 NetworkPolicy shop/web-gate", "rule": 0})
    );
    assert_eq!(
        passed["ingress"]["allowed_by"],
        serde_json::json!({"policy": "shop/web-http", "rule": 0})
    );
    assert_eq!(
        passed["ingress"]["policies"],
        serde_json::json!([
            "GlobalNetworkPolicy baseline",
            "netpold.io/v1 NetworkPolicy shop/web-gate",
            "shop/web-http"
        ])
    );

    let out = netpold(&[
        "matrix",
        "--manifests",
        ex,
        "--port",
        "443/tcp",
        "--format",
        "csv",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let csv = text(&out.stdout);
    assert!(
        csv.lines()
            .any(|l| l.starts_with("shop/client,shop/web,") && l.contains("denied")),
        "{csv}"
    );
}
