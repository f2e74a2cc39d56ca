//! The compiled ruleset and the reference evaluator of the spec agree on every probe
//! of random small scenarios. Scenarios are YAML text, so parsing and defaulting are
//! exercised too. `NETPOLD_AGREEMENT_SCENARIOS` raises the count (default 300).

use std::fmt::Write as _;
use std::net::IpAddr;

use netpold::compile::compile;
use netpold::ir::Hook;
use netpold::ir::eval::{CtInfo, Packet, run};
use netpold::manifest::parse_bytes;
use netpold::model::{Model, Protocol};
use netpold::reference::{Party, Probe, evaluate};

const NODE: &str = "n1";
const HOST_V4: &str = "192.168.77.1";
const HOST_V6: &str = "fd77::1";
const OUTSIDE: [&str; 4] = ["192.0.2.1", "10.9.9.9", "2001:db8::1", "fd00::99"];

/// SplitMix64: small, seedable, good enough to spread scenarios.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const APPS: [&str; 3] = ["web", "db", "api"];
const TEAMS: [&str; 2] = ["red", "blue"];
const PORT_NAMES: [&str; 2] = ["http", "dns"];

fn selector(rng: &mut Rng, key: &str, values: &[&str]) -> String {
    match rng.below(6) {
        0 => "{}".into(),
        1 | 2 => format!("{{matchLabels: {{{key}: {}}}}}", rng.pick(values)),
        3 => format!(
            "{{matchExpressions: [{{key: {key}, operator: In, values: [{}, {}]}}]}}",
            rng.pick(values),
            rng.pick(values)
        ),
        4 => format!(
            "{{matchExpressions: [{{key: {key}, operator: NotIn, values: [{}]}}]}}",
            rng.pick(values)
        ),
        _ => {
            let op = if rng.chance(50) {
                "Exists"
            } else {
                "DoesNotExist"
            };
            format!("{{matchExpressions: [{{key: tier, operator: {op}}}]}}")
        }
    }
}

fn ip_block(rng: &mut Rng) -> String {
    match rng.below(6) {
        0 => "{cidr: 0.0.0.0/0}".into(),
        1 => "{cidr: 10.0.0.0/8, except: [10.0.0.0/30, 10.0.0.8/29]}".into(),
        2 => "{cidr: 10.0.0.0/28}".into(),
        3 => "{cidr: ::/0, except: [fd00::/126]}".into(),
        4 => "{cidr: fd00::/64}".into(),
        _ => "{cidr: 192.0.2.0/24, except: [192.0.2.0/31]}".into(),
    }
}

fn peers(rng: &mut Rng) -> String {
    let mut out = Vec::new();
    for _ in 0..1 + rng.below(2) {
        out.push(match rng.below(5) {
            0 => format!("{{podSelector: {}}}", selector(rng, "app", &APPS)),
            1 => format!("{{namespaceSelector: {}}}", selector(rng, "team", &TEAMS)),
            2 => format!(
                "{{namespaceSelector: {}, podSelector: {}}}",
                selector(rng, "team", &TEAMS),
                selector(rng, "app", &APPS)
            ),
            _ => format!("{{ipBlock: {}}}", ip_block(rng)),
        });
    }
    format!("[{}]", out.join(", "))
}

fn ports(rng: &mut Rng) -> Option<String> {
    if rng.chance(30) {
        return None;
    }
    let mut out = Vec::new();
    for _ in 0..1 + rng.below(2) {
        out.push(match rng.below(7) {
            0 => "{}".into(),
            1 => "{port: 80}".into(),
            2 => "{protocol: UDP, port: 53}".into(),
            3 => "{protocol: TCP, port: 8000, endPort: 8080}".into(),
            4 => format!("{{port: {}}}", rng.pick(&PORT_NAMES)),
            5 => "{protocol: UDP, port: dns}".into(),
            _ => "{protocol: SCTP}".into(),
        });
    }
    Some(format!("[{}]", out.join(", ")))
}

fn rules(rng: &mut Rng, peer_field: &str) -> String {
    let mut out = Vec::new();
    for _ in 0..rng.below(3) {
        let mut fields = Vec::new();
        if rng.chance(75) {
            fields.push(format!("{peer_field}: {}", peers(rng)));
        }
        if let Some(p) = ports(rng) {
            fields.push(format!("ports: {p}"));
        }
        out.push(format!("{{{}}}", fields.join(", ")));
    }
    format!("[{}]", out.join(", "))
}

