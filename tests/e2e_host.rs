//! Host endpoints end to end: the host namespace's uplink (`uplink0`, towards the
//! outside namespace) is a `netpold.io/v1 HostEndpoint`; the real `netpold` programs
//! the host and real TCP/UDP packets (IPv4 and IPv6) check GlobalNetworkPolicies
//! protecting the host's own ports, its egress, `applyOnForward`, and the failsafe
//! ports under a deny-all host policy, broken files included. Root only; fails
//! instead of skipping under `CI=true`.

use std::time::Duration;

mod common;
use common::netns::can_run;
use common::topology::*;

const SYNC: Duration = Duration::from_secs(20);

const UPLINK: &str = "
apiVersion: netpold.io/v1
kind: HostEndpoint
metadata: {name: uplink, labels: {role: uplink}}
spec: {interfaceName: uplink0, expectedIPs: [192.168.50.1, 'fd00:50::1']}
";

fn web() -> Vec<Wl> {
    vec![wl("a/web", "app: web", &["10.0.0.1", "fd00::1"])]
}

fn gnp(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: netpold.io/v1\nkind: GlobalNetworkPolicy\nmetadata: {{name: {name}}}\nspec:\n{spec}"
    )
}

/// The topology with the uplink host endpoint and `policy`, not programmed yet.
fn setup(tag: &str, policy: &str) -> Option<Topology> {
    if !can_run(&TOOLS) {
        return None;
    }
    let t = Topology::new(tag, web(), &[]);
    t.write("host.yaml", UPLINK);
    t.write("policy.yaml", policy);
    Some(t)
}

