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
        out.push(match rng.below(8) {
            0 => "{}".into(),
            1 => "{port: 80}".into(),
            2 => "{protocol: UDP, port: 53}".into(),
            3 => "{protocol: TCP, port: 8000, endPort: 8080}".into(),
            4 => format!("{{port: {}}}", rng.pick(&PORT_NAMES)),
            5 => "{protocol: UDP, port: dns}".into(),
            // More than 4 ranges of one protocol: one set for all of them.
            6 => "{port: 22}, {port: 53}, {port: 443}, {port: 9000}, {port: 8000, endPort: 8080}"
                .into(),
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

/// A random selector expression over `key` (Calico syntax).
fn expression(rng: &mut Rng, key: &str, values: &[&str], depth: usize) -> String {
    let v = rng.pick(values);
    let w = rng.pick(values);
    let atom = match rng.below(7) {
        0 => format!("{key} == '{v}'"),
        1 => format!("{key} != '{v}'"),
        2 => format!("{key} in {{'{v}', '{w}'}}"),
        3 => format!("{key} not in {{'{v}'}}"),
        4 => "has(tier)".to_owned(),
        5 => "!has(tier)".to_owned(),
        _ => "all()".to_owned(),
    };
    if depth == 0 || rng.chance(50) {
        return atom;
    }
    let other = expression(rng, key, values, depth - 1);
    if rng.chance(50) {
        format!("{atom} && ({other})")
    } else {
        format!("({atom}) || {other}")
    }
}

/// One `source` or `destination` of a netpold.io rule.
fn entity(rng: &mut Rng, ports: bool) -> String {
    let mut fields = Vec::new();
    if rng.chance(50) {
        fields.push(format!(
            "selector: \"{}\"",
            expression(rng, "app", &APPS, 1)
        ));
    }
    if rng.chance(25) {
        fields.push(format!(
            "namespaceSelector: \"{}\"",
            expression(rng, "team", &TEAMS, 0)
        ));
    }
    if rng.chance(25) {
        fields.push(
            rng.pick(&[
                "nets: [10.0.0.0/30]",
                "nets: [10.0.0.0/24, 'fd00::/120']",
                "nets: ['fd00::/126']",
                "nets: [0.0.0.0/0]",
            ])
            .to_owned(),
        );
    }
    if rng.chance(25) {
        fields.push(
            rng.pick(&[
                "notNets: [10.0.0.2/32]",
                "notNets: [10.0.0.4/30, 'fd00::3/128']",
            ])
            .to_owned(),
        );
    }
    if ports && rng.chance(60) {
        fields.push(
            rng.pick(&[
                "ports: [80]",
                "ports: [53, '8000:8080']",
                "ports: [http, 22]",
                "ports: [dns]",
                // More than 4 ranges: one set for all of them.
                "ports: [22, 53, 80, 443, '8000:8080', 9000, http]",
            ])
            .to_owned(),
        );
    }
    if ports && rng.chance(30) {
        fields.push(
            rng.pick(&[
                "notPorts: [80]",
                "notPorts: ['8000:8080', 22]",
                "notPorts: [http]",
                "notPorts: [dns, 22]",
            ])
            .to_owned(),
        );
    }
    format!("{{{}}}", fields.join(", "))
}

/// 1-3 random `netpold.io/v1` NetworkPolicies and GlobalNetworkPolicies, at orders
/// around the Kubernetes policies' 1000 (and some without order), with every action.
pub fn tiered_policies(rng: &mut Rng) -> String {
    let mut yaml = String::new();
    for i in 0..1 + rng.below(3) {
        let global = rng.chance(40);
        let mut spec = Vec::new();
        match rng.below(5) {
            0 => {}
            1 => spec.push("order: 1000".to_owned()),
            n => spec.push(format!("order: {}", (n - 2) * 800 + 100)),
        }
        spec.push(format!(
            "selector: \"{}\"",
            expression(rng, "app", &APPS, 1)
        ));
        if global && rng.chance(50) {
            spec.push(format!(
                "namespaceSelector: \"{}\"",
                expression(rng, "team", &TEAMS, 0)
            ));
        }
        for direction in ["ingress", "egress"] {
            if !rng.chance(60) {
                continue;
            }
            let mut rules = Vec::new();
            for _ in 0..rng.below(4) {
                let action = rng.pick(&["Allow", "Deny", "Log", "Pass", "Allow", "Deny"]);
                let mut fields = vec![format!("action: {action}")];
                let protocol = rng.below(6);
                match protocol {
                    0 => fields.push("protocol: TCP".into()),
                    1 => fields.push("protocol: UDP".into()),
                    2 => fields.push(
                        rng.pick(&[
                            "protocol: ICMP, icmp: {type: 8}",
                            "protocol: ICMPv6, notICMP: {type: 128}",
                            "protocol: 47",
                            "protocol: 6",
                        ])
                        .to_owned(),
                    ),
                    _ => {}
                }
                if rng.chance(15) {
                    fields.push(rng.pick(&["ipVersion: 4", "ipVersion: 6"]).to_owned());
                }
                if rng.chance(60) {
                    fields.push(format!("source: {}", entity(rng, protocol < 2)));
                }
                if rng.chance(60) {
                    fields.push(format!("destination: {}", entity(rng, protocol < 2)));
                }
                rules.push(format!("{{{}}}", fields.join(", ")));
            }
            spec.push(format!("{direction}: [{}]", rules.join(", ")));
        }
        let meta = if global {
            format!("kind: GlobalNetworkPolicy\nmetadata: {{name: g{i}}}")
        } else {
            format!(
                "kind: NetworkPolicy\nmetadata: {{name: t{i}, namespace: {}}}",
                rng.pick(&["a", "b", "c"])
            )
        };
        let _ = writeln!(
            yaml,
            "---\napiVersion: netpold.io/v1\n{meta}\nspec: {{{}}}",
            spec.join(", ")
        );
    }
    yaml
}

/// `edited`, and now and then a netpold.io policy's order, actions or selectors changed.
pub fn edited_tiered(yaml: &str, rng: &mut Rng) -> String {
    match rng.below(4) {
        0 => yaml
            .replacen("order: 100", "order: 1700", 1)
            .replacen("order: 900", "order: 50", 1),
        1 => yaml.replacen("action: Allow", "action: Pass", 1).replacen(
            "action: Deny",
            "action: Allow",
            1,
        ),
        _ => edited(yaml, rng),
    }
}

/// Random AdminNetworkPolicies (priorities 0-1000, Allow/Deny/Pass) and now and then
/// the BaselineAdminNetworkPolicy, over the scenario's labels.
pub fn admin_policies(rng: &mut Rng) -> String {
    let mut yaml = String::new();
    let count = rng.below(3);
    for i in 0..count + 1 {
        let baseline = i == count;
        if baseline && !rng.chance(60) {
            break;
        }
        let mut spec = Vec::new();
        if !baseline {
            spec.push(format!(
                "priority: {}",
                rng.pick(&["0", "5", "10", "500", "1000"])
            ));
        }
        let subject = if rng.chance(40) {
            format!("{{namespaces: {}}}", selector(rng, "team", &TEAMS))
        } else {
            format!(
                "{{pods: {{namespaceSelector: {}, podSelector: {}}}}}",
                selector(rng, "team", &TEAMS),
                selector(rng, "app", &APPS)
            )
        };
        spec.push(format!("subject: {subject}"));
        for (direction, peer_field) in [("ingress", "from"), ("egress", "to")] {
            if !rng.chance(60) {
                continue;
            }
            let mut rules = Vec::new();
            for r in 0..1 + rng.below(3) {
                let actions: &[&str] = if baseline {
                    &["Allow", "Deny"]
                } else {
                    &["Allow", "Deny", "Pass"]
                };
                let mut fields = vec![
                    format!("name: r{r}"),
                    format!("action: {}", rng.pick(actions)),
                ];
                let mut peers = Vec::new();
                for _ in 0..1 + rng.below(2) {
                    peers.push(match rng.below(if direction == "egress" { 4 } else { 3 }) {
                        0 => format!("{{namespaces: {}}}", selector(rng, "team", &TEAMS)),
                        3 => format!(
                            "{{networks: [{}]}}",
                            rng.pick(&["10.0.0.0/8", "192.0.2.0/24", "::/0", "0.0.0.0/0"])
                        ),
                        _ => format!(
                            "{{pods: {{namespaceSelector: {}, podSelector: {}}}}}",
                            selector(rng, "team", &TEAMS),
                            selector(rng, "app", &APPS)
                        ),
                    });
                }
                fields.push(format!("{peer_field}: [{}]", peers.join(", ")));
                if rng.chance(60) {
                    let port = match rng.below(4) {
                        0 => "{portNumber: {protocol: TCP, port: 80}}".to_owned(),
                        1 => "{portNumber: {protocol: UDP, port: 53}}".to_owned(),
                        2 => "{portRange: {protocol: TCP, start: 8000, end: 8080}}".to_owned(),
                        _ => format!("{{namedPort: {}}}", rng.pick(&PORT_NAMES)),
                    };
                    fields.push(format!("ports: [{port}]"));
                }
                rules.push(format!("{{{}}}", fields.join(", ")));
            }
            spec.push(format!("{direction}: [{}]", rules.join(", ")));
        }
        let meta = if baseline {
            "kind: BaselineAdminNetworkPolicy\nmetadata: {name: default}".to_owned()
        } else {
            format!("kind: AdminNetworkPolicy\nmetadata: {{name: anp{i}}}")
        };
        let _ = writeln!(
            yaml,
            "---\napiVersion: policy.networking.k8s.io/v1alpha1\n{meta}\nspec: {{{}}}",
            spec.join(", ")
        );
    }
    yaml
}
