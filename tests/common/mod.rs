//! Shared by the integration tests: a seedable random scenario generator that writes
//! manifests as YAML text, and helpers for network namespaces.
#![allow(dead_code)]

pub mod netns;
pub mod topology;

use std::fmt::Write as _;
use std::net::IpAddr;

pub const NODE: &str = "n1";

/// SplitMix64: small, seedable, good enough to spread scenarios.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
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

pub struct Scenario {
    /// One YAML document per object, each starting with `---`.
    pub yaml: String,
    pub addresses: Vec<IpAddr>,
}

pub fn scenario(rng: &mut Rng) -> Scenario {
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
        // Now and then more addresses than an anti-spoofing rule lists inline (they
        // are members of sets, but not probed, to keep the probe count down).
        if rng.chance(10) {
            ips.extend((1..=9).map(|k| format!("10.{i}.0.{k}")));
        }
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

/// The scenario with one object edited as an operator would: removed (not a
/// namespace), relabelled, moved to another node or address, its ports changed, or a
/// new endpoint added.
pub fn edited(yaml: &str, rng: &mut Rng) -> String {
    let docs: Vec<&str> = yaml
        .split("---\n")
        .filter(|d| !d.trim().is_empty())
        .collect();
    let pick = rng.below(docs.len());
    let mut out = String::new();
    for (i, doc) in docs.iter().enumerate() {
        let doc = if i != pick {
            doc.to_string()
        } else {
            match rng.below(6) {
                0 if !doc.contains("kind: Namespace") => continue,
                1 => doc
                    .replace("app: ", "app: x")
                    .replace("team: ", "team: y")
                    .replace("port: 80", "port: 81"),
                2 => doc
                    .replace(&format!("node: {NODE}"), "node: n9")
                    .replace("node: n2", &format!("node: {NODE}"))
                    .replace("Egress]", "Ingress]"),
                3 => doc
                    .replace("10.0.0.", "10.0.1.")
                    .replace("team: ", "team: z"),
                4 => {
                    let n = rng.below(1000);
                    out.push_str(&format!(
                        "---\napiVersion: netpold.io/v1\nkind: WorkloadEndpoint\nmetadata: {{name: new{n}, namespace: {}, labels: {{app: {}}}}}\nspec: {{node: {NODE}, interfaceName: vnew{n}, ips: [10.9.{}.{}], ports: [{{name: http, port: 8080}}]}}\n",
                        rng.pick(&["a", "b", "c"]),
                        rng.pick(&APPS),
                        n / 250,
                        n % 250 + 1
                    ));
                    doc.to_string()
                }
                _ => doc.replace("labels: {", "labels: {extra: z, "),
            }
        };
        out.push_str("---\n");
        out.push_str(&doc);
    }
    out
}