/// `netpold apply` with a configuration holding `config`.
fn apply(t: &Topology, config: &str) {
    let path = t.dir.path().with_extension("toml");
    std::fs::write(&path, config).unwrap();
    let out = in_ns(&t.host.name, NETPOLD)
        .args(["apply", "--config"])
        .arg(&path)
        .arg("--manifests")
        .arg(t.manifests())
        .args(["--node", common::NODE])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "netpold apply: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The output of `netpold VERB … ARGS` about the topology's manifests, as node n1.
fn netpold_about(t: &Topology, verb: &[&str], args: &[&str]) -> Vec<u8> {
    let config = t.dir.path().with_extension("cli.toml");
    std::fs::write(&config, format!("node = \"{}\"\n", common::NODE)).unwrap();
    let out = std::process::Command::new(NETPOLD)
        .args(verb)
        .arg("--config")
        .arg(&config)
        .arg("--manifests")
        .arg(t.manifests())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "netpold {verb:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `netpold explain --json` about the topology's manifests, as node n1.
fn explain(t: &Topology, from: &str, to: &str, port: &str, extra: &[&str]) -> serde_json::Value {
    let args = [&["--from", from, "--to", to, "--port", port][..], extra].concat();
    serde_json::from_slice(&netpold_about(t, &["explain", "--json"], &args)).unwrap()
}

#[test]
fn a_global_policy_protects_the_hosts_own_port() {
    let Some(t) = setup(
        "hport",
        &gnp(
            "host-8080",
            "  selector: role == 'uplink'\n  ingress:\n  - {action: Allow, protocol: TCP, destination: {ports: [8080]}}\n",
        ),
    ) else {
        return;
    };
    t.program();
    t.check(&[
        ("outside", "host", "tcp", 8080, Both, PASS),
        ("outside", "host", "tcp", 80, Both, DROP),
        ("outside", "host", "udp", 8080, Both, DROP),
        // A workload's traffic to the host is its own egress policy's (none here).
        ("web", "host", "tcp", 80, Both, PASS),
        // Forwarded traffic is not the host's: no applyOnForward.
        ("outside", "web", "tcp", 80, Both, PASS),
        // Egress of the host is not governed.
        ("host", "outside", "tcp", 80, Both, PASS),
        ("host", "web", "tcp", 80, Both, PASS),
    ]);
}

#[test]
fn host_egress_allows_what_its_policy_allows_and_the_outbound_failsafe_ports() {
    let Some(t) = setup(
        "hegr",
        &gnp(
            "host-out",
            "  selector: role == 'uplink'\n  types: [Egress]\n  egress:\n  - {action: Allow, protocol: TCP, destination: {ports: [443]}}\n",
        ),
    ) else {
        return;
    };
    t.program();
    t.check(&[
        ("host", "outside", "tcp", 443, Both, PASS),
        ("host", "outside", "tcp", 80, Both, DROP),
        // udp:53 is a default outbound failsafe port.
        ("host", "outside", "udp", 53, Both, PASS),
        ("host", "outside", "udp", 80, Both, DROP),
        // To its workloads, the host is never filtered.
        ("host", "web", "tcp", 80, Both, PASS),
        // Ingress is not governed; replies to the outside's connections pass.
        ("outside", "host", "tcp", 80, Both, PASS),
    ]);
}

#[test]
fn apply_on_forward_filters_traffic_forwarded_through_the_host_endpoint() {
    let spec = "  selector: role == 'uplink'\n  applyOnForward: true\n  ingress:\n  - {action: Allow, protocol: TCP, destination: {ports: [80]}}\n";
    let Some(t) = setup("hfwd", &gnp("fwd-80", spec)) else {
        return;
    };
    t.program();
    t.check(&[
        ("outside", "web", "tcp", 80, Both, PASS),
        ("outside", "web", "tcp", 443, Both, DROP),
        ("outside", "web", "udp", 80, Both, DROP),
        // The policy applies to the host's own traffic too.
        ("outside", "host", "tcp", 80, Both, PASS),
        ("outside", "host", "tcp", 443, Both, DROP),
        // Leaving by the uplink is egress, which it does not govern.
        ("web", "outside", "tcp", 443, Both, PASS),
    ]);
    // explain takes the outside's packets to come by the uplink, the node's one host
    // endpoint: the forwarding policy shows, and its verdicts are the kernel's above.
    for (port, verdict) in [("80", "allowed"), ("443", "denied"), ("80/udp", "denied")] {
        let e = explain(&t, OUTSIDE4, "a/web", port, &[]);
        assert_eq!(e["verdict"], verdict, "{port}: {e:#}");
        assert_eq!(e["hosts"][0]["endpoint"], "host:uplink", "{e:#}");
        assert_eq!(e["hosts"][0]["direction"], "ingress", "{e:#}");
        assert_eq!(e["hosts"][0]["verdict"], verdict, "{e:#}");
        if verdict == "denied" {
            assert_eq!(e["decided_by_host"], "host:uplink", "{e:#}");
        } else {
            assert_eq!(
                e["hosts"][0]["allowed_by"]["policy"], "GlobalNetworkPolicy fwd-80",
                "{e:#}"
            );
        }
    }
    // By an interface no host endpoint names, no forwarding policy applies.
    let e = explain(&t, OUTSIDE4, "a/web", "443", &["--via", "eth9"]);
    assert_eq!(e["verdict"], "allowed", "{e:#}");
    assert_eq!(e["hosts"].as_array().map(Vec::len), Some(0), "{e:#}");
    // Without applyOnForward the forwarded traffic is not the host endpoint's.
    t.write(
        "policy.yaml",
        &gnp(
            "fwd-80",
            &spec.replace("applyOnForward: true", "applyOnForward: false"),
        ),
    );
    t.program();
    t.check(&[
        ("outside", "web", "tcp", 443, Both, PASS),
        ("outside", "host", "tcp", 443, Both, DROP),
    ]);
    let e = explain(&t, OUTSIDE4, "a/web", "443", &[]);
    assert_eq!(e["verdict"], "allowed", "{e:#}");
    assert_eq!(e["hosts"].as_array().map(Vec::len), Some(0), "{e:#}");
}

const DENY_ALL: &str = "  selector: role == 'uplink'\n  types: [Ingress, Egress]\n";

#[test]
fn failsafe_ports_stay_reachable_under_a_deny_all_host_policy() {
    let Some(t) = setup("hsafe", &gnp("deny-all", DENY_ALL)) else {
        return;
    };
    apply(
        &t,
        "failsafe_inbound = [\"tcp:5432\", \"udp:5000\"]\nfailsafe_outbound = [\"tcp:9000\"]\n",
    );
    t.check(&[
        ("outside", "host", "tcp", 5432, Both, PASS),
        ("outside", "host", "udp", 5000, Both, PASS),
        ("outside", "host", "tcp", 8080, Both, DROP),
        ("outside", "host", "udp", 5432, Both, DROP),
        ("host", "outside", "tcp", 9000, Both, PASS),
        ("host", "outside", "tcp", 5432, Both, DROP),
        // Workloads are not host endpoints: no failsafe, no host policy.
        ("outside", "web", "tcp", 8080, Both, PASS),
    ]);
    // `status --kernel` counts the drops at the host endpoint, failsafe accepts aside.
    let out = in_ns(&t.host.name, NETPOLD)
        .args(["status", "--kernel", "--config", "/dev/null"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text
        .lines()
        .find(|l| l.contains("host:uplink ingress"))
        .unwrap_or_else(|| panic!("no host endpoint drops in:\n{text}"));
    assert!(line.contains("isolated"), "{line}");
    // Narrowed to a CIDR: the IPv4 outside is in it, the IPv6 one is not.
    apply(
        &t,
        "failsafe_inbound = [\"tcp:192.168.50.0/24:5432\", \"tcp:[fd00:99::/32]:8080\"]\n",
    );
    t.check(&[
        ("outside", "host", "tcp", 5432, V4, PASS),
        ("outside", "host", "tcp", 5432, V6, DROP),
        ("outside", "host", "tcp", 8080, Both, DROP),
    ]);
    // `[]` really disables them.
    apply(&t, "failsafe_inbound = []\nfailsafe_outbound = []\n");
    t.check(&[
        ("outside", "host", "tcp", 5432, Both, DROP),
        ("host", "outside", "tcp", 9000, Both, DROP),
        ("host", "outside", "udp", 53, Both, DROP),
    ]);
}

#[test]
fn failsafe_ports_survive_broken_policy_and_host_endpoint_files() {
    let Some(t) = setup("hbad", &gnp("deny-all", DENY_ALL)) else {
        return;
    };
    let mut d = Daemon::start(
        &t,
        "debounce_ms = 100\nresync_interval_s = 3600\nfailsafe_inbound = [\"tcp:5432\"]\nfailsafe_outbound = [\"tcp:9000\"]\n",
    );
    let line = d.wait_sync(1, SYNC);
    assert!(!line.contains("not programmed"), "first sync: {line}");
    let enforced = [
        ("outside", "host", "tcp", 5432, Both, PASS),
        ("outside", "host", "tcp", 8080, Both, DROP),
        ("host", "outside", "tcp", 9000, Both, PASS),
        ("host", "outside", "tcp", 443, Both, DROP),
    ];
    t.check(&enforced);
    // Every file broken: the last good content stays, failsafe ports included.
    for file in ["policy.yaml", "host.yaml", "endpoints.yaml"] {
        d.after(|| t.write(file, "spec: [unclosed\n"), SYNC);
    }
    assert!(
        d.dump().contains("host.yaml:"),
        "the broken host endpoint file is reported:\n{}",
        d.dump()
    );
    t.check(&enforced);
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn the_daemon_follows_host_endpoints_and_their_policies_edited_live() {
    if !can_run(&TOOLS) {
        return;
    }
    let t = Topology::new("hlive", web(), &[]);
    let mut d = Daemon::start(
        &t,
        "debounce_ms = 100\nresync_interval_s = 3600\nfailsafe_inbound = [\"tcp:5432\"]\n",
    );
    let line = d.wait_sync(1, SYNC);
    assert!(!line.contains("not programmed"), "first sync: {line}");
    let open = [
        ("outside", "host", "tcp", 8080, Both, PASS),
        ("outside", "host", "tcp", 80, Both, PASS),
        ("outside", "host", "tcp", 5432, Both, PASS),
    ];
    t.check(&open);
    // A host endpoint alone: not selected, not filtered.
    d.after(|| t.write("host.yaml", UPLINK), SYNC);
    t.check(&open);
    // Selected by a deny-all policy: only the failsafe port stays open.
    d.after(|| t.write("policy.yaml", &gnp("deny-all", DENY_ALL)), SYNC);
    t.eventually(
        &[
            ("outside", "host", "tcp", 8080, Both, DROP),
            ("outside", "host", "tcp", 80, Both, DROP),
            ("outside", "host", "tcp", 5432, Both, PASS),
            ("host", "outside", "tcp", 80, Both, DROP),
            ("web", "host", "tcp", 80, Both, PASS),
        ],
        SYNC,
    );
    // The policy now allows 8080 in.
    let allow = format!(
        "{DENY_ALL}  ingress:\n  - {{action: Allow, protocol: TCP, destination: {{ports: [8080]}}}}\n"
    );
    d.after(|| t.write("policy.yaml", &gnp("deny-all", &allow)), SYNC);
    t.eventually(
        &[
            ("outside", "host", "tcp", 8080, Both, PASS),
            ("outside", "host", "tcp", 80, Both, DROP),
        ],
        SYNC,
    );
    // The host endpoint relabelled out of the selector, then removed: open again.
    d.after(
        || t.write("host.yaml", &UPLINK.replace("role: uplink", "role: spare")),
        SYNC,
    );
    t.eventually(&open, SYNC);
    d.after(|| t.write("host.yaml", UPLINK), SYNC);
    t.eventually(&[("outside", "host", "tcp", 80, Both, DROP)], SYNC);
    d.after(|| t.remove("host.yaml"), SYNC);
    t.eventually(&open, SYNC);
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn a_star_host_endpoint_covers_every_host_interface_but_the_workloads() {
    let Some(t) = setup(
        "hstar",
        &gnp(
            "host-8080",
            "  selector: role == 'uplink'\n  types: [Ingress, Egress]\n  ingress:\n  - {action: Allow, protocol: TCP, destination: {ports: [8080]}}\n  egress:\n  - {action: Allow, protocol: TCP, destination: {ports: [443]}}\n",
        ),
    ) else {
        return;
    };
    t.write(
        "host.yaml",
        &UPLINK.replace("interfaceName: uplink0", "interfaceName: '*'"),
    );
    t.program();
    t.check(&[
        ("outside", "host", "tcp", 8080, Both, PASS),
        ("outside", "host", "tcp", 80, Both, DROP),
        ("host", "outside", "tcp", 443, Both, PASS),
        ("host", "outside", "tcp", 80, Both, DROP),
        // Never a workload's interface, nor lo.
        ("web", "host", "tcp", 80, Both, PASS),
        ("host", "web", "tcp", 80, Both, PASS),
        ("host", "host", "tcp", 80, V4, PASS),
    ]);
}

/// `netpold matrix` has the host endpoint as `host:uplink`, and its cells say what the
/// kernel does with packets from an endpoint of another node (behind the uplink) to
/// the host's address on the uplink, and from the host to it.
#[test]
fn matrix_host_cells_agree_with_the_kernel() {
    if !can_run(&TOOLS) {
        return;
    }
    let t = Topology::new(
        "hmtx",
        vec![
            wl("a/web", "app: web", &["10.0.0.1"]),
            wl("c/far", "app: far", &["10.7.0.1"]).remote(),
        ],
        &[],
    );
    t.write("host.yaml", UPLINK);
    t.write(
        "policy.yaml",
        &gnp(
            "host-8080",
            "  selector: role == 'uplink'\n  types: [Ingress, Egress]\n  ingress:\n  - {action: Allow, protocol: TCP, source: {selector: app == 'far'}, destination: {ports: [8080]}}\n  egress:\n  - {action: Allow, protocol: TCP, destination: {ports: [80]}}\n",
        ),
    );
    t.program();
    let csv = String::from_utf8(netpold_about(
        &t,
        &["matrix", "--format", "csv"],
        &["--port", "8080", "--port", "80", "--port", "443"],
    ))
    .unwrap();
    let mut rows = Vec::new();
    for line in csv.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        let (from, to) = (fields[0], fields[1]);
        // Cells with the host endpoint, to or from the endpoint of the other node.
        let (from, to) = match (from, to) {
            ("c/far", "host:uplink") => ("far", "192.168.50.1"),
            ("host:uplink", "c/far") => ("host", "10.7.0.1"),
            _ => continue,
        };
        let verdict = if fields[4] == "allowed" { PASS } else { DROP };
        rows.push((from, to, fields[3].parse::<u16>().unwrap(), verdict));
    }
    assert_eq!(rows.len(), 6, "{csv}");
    // Both verdicts occur in both directions, or the comparison proves little.
    for dir in ["far", "host"] {
        let of = |v| rows.iter().filter(|r| r.0 == dir && r.3 == v).count();
        assert!(of(PASS) > 0 && of(DROP) > 0, "{csv}");
    }
    let rows: Vec<Row> = rows
        .iter()
        .map(|&(from, to, port, verdict)| (from, to, "tcp", port, V4, verdict))
        .collect();
    t.check(&rows);
}
