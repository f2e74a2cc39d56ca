//! The compiled ruleset and the reference evaluator of the spec agree on every probe
//! of random small scenarios. Scenarios are YAML text, so parsing and defaulting are
//! exercised too. `NETPOLD_AGREEMENT_SCENARIOS` raises the count (default 300).

use std::net::IpAddr;

use netpold::compile::{DropLog, Options, compile_with};
use netpold::ir::Hook;
use netpold::ir::eval::{CtInfo, Packet, run};
use netpold::manifest::parse_bytes;
use netpold::model::{Model, Protocol};
use netpold::reference::{Party, Probe, evaluate};

mod common;
use common::{NODE, Rng, admin_policies, scenario, tiered_policies};

const HOST_V4: &str = "192.168.77.1";
const HOST_V6: &str = "fd77::1";
const OUTSIDE: [&str; 4] = ["192.0.2.1", "10.9.9.9", "2001:db8::1", "fd00::99"];

fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

fn host_ip(like: IpAddr) -> IpAddr {
    if like.is_ipv4() {
        HOST_V4.parse().unwrap()
    } else {
        HOST_V6.parse().unwrap()
    }
}

/// The packet the kernel would see for a probe, on this node: which hook, and the
/// interfaces of local endpoints (anything else arrives by an unclaimed uplink).
fn packet(model: &Model, probe: &Probe) -> Packet {
    let local_if = |ip: IpAddr| {
        model
            .endpoints
            .values()
            .find(|e| e.ips.contains(&ip) && e.is_local(NODE))
            .map(|e| e.interface.clone())
            .unwrap_or_else(|| "uplink0".to_owned())
    };
    let (hook, src, dst, iif, oif) = match (probe.src, probe.dst) {
        (Party::Host(s), Party::Ip(d)) => (Hook::Output, s, d, None, Some(local_if(d))),
        (Party::Ip(s), Party::Host(d)) => (Hook::Input, s, d, Some(local_if(s)), None),
        (Party::Ip(s), Party::Ip(d)) => (Hook::Forward, s, d, Some(local_if(s)), Some(local_if(d))),
        (Party::Host(_), Party::Host(_)) => unreachable!("host to itself is not probed"),
    };
    Packet {
        hook,
        iif,
        oif,
        src,
        dst,
        protocol: probe.protocol,
        sport: probe.sport,
        dport: probe.port,
        ct: CtInfo::New,
    }
}

