//! `netpold status` and the metrics endpoint against a running daemon and real packets:
//! what the daemon says it counted must be what the kernel counted for the packets the
//! test sent, the files in error must carry their `path:line:col`, the drop log must
//! name the flows the test sent, and the metrics page must parse as the Prometheus text
//! format (by the Prometheus project's own Python parser). Root only; fails instead of
//! skipping under `CI=true`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

mod common;
use common::netns::{can_run, in_netns};
use common::topology::*;

const SYNC: Duration = Duration::from_secs(20);
const METRICS: &str = "127.0.0.1:9753";
/// Debian's python3, where python3-prometheus-client is installed.
const DEBIAN_PYTHON: &str = "/usr/bin/python3";
const GROUP: u16 = 7;

const POLICY: &str = "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-from-web, namespace: a}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: web}}}]
    ports: [{port: 5432}]
";

fn status_json(args: &[&str]) -> (Option<i32>, Value, String) {
    let out = Command::new(NETPOLD)
        .arg("status")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let value = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (out.status.code(), value, stderr)
}

fn find(list: &Value, pred: impl Fn(&Value) -> bool) -> Option<&Value> {
    list.as_array()?.iter().find(|v| pred(v))
}

fn policy_packets(report: &Value) -> u64 {
    find(&report["policies"], |p| {
        p["namespace"] == "a" && p["name"] == "db-from-web" && p["direction"] == "ingress"
    })
    .and_then(|p| p["packets"].as_u64())
    .unwrap_or(0)
}

fn isolated_drops(report: &Value) -> u64 {
    find(&report["endpoints"], |e| {
        e["namespace"] == "a" && e["name"] == "db" && e["direction"] == "ingress"
    })
    .and_then(|e| e["by_cause"]["isolated"].as_u64())
    .unwrap_or(0)
}

fn scrape(host: &common::netns::Netns) -> String {
    in_netns(host, || {
        let mut c = TcpStream::connect(METRICS).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(c, "GET /metrics HTTP/1.1\r\nHost: netpold\r\n\r\n").unwrap();
        let mut text = String::new();
        c.read_to_string(&mut text).unwrap();
        text
    })
}

