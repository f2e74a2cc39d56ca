//! Conntrack after a policy change, end to end: long-lived TCP connections and UDP
//! flows held open across an edit. With `strict_conntrack` a flow the new policy
//! denies ends (its next packet gets no answer) while an allowed one goes on; without
//! it established flows go on; the flows of a removed endpoint's address end in both
//! modes, as do those of an address handed to another endpoint in one edit; a flow
//! through the host's DNAT is judged where it really goes. Also prints what a strict pass costs at 10,000 entries. Root only; fails
//! instead of skipping under `CI=true`.

use std::time::{Duration, Instant};

mod common;
use common::netns::can_run;
use common::topology::*;

const SYNC: Duration = Duration::from_secs(20);
const SHOW: Duration = Duration::from_secs(10);
const CONFIG: &str = "debounce_ms = 100\nresync_interval_s = 3600\n";

/// db accepts `ports` from app=web (web and gone).
fn db_policy(ports: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: db, namespace: a}}\nspec:\n  podSelector: {{matchLabels: {{app: db}}}}\n  ingress: [{{from: [{{podSelector: {{matchLabels: {{app: web}}}}}}], ports: [{ports}]}}]\n"
    )
}

const ALL_THREE: &str = "{port: 5432}, {port: 80}, {protocol: UDP, port: 53}";
const ONLY_5432: &str = "{port: 5432}";

fn start(tag: &str, strict: bool) -> Option<(Topology, Daemon)> {
    if !can_run(&TOOLS) {
        return None;
    }
    let wls = vec![
        wl("a/web", "app: web", &["10.0.0.1", "fd00::1"]),
        wl("a/db", "app: db", &["10.0.0.2", "fd00::2"]),
        wl("a/gone", "app: web", &["10.0.0.4", "fd00::4"]),
    ];
    let t = Topology::new(tag, wls, &[]);
    t.write("policy.yaml", &db_policy(ALL_THREE));
    let d = Daemon::start(&t, &format!("{CONFIG}strict_conntrack = {strict}\n"));
    d.wait_sync(1, SYNC);
    Some((t, d))
}

/// The endpoints without `gone`: its address is no endpoint's any more.
fn without_gone(t: &Topology) -> String {
    t.wls
        .iter()
        .filter(|w| w.name != "gone")
        .map(Wl::manifest)
        .collect()
}

/// The conntrack pass runs after the sync line: waits for its line about gone's flow.
fn wait_removed(d: &Daemon) {
    d.wait_line(|l| l.contains("(1 of removed endpoint addresses"), SHOW)
        .unwrap_or_else(|| panic!("no conntrack line:\n{}", d.dump()));
}

struct Flows {
    allowed_tcp: Held,
    denied_tcp: Held,
    denied_tcp6: Held,
    denied_udp: Held,
    gone_tcp: Held,
}

fn open_flows(t: &Topology) -> Flows {
    let db = t.wl("db").ip(V4).unwrap();
    let mut f = Flows {
        allowed_tcp: Held::open(t, "web", db, 5432),
        denied_tcp: Held::open(t, "web", db, 80),
        denied_tcp6: Held::open(t, "web", t.wl("db").ip(V6).unwrap(), 80),
        denied_udp: Held::open_udp(t, "web", db, 53),
        gone_tcp: Held::open(t, "gone", db, 5432),
    };
    for h in [
        &mut f.allowed_tcp,
        &mut f.denied_tcp,
        &mut f.denied_tcp6,
        &mut f.denied_udp,
        &mut f.gone_tcp,
    ] {
        assert_eq!(h.say(), "echo", "before the change");
    }
    f
}

/// The edit that denies TCP 80 and UDP 53, then the probes that show it is in force
/// for new connections.
fn deny_80_and_53(t: &Topology, d: &Daemon) {
    d.after(|| t.write("policy.yaml", &db_policy(ONLY_5432)), SYNC);
    t.eventually(
        &[
            ("web", "db", "tcp", 5432, V4, PASS),
            ("web", "db", "tcp", 80, V4, DROP),
            ("web", "db", "udp", 53, V4, DROP),
        ],
        SHOW,
    );
}