#[test]
fn compiled_rules_agree_with_the_reference_evaluator() {
    let scenarios: usize = std::env::var("NETPOLD_AGREEMENT_SCENARIOS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    agree(scenarios, 0x6e70_6f6c_6421, false, false);
}

/// The same with random netpold.io NetworkPolicies and GlobalNetworkPolicies added:
/// orders around the Kubernetes policies' 1000, every action, selector expressions,
/// nets and notNets, ports. Scenarios whose random policies do not validate are skipped.
#[test]
fn compiled_ordered_policies_agree_with_the_reference_evaluator() {
    let scenarios: usize = std::env::var("NETPOLD_AGREEMENT_SCENARIOS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    agree(scenarios, 0x0074_6965_7273, true, false);
}

/// The same with random host endpoints (the uplink by name or `*`, local or not, with the
/// host's addresses as expectedIPs or none) selected by random GlobalNetworkPolicies and
/// one that selects most of them (applyOnForward or not, a Pass, a rule selecting the
/// host endpoints): the node's own traffic, forwarded traffic and the failsafe ports.
#[test]
fn compiled_host_endpoints_agree_with_the_reference_evaluator() {
    let scenarios: usize = std::env::var("NETPOLD_AGREEMENT_SCENARIOS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    agree(scenarios, 0x686f_7374, true, true);
}

/// The same with random AdminNetworkPolicies and the BaselineAdminNetworkPolicy added
/// to the ordered policies: priorities, Allow/Deny/Pass, peers by namespace, pods and
/// networks, numbered, ranged and named ports.
#[test]
fn compiled_admin_policies_agree_with_the_reference_evaluator() {
    let scenarios: usize = std::env::var("NETPOLD_AGREEMENT_SCENARIOS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    agree(scenarios, 0x0061_646d_696e, true, false);
}

/// The same with random `nodeSelector`s on the netpold.io policies (this node's
/// hostname, another node's, a label of this node's `v1 Node` or of none) and, in half
/// the scenarios, this node's `v1 Node` with a `zone` label: a policy whose nodeSelector
/// leaves this node out is enforced nowhere here.
#[test]
fn compiled_node_scoped_policies_agree_with_the_reference_evaluator() {
    let scenarios: usize = std::env::var("NETPOLD_AGREEMENT_SCENARIOS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    agree(scenarios, NODE_SCOPED, true, true);
}

const NODE_SCOPED: u64 = 0x6e6f_6465;

/// `yaml`'s netpold.io policies, each with a random nodeSelector or none, and maybe
/// this node's `v1 Node`.
fn node_scoped(yaml: &str, rng: &mut Rng) -> String {
    let selectors = [
        String::new(),
        format!("nodeSelector: \"kubernetes.io/hostname == '{NODE}'\", "),
        "nodeSelector: \"kubernetes.io/hostname == 'n2'\", ".to_owned(),
        "nodeSelector: \"zone == 'east'\", ".to_owned(),
        "nodeSelector: \"!has(zone)\", ".to_owned(),
        "nodeSelector: all(), ".to_owned(),
    ];
    let mut out = String::new();
    for (i, doc) in yaml.split("---\n").enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        let netpold_policy = ["kind: GlobalNetworkPolicy", "kind: NetworkPolicy"]
            .iter()
            .any(|k| doc.contains(&format!("netpold.io/v1\n{k}")));
        match doc.split_once("\nspec: {") {
            Some((head, rest)) if netpold_policy => {
                let selector = &selectors[rng.below(selectors.len())];
                out.push_str(&format!("{head}\nspec: {{{selector}{rest}"));
            }
            _ => out.push_str(doc),
        }
    }
    if rng.chance(50) {
        let zone = rng.pick(&["east", "west"]);
        out.push_str(&format!(
            "---\napiVersion: v1\nkind: Node\nmetadata: {{name: {NODE}, labels: {{zone: {zone}}}}}\n"
        ));
    }
    out
}

fn host_endpoints(rng: &mut Rng) -> String {
    let mut yaml = String::new();
    let mut interfaces = vec!["uplink0", "eth7", "*"];
    for i in 0..1 + rng.below(2) {
        let interface = interfaces.remove(rng.below(interfaces.len()));
        let app = rng.pick(&["web", "db", "api", "none"]);
        let node = rng
            .pick(&["", "node: n2, ", "node: NODE, "])
            .replace("NODE", NODE);
        let ips = if i == 0 && rng.chance(60) {
            format!(", expectedIPs: [{HOST_V4}, '{HOST_V6}']")
        } else {
            String::new()
        };
        yaml.push_str(&format!(
            "---\napiVersion: netpold.io/v1\nkind: HostEndpoint\nmetadata: {{name: h{i}, labels: {{app: {app}}}}}\nspec: {{{node}interfaceName: '{interface}'{ips}}}\n"
        ));
    }
    let forward = rng.chance(50);
    yaml.push_str(&format!(
        "---\napiVersion: netpold.io/v1\nkind: GlobalNetworkPolicy\nmetadata: {{name: hosts}}\nspec:\n  order: {}\n  selector: \"app in {{'web', 'db'}}\"\n  applyOnForward: {forward}\n  types: [Ingress, Egress]\n  ingress:\n  - {{action: Allow, protocol: TCP, destination: {{ports: [80]}}}}\n  - {{action: Pass, protocol: UDP, destination: {{ports: [80]}}}}\n  - {{action: Allow, source: {{selector: \"app == 'api'\"}}}}\n  egress:\n  - {{action: Deny, protocol: TCP, destination: {{ports: [8080]}}}}\n  - {{action: Allow, destination: {{selector: \"app in {{'web', 'db'}}\"}}}}\n  - {{action: Allow, protocol: SCTP}}\n",
        rng.pick(&["100", "1500"])
    ));
    yaml
}

fn agree(scenarios: usize, seed: u64, tiers: bool, hosts: bool) {
    let admin = seed == 0x0061_646d_696e;
    let probe_ports = [
        (Protocol::Tcp, 80),
        (Protocol::Tcp, 8080),
        (Protocol::Tcp, 8001),
        (Protocol::Tcp, 22),
        (Protocol::Udp, 53),
        (Protocol::Udp, 80),
        (Protocol::Sctp, 80),
    ];
    let mut rng = Rng(seed);
    let (mut probes, mut allowed, mut used) = (0usize, 0usize, 0usize);
    // Probes a host endpoint's policy decided, and of those denied.
    let (mut by_host, mut denied_by_host) = (0usize, 0usize);
    for n in 0..scenarios {
        let mut s = scenario(&mut rng);
        if tiers {
            s.yaml.push_str(&tiered_policies(&mut rng));
        }
        if hosts {
            s.yaml.push_str(&host_endpoints(&mut rng));
        }
        if admin {
            s.yaml.push_str(&admin_policies(&mut rng));
        }
        if seed == NODE_SCOPED {
            s.yaml = node_scoped(&s.yaml, &mut rng);
        }
        let mut problems = Vec::new();
        let raw = parse_bytes("scenario.yaml", s.yaml.as_bytes(), &mut problems);
        let (model, model_problems) = Model::build(&raw);
        problems.extend(model_problems);
        if tiers && !problems.is_empty() {
            continue;
        }
        assert!(
            problems.is_empty(),
            "scenario {n} invalid: {problems:?}\n{}",
            s.yaml
        );
        used += 1;
        // Every other scenario with drop logs, as the daemon compiles by default: the
        // log rules must not change a verdict.
        let options = Options {
            drop_log: (n % 2 == 0).then_some(DropLog {
                group: None,
                rate: 10,
                burst: 20,
            }),
            ..Default::default()
        };
        let ruleset = compile_with(&model, NODE, "netpold", &options);
        let mut parties: Vec<IpAddr> = s.addresses.clone();
        parties.extend(OUTSIDE.iter().map(|a| a.parse::<IpAddr>().unwrap()));
        let mut pairs: Vec<(Party, Party)> = Vec::new();
        for &a in &parties {
            pairs.push((Party::Host(host_ip(a)), Party::Ip(a)));
            pairs.push((Party::Ip(a), Party::Host(host_ip(a))));
            for &b in &parties {
                if a != b && same_family(a, b) {
                    pairs.push((Party::Ip(a), Party::Ip(b)));
                }
            }
        }
        for (src, dst) in pairs {
            for (protocol, port) in probe_ports {
                // Mostly an ephemeral port; sometimes one the random rules name
                // (`source: {ports: [...]}`, named `http`, `dns`).
                let sport = [40000, 40000, 80, 53, 8080, 22][rng.below(6)];
                let probe = Probe {
                    src,
                    dst,
                    protocol,
                    sport,
                    port,
                };
                let expected = evaluate(&model, NODE, &probe);
                let trace = run(&ruleset, &packet(&model, &probe));
                assert_eq!(
                    trace.accepted,
                    expected.allowed,
                    "scenario {n}: {src}:{sport} -> {dst} {protocol}/{port}\nreference: {expected:#?}\nrules taken: {:?}\n{}\n{}",
                    trace.path,
                    s.yaml,
                    netpold::render::render(&ruleset)
                );
                probes += 1;
                allowed += usize::from(expected.allowed);
                if expected.hosts.iter().any(|h| h.isolated) {
                    by_host += 1;
                    denied_by_host += usize::from(expected.hosts.iter().any(|h| !h.allowed));
                }
            }
        }
    }
    eprintln!(
        "agreement: {used} of {scenarios} scenarios, {probes} probes ({allowed} allowed, {} denied; {by_host} through a host endpoint's policy, {denied_by_host} denied there), 0 disagreements",
        probes - allowed
    );
    if hosts {
        assert!(
            by_host * 10 > probes
                && denied_by_host * 10 > by_host
                && (by_host - denied_by_host) * 10 > by_host,
            "{by_host} of {probes} through a host endpoint's policy, {denied_by_host} denied there"
        );
    }
    assert!(
        used * 3 > scenarios * 2,
        "only {used} of {scenarios} scenarios were valid"
    );
    // Both outcomes must be well represented, or the test proves little.
    assert!(
        allowed * 10 > probes && (probes - allowed) * 10 > probes,
        "{allowed} of {probes} allowed"
    );
}