/// The page parsed by prometheus_client: `[name, type, [[sample, labels, value]...]]`.
fn parse_prometheus(body: &str) -> Value {
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(sys.stdin.read()):
    out.append([f.name, f.type, [[s.name, s.labels, s.value] for s in f.samples]])
print(json.dumps(out))
"#;
    let mut child = Command::new(DEBIAN_PYTHON)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client refused the page: {}\n{body}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn sample(families: &Value, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    families.as_array()?.iter().find_map(|f| {
        f[2].as_array()?.iter().find_map(|s| {
            (s[0] == name && labels.iter().all(|(k, v)| s[1][*k] == *v))
                .then(|| s[2].as_f64())
                .flatten()
        })
    })
}

#[test]
fn status_metrics_and_drop_log_agree_with_the_packets_sent() {
    if !can_run(&[&TOOLS[..], &[DEBIAN_PYTHON]].concat()) {
        return;
    }
    let t = Topology::new(
        "stat",
        vec![
            wl("a/web", "app: web", &["10.0.0.1"]),
            wl("a/db", "app: db", &["10.0.0.2"]),
            wl("a/other", "app: other", &["10.0.0.3"]),
        ],
        &[],
    );
    t.write("policy.yaml", POLICY);
    let d = Daemon::start(
        &t,
        &format!("resync_interval_s = 3600\nmetrics_listen = \"{METRICS}\"\nlog_group = {GROUP}\n"),
    );
    let first = d.wait_sync(1, SYNC);
    assert!(first.contains("programmed"), "{first}");
    let socket = d.status_socket();

    let (code, before, err) = status_json(&["--socket", socket.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(before["source"], "daemon");
    assert_eq!(before["last_sync"]["result"], "programmed");
    assert_eq!(before["objects"]["local_endpoints"], 3);
    assert_eq!(before["objects"]["policies"], 1);
    assert_eq!(before["files_in_error"].as_array().unwrap().len(), 0);

    // Three allowed connections and three denied ones, each to its own port-less drop.
    const SENT: u64 = 3;
    for _ in 0..SENT {
        t.check(&[
            ("web", "db", "tcp", 5432, V4, PASS),
            ("other", "db", "tcp", 5432, V4, DROP),
        ]);
    }
    // The drop log reaches the daemon on its own thread: wait until it has the flow.
    let mut after = Value::Null;
    for _ in 0..50 {
        after = status_json(&["--socket", socket.to_str().unwrap()]).1;
        if find(&after["denied_flows"]["top"], |f| f["src"] == "10.0.0.3").is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // The policy rule sees the first packet of each connection (the rest are
    // established); a dropped SYN may be sent again within the probe's wait.
    let allowed = policy_packets(&after) - policy_packets(&before);
    assert_eq!(allowed, SENT, "{after:#}");
    let dropped = isolated_drops(&after) - isolated_drops(&before);
    assert!(dropped >= SENT, "dropped {dropped}: {after:#}");

    // The daemon read the drop log: the denied flow is its top flow.
    let flows = &after["denied_flows"];
    assert_eq!(flows["group"], GROUP, "{after:#}");
    let top =
        find(&flows["top"], |f| f["src"] == "10.0.0.3").unwrap_or_else(|| panic!("{after:#}"));
    assert_eq!(top["dst"], "10.0.0.2");
    assert_eq!(top["protocol"], "tcp");
    assert_eq!(top["dport"], 5432);
    assert_eq!(top["endpoint"], "a/db");
    assert_eq!(top["direction"], "ingress");
    assert!(top["packets"].as_u64().unwrap() >= SENT, "{after:#}");

    // The kernel alone gives the same counters.
    let out = in_ns(&t.host.name, NETPOLD)
        .args(["status", "--kernel", "--json", "--config", "/dev/null"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kernel: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(kernel["source"], "kernel");
    assert_eq!(policy_packets(&kernel), policy_packets(&after));
    assert!(isolated_drops(&kernel) >= isolated_drops(&after));

    // The metrics page parses and carries the same figures.
    let page = scrape(&t.host);
    let (head, body) = page.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    let families = parse_prometheus(body);
    let names: Vec<&str> = families
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f[0].as_str().unwrap())
        .collect();
    for name in [
        "netpold_syncs",
        "netpold_sync_duration_seconds",
        "netpold_transaction_messages",
        "netpold_errors",
        "netpold_objects",
        "netpold_files_in_error",
        "netpold_drift_repairs",
        "netpold_policy_allowed_packets",
        "netpold_endpoint_denied_packets",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    let allowed_metric = sample(
        &families,
        "netpold_policy_allowed_packets_total",
        &[
            ("namespace", "a"),
            ("policy", "db-from-web"),
            ("direction", "ingress"),
        ],
    );
    assert_eq!(allowed_metric, Some(policy_packets(&after) as f64));
    assert!(
        sample(
            &families,
            "netpold_endpoint_denied_packets_total",
            &[("endpoint", "db"), ("cause", "isolated")]
        )
        .unwrap_or(0.0)
            >= SENT as f64
    );
    assert_eq!(
        sample(
            &families,
            "netpold_syncs_total",
            &[("result", "programmed")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&families, "netpold_sync_duration_seconds_count", &[]),
        Some(1.0)
    );
    assert_eq!(
        sample(&families, "netpold_objects", &[("kind", "policies")]),
        Some(1.0)
    );

    // A broken file: listed with its position, counted, and what is enforced stays.
    let broken = POLICY.replace(
        "podSelector: {matchLabels: {app: db}}",
        "podSelector: {matchLabel: {app: db}}",
    );
    let line = d.after(|| t.write("policy.yaml", &broken), SYNC);
    assert!(line.contains("kept last good content"), "{line}");
    let (_, held, _) = status_json(&["--socket", socket.to_str().unwrap()]);
    let file = &held["files_in_error"][0];
    let path = t.manifests().join("policy.yaml").display().to_string();
    assert_eq!(file["file"], path.as_str(), "{held:#}");
    assert_eq!(file["last_good"], true);
    let message = file["messages"][0].as_str().unwrap();
    assert!(message.starts_with(&format!("{path}:5:")), "{message}");
    assert!(message.contains("matchLabel"), "{message}");
    t.check(&[
        ("web", "db", "tcp", 5432, V4, PASS),
        ("other", "db", "tcp", 5432, V4, DROP),
    ]);
    let families = parse_prometheus(scrape(&t.host).split_once("\r\n\r\n").unwrap().1);
    assert_eq!(sample(&families, "netpold_files_in_error", &[]), Some(1.0));
    assert!(
        sample(&families, "netpold_errors_total", &[("kind", "manifest")]).unwrap_or(0.0) >= 1.0
    );

    // The text form names the same things.
    let text = Command::new(NETPOLD)
        .args(["status", "--socket", socket.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&format!("{path} (its last good content is enforced)")),
        "{text}"
    );
    assert!(text.contains("a/db-from-web ingress"), "{text}");
    assert!(text.contains("10.0.0.3 -> 10.0.0.2 tcp/5432"), "{text}");
}

#[test]
fn status_without_a_daemon_says_where_it_looked() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("status.sock");
    let (code, _, err) = status_json(&["--socket", socket.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains(&format!("no daemon answers at {}", socket.display())),
        "{err}"
    );
    assert!(err.contains("--kernel"), "{err}");
}