#[test]
fn strict_conntrack_ends_denied_flows_and_keeps_allowed_ones() {
    let Some((t, d)) = start("ct-strict", true) else {
        return;
    };
    let mut f = open_flows(&t);
    deny_80_and_53(&t, &d);
    d.wait_line(|l| l.contains("conntrack: deleted"), SHOW)
        .unwrap_or_else(|| panic!("no conntrack line:\n{}", d.dump()));
    assert_eq!(f.denied_tcp.say(), "timeout", "TCP 80, now denied");
    assert_eq!(
        f.denied_tcp6.say(),
        "timeout",
        "TCP 80 over IPv6, now denied"
    );
    assert_eq!(f.denied_udp.say(), "timeout", "UDP 53, now denied");
    assert_eq!(f.allowed_tcp.say(), "echo", "TCP 5432, still allowed");
    assert_eq!(f.gone_tcp.say(), "echo", "gone's TCP 5432, still allowed");
    // The endpoint removed: its flow ends, the others go on.
    d.after(|| t.write("endpoints.yaml", &without_gone(&t)), SYNC);
    wait_removed(&d);
    assert_eq!(f.gone_tcp.say(), "timeout", "a removed endpoint's flow");
    assert_eq!(f.allowed_tcp.say(), "echo", "TCP 5432 after the removal");
}

#[test]
fn without_strict_conntrack_established_flows_go_on_but_a_removed_endpoints_end() {
    let Some((t, d)) = start("ct-loose", false) else {
        return;
    };
    let mut f = open_flows(&t);
    deny_80_and_53(&t, &d);
    // As in Kubernetes: the policy applies to new connections only.
    assert_eq!(f.denied_tcp.say(), "echo", "TCP 80, established before");
    assert_eq!(
        f.denied_tcp6.say(),
        "echo",
        "TCP 80 over IPv6, established before"
    );
    assert_eq!(f.denied_udp.say(), "echo", "UDP 53, established before");
    assert_eq!(f.allowed_tcp.say(), "echo");
    let line = d.after(|| t.write("endpoints.yaml", &without_gone(&t)), SYNC);
    assert!(line.contains("programmed"), "{line}");
    wait_removed(&d);
    assert_eq!(f.gone_tcp.say(), "timeout", "a removed endpoint's flow");
    assert_eq!(f.denied_tcp.say(), "echo", "web's flows are not touched");
    assert_eq!(f.allowed_tcp.say(), "echo");
}

/// An endpoint removed while the daemon was down: at start the daemon knows, from its
/// state directory, what it enforced before, so the endpoint's flows end as if it had
/// been removed while it ran.
#[test]
fn an_endpoint_removed_while_the_daemon_was_down_loses_its_flows() {
    let Some((t, mut d)) = start("ct-offline", false) else {
        return;
    };
    let db = t.wl("db").ip(V4).unwrap();
    let mut allowed = Held::open(&t, "web", db, 5432);
    let mut gone = Held::open(&t, "gone", db, 5432);
    assert_eq!(allowed.say(), "echo");
    assert_eq!(gone.say(), "echo");
    assert_eq!(d.stop(), Some(0), "{}", d.dump());
    t.write("endpoints.yaml", &without_gone(&t));
    d.spawn(&t.host);
    let line = d.wait_sync(1, SYNC);
    assert!(line.contains("(read back, then changed: "), "{line}");
    wait_removed(&d);
    assert_eq!(
        gone.say(),
        "timeout",
        "a flow of the endpoint removed offline"
    );
    assert_eq!(allowed.say(), "echo", "web's flow is not touched");
}

/// The host DNATs 192.0.2.80:8080 to db:80 and :8081 to db:5432 in a nat table of
/// its own (as a port forward or a service address would): the flow is judged where
/// it really goes, so denying db's port 80 ends the held flow through the DNAT.
#[test]
fn strict_conntrack_judges_a_dnat_flow_by_where_it_really_goes() {
    let Some((t, d)) = start("ct-dnat", true) else {
        return;
    };
    let nat = "table ip npd-dnat {\n chain pre {\n  type nat hook prerouting priority dstnat;\n  ip daddr 192.0.2.80 tcp dport 8080 dnat to 10.0.0.2:80\n  ip daddr 192.0.2.80 tcp dport 8081 dnat to 10.0.0.2:5432\n }\n}\n";
    let (ok, _, err) = t.host.nft(&["-f", "-"], Some(nat));
    assert!(ok, "{err}");
    let mut to_80 = Held::open(&t, "web", "192.0.2.80", 8080);
    let mut to_5432 = Held::open(&t, "web", "192.0.2.80", 8081);
    assert_eq!(to_80.say(), "echo", "through the DNAT, before the change");
    assert_eq!(to_5432.say(), "echo", "through the DNAT, before the change");
    deny_80_and_53(&t, &d);
    d.wait_line(|l| l.contains("conntrack: deleted"), SHOW)
        .unwrap_or_else(|| panic!("no conntrack line:\n{}", d.dump()));
    assert_eq!(to_80.say(), "timeout", "db:80 through the DNAT, now denied");
    assert_eq!(
        to_5432.say(),
        "echo",
        "db:5432 through the DNAT, still allowed"
    );
}