struct Scenario {
    yaml: String,
    addresses: Vec<IpAddr>,
}

fn scenario(rng: &mut Rng) -> Scenario {
    let mut yaml = String::new();
    let namespaces = ["a", "b", "c"];
    for ns in &namespaces[..2] {
        let _ = writeln!(
            yaml,
            "---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {{team: {}}}}}",
            rng.pick(&TEAMS)
        );
    }
    let mut addresses = Vec::new();
    for i in 1..=2 + rng.below(5) {
        let ns = rng.pick(&namespaces);
        let node = if rng.chance(20) { "n2" } else { NODE };
        let mut ips = vec![format!("10.0.0.{i}")];
        if rng.chance(40) {
            ips.push(format!("fd00::{i}"));
        }
        addresses.extend(ips.iter().map(|s| s.parse::<IpAddr>().unwrap()));
        let tier = if rng.chance(50) { ", tier: x" } else { "" };
        let mut ports = Vec::new();
        if rng.chance(60) {
            ports.push(format!(
                "{{name: http, port: {}}}",
                if rng.chance(50) { 80 } else { 8080 }
            ));
        }
        if rng.chance(40) {
            ports.push("{name: dns, port: 53, protocol: UDP}".to_owned());
        }
        let _ = writeln!(
            yaml,
            "---\napiVersion: netpold.io/v1\nkind: WorkloadEndpoint\nmetadata: {{name: ep{i}, namespace: {ns}, labels: {{app: {}{tier}}}}}\nspec: {{node: {node}, interfaceName: veth{i}, ips: [{}], ports: [{}]}}",
            rng.pick(&APPS),
            ips.join(", "),
            ports.join(", ")
        );
    }
    for i in 0..1 + rng.below(4) {
        let ns = rng.pick(&namespaces);
        let mut spec = vec![format!("podSelector: {}", selector(rng, "app", &APPS))];
        match rng.below(4) {
            0 => {}
            1 => spec.push("policyTypes: [Ingress]".into()),
            2 => spec.push("policyTypes: [Egress]".into()),
            _ => spec.push("policyTypes: [Ingress, Egress]".into()),
        }
        if rng.chance(70) {
            spec.push(format!("ingress: {}", rules(rng, "from")));
        }
        if rng.chance(60) {
            spec.push(format!("egress: {}", rules(rng, "to")));
        }
        let _ = writeln!(
            yaml,
            "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p{i}, namespace: {ns}}}\nspec: {{{}}}",
            spec.join(", ")
        );
    }
    Scenario { yaml, addresses }
}

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
    let probe_ports = [
        (Protocol::Tcp, 80),
        (Protocol::Tcp, 8080),
        (Protocol::Tcp, 8001),
        (Protocol::Tcp, 22),
        (Protocol::Udp, 53),
        (Protocol::Udp, 80),
        (Protocol::Sctp, 80),
    ];
    let mut rng = Rng(0x6e70_6f6c_6421);
    let (mut probes, mut allowed) = (0usize, 0usize);
    for n in 0..scenarios {
        let s = scenario(&mut rng);
        let mut problems = Vec::new();
        let raw = parse_bytes("scenario.yaml", s.yaml.as_bytes(), &mut problems);
        let (model, model_problems) = Model::build(&raw);
        problems.extend(model_problems);
        assert!(
            problems.is_empty(),
            "scenario {n} invalid: {problems:?}\n{}",
            s.yaml
        );
        let ruleset = compile(&model, NODE, "netpold");
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
                let probe = Probe {
                    src,
                    dst,
                    protocol,
                    port,
                };
                let expected = evaluate(&model, NODE, &probe);
                let trace = run(&ruleset, &packet(&model, &probe));
                assert_eq!(
                    trace.accepted,
                    expected.allowed,
                    "scenario {n}: {src} -> {dst} {protocol}/{port}\nreference: {expected:#?}\nrules taken: {:?}\n{}\n{}",
                    trace.path,
                    s.yaml,
                    netpold::render::render(&ruleset)
                );
                probes += 1;
                allowed += usize::from(expected.allowed);
            }
        }
    }
    eprintln!(
        "agreement: {scenarios} scenarios, {probes} probes ({allowed} allowed, {} denied), 0 disagreements",
        probes - allowed
    );
    // Both outcomes must be well represented, or the test proves little.
    assert!(
        allowed * 10 > probes && (probes - allowed) * 10 > probes,
        "{allowed} of {probes} allowed"
    );
}