/// One write replaces endpoint `gone` by `intruder`, with the same addresses and
/// interface: the address now names another workload, so gone's flow ends although
/// the address is still a local endpoint's.
fn handed_over(tag: &str, strict: bool) {
    let Some((t, d)) = start(tag, strict) else {
        return;
    };
    let mut gone = Held::open(&t, "gone", t.wl("db").ip(V4).unwrap(), 5432);
    let mut web = Held::open(&t, "web", t.wl("db").ip(V4).unwrap(), 5432);
    assert_eq!(gone.say(), "echo", "before the change");
    let swapped: String = t
        .wls
        .iter()
        .map(|w| {
            let mut w = w.clone();
            if w.name == "gone" {
                w.name = "intruder".into();
                w.labels = "app: intruder".into();
            }
            w.manifest()
        })
        .collect();
    d.after(|| t.write("endpoints.yaml", &swapped), SYNC);
    wait_removed(&d);
    assert_eq!(gone.say(), "timeout", "the flow of the address handed over");
    assert_eq!(web.say(), "echo", "another endpoint's flow goes on");
}

#[test]
fn an_address_handed_to_another_endpoint_loses_its_flows_with_strict_conntrack() {
    handed_over("ct-hand-s", true);
}

#[test]
fn an_address_handed_to_another_endpoint_loses_its_flows_without_strict_conntrack() {
    handed_over("ct-hand-l", false);
}

/// Not a timed assertion: prints what one strict pass costs with 10,000 entries.
#[test]
fn strict_pass_cost_at_ten_thousand_entries() {
    const ENTRIES: usize = 10_000;
    let Some((t, d)) = start("ct-cost", true) else {
        return;
    };
    // web → outside, one UDP datagram to each of 10,000 ports: forwarded, so each is
    // a confirmed entry in the host's table.
    let out = in_ns(&t.net("web").name, "python3")
        .args([PROBE, "flows", OUTSIDE4, "20000", &ENTRIES.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // An edit that ends one held flow only: every entry judged, one deleted.
    let mut held = Held::open(&t, "web", t.wl("db").ip(V4).unwrap(), 80);
    d.after(|| t.write("policy.yaml", &db_policy(ONLY_5432)), SYNC);
    let line = d
        .wait_line(|l| l.contains("conntrack: deleted 1 of"), SHOW)
        .unwrap_or_else(|| panic!("no conntrack line:\n{}", d.dump()));
    eprintln!(
        "strict conntrack pass, {ENTRIES} flows kept: {}",
        &line[line.find("conntrack:").unwrap()..]
    );
    assert_eq!(held.say(), "timeout");
    assert!(count(&line, " of ") > ENTRIES, "{line}");
    // An edit that isolates web's egress except to db: every web → outside entry goes.
    let isolate = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web-out, namespace: a}\nspec:\n  podSelector: {matchLabels: {app: web}}\n  policyTypes: [Egress]\n  egress: [{to: [{podSelector: {matchLabels: {app: db}}}]}]\n";
    let started = Instant::now();
    d.after(|| t.write("web-out.yaml", isolate), SYNC);
    let line = d
        .wait_line(
            |l| l.contains("conntrack: deleted") && !l.contains("deleted 1 of"),
            SHOW,
        )
        .unwrap_or_else(|| panic!("no conntrack line:\n{}", d.dump()));
    eprintln!(
        "strict conntrack pass, {ENTRIES} flows deleted: {} (sync and pass seen {} ms after the edit)",
        &line[line.find("conntrack:").unwrap()..],
        started.elapsed().as_millis()
    );
    assert!(count(&line, " of ") >= ENTRIES, "{line}");
    assert!(count(&line, "deleted ") >= ENTRIES, "{line}");
}

/// The number after `word` in a conntrack log line.
fn count(line: &str, word: &str) -> usize {
    line.split(word)
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after {word:?} in {line}"))
}
