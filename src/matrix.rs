//! Who can reach whom: every ordered pair of endpoints (workload endpoints, then host
//! endpoints with `expectedIPs` as `host:NAME`), on a list of ports, each
//! flow decided by `explain::Explainer` (so by the compiled rules of each side's
//! node), printed as a terminal table, CSV, JSON, a Graphviz digraph or a
//! self-contained HTML page.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::explain::{ExplainError, Explainer, Party, Port, verdict_word};
use crate::model::tiered::{PortItem, RuleProtocol};
use crate::model::{Direction, Endpoint, Model, PortMatch, Protocol};

/// The port checked when neither the command line, the policies nor the
/// destination name one.
pub const FALLBACK_PORT: Port = Port {
    protocol: Protocol::Tcp,
    number: 80,
};

/// One port of one pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortResult {
    pub port: Port,
    pub allowed: bool,
    pub decided_by: Option<Direction>,
    /// The rules that allow it, or the policies of the direction that denies it.
    pub by: Vec<String>,
    /// Why, in one line.
    pub reason: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Allowed,
    Denied,
    /// Some ports allowed, some denied.
    Partial,
    /// An endpoint and itself (or two host endpoints of one host): its own traffic
    /// never passes through the host's filter.
    Itself,
    /// No address family in common: no flow to decide.
    NoPath,
}

impl Status {
    pub fn word(self) -> &'static str {
        match self {
            Status::Allowed => "allowed",
            Status::Denied => "denied",
            Status::Partial => "partial",
            Status::Itself => "itself",
            Status::NoPath => "n/a",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cell {
    Itself,
    NoPath(String),
    Ports(Vec<PortResult>),
}

impl Cell {
    pub fn status(&self) -> Status {
        match self {
            Cell::Itself => Status::Itself,
            Cell::NoPath(_) => Status::NoPath,
            Cell::Ports(ports) => match ports.iter().filter(|p| p.allowed).count() {
                0 => Status::Denied,
                n if n == ports.len() => Status::Allowed,
                _ => Status::Partial,
            },
        }
    }

    /// What a hover shows: one line per port.
    pub fn detail(&self) -> String {
        match self {
            Cell::Itself => "itself".to_owned(),
            Cell::NoPath(why) => why.clone(),
            Cell::Ports(ports) => ports
                .iter()
                .map(|p| format!("{}: {}", p.port, p.reason))
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matrix {
    /// `namespace/name` (or `host:NAME`), rows and columns alike.
    pub endpoints: Vec<String>,
    /// Whether the ports came from the command line (else: `default_ports`).
    pub ports_given: bool,
    /// `cells[from][to]`.
    pub cells: Vec<Vec<Cell>>,
    /// The ports checked towards each destination (column).
    pub ports: Vec<Vec<Port>>,
}

/// The ports a destination is checked on when the command line names none: every
/// port number a policy rule names (the first of an `endPort` range or a range of
/// `ports`) with its protocol, and every named port the destination declares;
/// `FALLBACK_PORT` if that is nothing.
pub fn default_ports(model: &Model, dst: &Endpoint) -> Vec<Port> {
    ports_named(
        model,
        dst.ports.iter().map(|named| Port {
            protocol: named.protocol,
            number: named.port,
        }),
    )
}

/// The ports a destination that declares none (a host endpoint) is checked on.
pub fn policy_ports(model: &Model) -> Vec<Port> {
    ports_named(model, std::iter::empty())
}

/// The ports the policies name, and `own` (a destination's named ports).
fn ports_named(model: &Model, own: impl Iterator<Item = Port>) -> Vec<Port> {
    let mut out: BTreeSet<Port> = own.collect();
    for policy in model.tiered.values() {
        for direction in Direction::BOTH {
            for rule in policy.rules(direction).unwrap_or_default() {
                let Some(RuleProtocol::Ported(protocol)) = rule.protocol else {
                    continue;
                };
                for item in &rule.destination.ports {
                    if let PortItem::Range(first, _) = item {
                        out.insert(Port {
                            protocol,
                            number: *first,
                        });
                    }
                }
            }
        }
    }
    for policy in model.policies.values() {
        for direction in Direction::BOTH {
            for rule in policy.rules(direction).unwrap_or_default() {
                for spec in &rule.ports {
                    if let PortMatch::Range(first, _) = spec.port {
                        out.insert(Port {
                            protocol: spec.protocol,
                            number: first,
                        });
                    }
                }
            }
        }
    }
    if out.is_empty() {
        out.insert(FALLBACK_PORT);
    }
    out.into_iter().collect()
}

/// One row and column: a workload endpoint or a host endpoint.
struct End {
    party: Party,
    id: String,
    /// Its ports checked when the command line names none.
    default_ports: Vec<Port>,
}

/// Decides every ordered pair of the endpoints (of `namespace`, when given; else the
/// host endpoints with `expectedIPs` too) on `ports`, or on each destination's
/// `default_ports` when `ports` is empty.
pub fn build(x: &mut Explainer, namespace: Option<&str>, ports: &[Port]) -> Matrix {
    let model = x.model();
    let mut ends: Vec<End> = model
        .endpoints
        .values()
        .filter(|ep| namespace.is_none_or(|ns| ep.namespace == ns))
        .map(|ep| End {
            party: Party::Endpoint(ep.namespace.clone(), ep.name.clone()),
            id: ep.id(),
            default_ports: default_ports(model, ep),
        })
        .collect();
    // A host endpoint without expectedIPs has no address to send from or to.
    ends.extend(
        model
            .hosts
            .values()
            .filter(|h| namespace.is_none() && !h.expected_ips.is_empty())
            .map(|h| End {
                party: Party::Host(h.name.clone()),
                id: h.id(),
                default_ports: policy_ports(model),
            }),
    );
    let col_ports: Vec<Vec<Port>> = ends
        .iter()
        .map(|end| {
            if ports.is_empty() {
                end.default_ports.clone()
            } else {
                ports.to_vec()
            }
        })
        .collect();
    let mut cells = Vec::with_capacity(ends.len());
    for (i, from) in ends.iter().enumerate() {
        let mut row = Vec::with_capacity(ends.len());
        for (j, to) in ends.iter().enumerate() {
            if i == j {
                row.push(Cell::Itself);
                continue;
            }
            let mut results = Vec::new();
            let mut no_path = None;
            let mut itself = false;
            for &port in &col_ports[j] {
                match x.explain_each_family(&from.party, &to.party, port) {
                    Ok(each) => {
                        // Allowed only if every family both ends have is: the first
                        // family that is denied explains the cell.
                        let split =
                            each.iter().any(|e| e.allowed) && each.iter().any(|e| !e.allowed);
                        let e = each.iter().find(|e| !e.allowed).unwrap_or(&each[0]);
                        let mut why = reason(e);
                        if split {
                            let family = if e.from.ip.is_ipv4() { "IPv4" } else { "IPv6" };
                            why = format!("{why} (over {family}; the other family is allowed)");
                        }
                        results.push(PortResult {
                            port,
                            allowed: e.allowed,
                            decided_by: e.decided_by,
                            by: e.deciding(),
                            reason: why,
                        })
                    }
                    Err(
                        err @ (ExplainError::NoCommonFamily { .. } | ExplainError::NoAddress(_)),
                    ) => {
                        no_path = Some(err.to_string());
                        break;
                    }
                    // Two host endpoints of one host.
                    Err(ExplainError::Itself(_)) => {
                        itself = true;
                        break;
                    }
                    Err(err) => unreachable!("pairs of distinct endpoints: {err}"),
                }
            }
            row.push(match no_path {
                _ if itself => Cell::Itself,
                Some(why) => Cell::NoPath(why),
                None => Cell::Ports(results),
            });
        }
        cells.push(row);
    }
    Matrix {
        endpoints: ends.into_iter().map(|end| end.id).collect(),
        ports_given: !ports.is_empty(),
        cells,
        ports: col_ports,
    }
}

/// One line: the verdict and the policy rule or policies behind it.
pub fn reason(e: &crate::explain::Explanation) -> String {
    match (e.allowed, e.decided_by) {
        (true, _) => {
            let by = e.deciding();
            if by.is_empty() {
                "allowed: neither the sender's egress nor the receiver's ingress is isolated"
                    .to_owned()
            } else {
                format!("allowed by {}", by.join(" and "))
            }
        }
        (false, Some(d)) => format!("denied by {d}: {}", e.side(d).reason),
        (false, None) if e.decided_by_host.is_some() => {
            let host = e.decided_by_host.as_deref().unwrap_or_default();
            let why = e
                .hosts
                .iter()
                .find(|s| !s.allowed && s.endpoint.as_deref() == Some(host))
                .map_or("", |s| s.reason.as_str());
            format!("denied by {host} (forwarded): {why}")
        }
        (false, None) => {
            let side = if e.egress.allowed {
                &e.ingress
            } else {
                &e.egress
            };
            format!("denied: {}", side.reason)
        }
    }
}

fn ports_text(ports: &[Port]) -> String {
    ports
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Which ports were checked: one line for all columns, or one per distinct list.
fn ports_legend(m: &Matrix) -> Vec<String> {
    let mut by_list: BTreeMap<&[Port], Vec<usize>> = BTreeMap::new();
    for (j, ports) in m.ports.iter().enumerate() {
        by_list.entry(ports).or_default().push(j + 1);
    }
    if by_list.len() <= 1 {
        let list = by_list
            .keys()
            .next()
            .map_or(String::new(), |p| ports_text(p));
        let source = if m.ports_given {
            ""
        } else {
            " (default: ports the policies and destinations name)"
        };
        return vec![format!("ports: {list}{source}")];
    }
    let mut out = vec![
        "ports per destination (default: ports the policies and the destination name):".to_owned(),
    ];
    for (ports, cols) in by_list {
        let cols: Vec<String> = cols.iter().map(ToString::to_string).collect();
        out.push(format!("  to {}: {}", cols.join(","), ports_text(ports)));
    }
    out
}

fn mark(status: Status) -> char {
    match status {
        Status::Allowed => '✓',
        Status::Denied => '✗',
        Status::Partial => '~',
        Status::Itself => '·',
        Status::NoPath => ' ',
    }
}

fn has_no_path(m: &Matrix) -> bool {
    m.cells
        .iter()
        .flatten()
        .any(|c| matches!(c, Cell::NoPath(_)))
}

/// A compact terminal table: rows are senders, columns receivers, numbered alike.
pub fn table(m: &Matrix) -> String {
    let n = m.endpoints.len();
    let digits = n.to_string().len();
    let name_width = m
        .endpoints
        .iter()
        .map(|e| e.chars().count())
        .max()
        .unwrap_or(0);
    let lead = digits + 1 + name_width + 2;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "from (rows) -> to (columns): ✓ allowed, ✗ denied, ~ some ports allowed, · itself{}",
        if has_no_path(m) {
            ", blank: no address family in common"
        } else {
            ""
        }
    );
    for line in ports_legend(m) {
        let _ = writeln!(out, "{line}");
    }
    // Column numbers, written downwards.
    for d in 0..digits {
        let mut line = " ".repeat(lead);
        for j in 1..=n {
            let s = format!("{j:>digits$}");
            line.push(s.as_bytes()[d] as char);
            line.push(' ');
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    for (i, name) in m.endpoints.iter().enumerate() {
        let mut line = format!("{:>digits$} {name:<name_width$}  ", i + 1);
        for cell in &m.cells[i] {
            line.push(mark(cell.status()));
            line.push(' ');
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// One line per pair and port: `from,to,protocol,port,verdict,decided_by,by,reason`.
pub fn csv(m: &Matrix) -> String {
    let mut out = String::from("from,to,protocol,port,verdict,decided_by,by,reason\n");
    for (i, row) in m.cells.iter().enumerate() {
        for (j, cell) in row.iter().enumerate() {
            let (from, to) = (&m.endpoints[i], &m.endpoints[j]);
            match cell {
                Cell::Itself => {}
                Cell::NoPath(why) => {
                    let _ = writeln!(out, "{from},{to},,,n/a,,,{}", csv_field(why));
                }
                Cell::Ports(ports) => {
                    for p in ports {
                        let _ = writeln!(
                            out,
                            "{from},{to},{},{},{},{},{},{}",
                            p.port.protocol,
                            p.port.number,
                            verdict_word(p.allowed),
                            p.decided_by.map(|d| d.to_string()).unwrap_or_default(),
                            csv_field(&p.by.join(";")),
                            csv_field(&p.reason)
                        );
                    }
                }
            }
        }
    }
    out
}

/// The JSON form (see the README): endpoints, and one object per ordered pair, a
/// line each. Written cell by cell, so a matrix of a few hundred endpoints never
/// holds its whole JSON tree in memory.
pub fn json(m: &Matrix) -> String {
    let head = serde_json::json!({
        "endpoints": m.endpoints,
        "ports": if m.ports_given { "given" } else { "default" },
    })
    .to_string();
    // `head` ends in `}`: the cells go in as its last member.
    let mut out = format!("{},\"cells\":[", &head[..head.len() - 1]);
    let mut first = true;
    for (i, row) in m.cells.iter().enumerate() {
        for (j, cell) in row.iter().enumerate() {
            let ports: Vec<serde_json::Value> = match cell {
                Cell::Itself => continue,
                Cell::NoPath(_) => Vec::new(),
                Cell::Ports(ports) => ports
                    .iter()
                    .map(|p| {
                        serde_json::json!({
                            "protocol": p.port.protocol.to_string(),
                            "port": p.port.number,
                            "verdict": verdict_word(p.allowed),
                            "decided_by": p.decided_by.map(|d| d.to_string()),
                            "by": p.by,
                            "reason": p.reason,
                        })
                    })
                    .collect(),
            };
            let mut obj = serde_json::json!({
                "from": m.endpoints[i],
                "to": m.endpoints[j],
                "verdict": cell.status().word(),
                "ports": ports,
            });
            if let Cell::NoPath(why) = cell {
                obj["reason"] = why.clone().into();
            }
            out.push_str(if first { "\n" } else { ",\n" });
            first = false;
            out.push_str(&obj.to_string());
        }
    }
    out.push_str("\n]}\n");
    out
}

fn dot_id(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A Graphviz digraph: every endpoint a node, an edge per pair with an allowed port,
/// labelled with the ports it allows.
pub fn dot(m: &Matrix) -> String {
    let mut out = String::from(
        "digraph reachability {\n  rankdir=LR;\n  node [shape=box, fontname=\"sans-serif\"];\n  edge [fontname=\"sans-serif\", fontsize=10];\n",
    );
    for e in &m.endpoints {
        let _ = writeln!(out, "  {};", dot_id(e));
    }
    for (i, row) in m.cells.iter().enumerate() {
        for (j, cell) in row.iter().enumerate() {
            let Cell::Ports(ports) = cell else { continue };
            let allowed: Vec<Port> = ports.iter().filter(|p| p.allowed).map(|p| p.port).collect();
            if allowed.is_empty() {
                continue;
            }
            let _ = writeln!(
                out,
                "  {} -> {} [label={}];",
                dot_id(&m.endpoints[i]),
                dot_id(&m.endpoints[j]),
                dot_id(&ports_text(&allowed))
            );
        }
    }
    out.push_str("}\n");
    out
}

/// Colours of the HTML matrix (the tests look for the first two in a screenshot).
pub const HTML_ALLOWED: &str = "#2e9d4a";
pub const HTML_DENIED: &str = "#d64541";
pub const HTML_PARTIAL: &str = "#f0ad4e";
const HTML_ITSELF: &str = "#d0d0d0";

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// JSON that is safe inside `<script>`.
fn script_json(v: &serde_json::Value) -> String {
    v.to_string().replace("</", "<\\/")
}

/// One self-contained page: a colour matrix whose cells show, on hover, the
/// verdict per port and the policy rule or policies behind it. No external
/// resources. Per-cell details are kept once per distinct text and looked up by a
/// few lines of script, so a few hundred endpoints stay a page of a few megabytes.
pub fn html(m: &Matrix, title: &str) -> String {
    let class = |s: Status| match s {
        Status::Allowed => "a",
        Status::Denied => "d",
        Status::Partial => "p",
        Status::Itself => "s",
        Status::NoPath => "n",
    };
    let mut texts: Vec<String> = Vec::new();
    let mut text_index: BTreeMap<String, usize> = BTreeMap::new();
    let mut refs: Vec<Vec<usize>> = Vec::new();
    for row in &m.cells {
        refs.push(
            row.iter()
                .map(|cell| {
                    let text = format!("{}\n{}", cell.status().word(), cell.detail());
                    let next = texts.len();
                    *text_index.entry(text.clone()).or_insert_with(|| {
                        texts.push(text);
                        next
                    })
                })
                .collect(),
        );
    }
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body{{font:13px sans-serif;margin:12px;color:#222}}
table{{border-collapse:collapse}}
td{{width:{cell}px;height:{cell}px;padding:0;border:1px solid #fff}}
td.a{{background:{HTML_ALLOWED}}} td.d{{background:{HTML_DENIED}}} td.p{{background:{HTML_PARTIAL}}}
td.s{{background:{HTML_ITSELF}}} td.n{{background:#fff;border-color:#ddd}}
td:hover{{outline:2px solid #000}}
th{{font-weight:normal;white-space:nowrap;padding:0 4px 0 0}}
th.r{{text-align:right}}
th.c{{writing-mode:vertical-rl;transform:rotate(180deg);text-align:left;padding:0 0 4px 0}}
.k{{display:inline-block;width:12px;height:12px;vertical-align:middle;margin:0 4px 0 12px}}
</style></head><body>
<h1 style="font-size:16px">{title}</h1>
<p>Rows send, columns receive. <span class="k" style="background:{HTML_ALLOWED}"></span>allowed<span class="k" style="background:{HTML_DENIED}"></span>denied<span class="k" style="background:{HTML_PARTIAL}"></span>some ports allowed<span class="k" style="background:{HTML_ITSELF}"></span>itself{no_path}. Hover over a cell for the verdict per port and the policy behind it.</p>
"#,
        title = html_escape(title),
        no_path = if has_no_path(m) {
            r#"<span class="k" style="background:#fff;border:1px solid #ddd"></span>no address family in common"#
        } else {
            ""
        },
        // Big cells for a few endpoints, small ones so that hundreds fit a screen or two.
        cell = match m.endpoints.len() {
            0..=30 => 24,
            31..=100 => 18,
            _ => 14,
        }
    );
    for line in ports_legend(m) {
        let _ = writeln!(out, "<p>{}</p>", html_escape(&line));
    }
    out.push_str("<table id=\"m\"><tr><th></th>");
    for e in &m.endpoints {
        let _ = write!(out, "<th class=\"c\">{}</th>", html_escape(e));
    }
    out.push_str("</tr>\n");
    for (i, row) in m.cells.iter().enumerate() {
        let _ = write!(
            out,
            "<tr><th class=\"r\">{}</th>",
            html_escape(&m.endpoints[i])
        );
        for cell in row {
            // Closing tags of cells are optional in HTML; leaving them out keeps big pages small.
            let _ = write!(out, "<td class={}>", class(cell.status()));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n<script>\n");
    let _ = writeln!(
        out,
        "const N={};",
        script_json(&serde_json::json!(m.endpoints))
    );
    let _ = writeln!(out, "const T={};", script_json(&serde_json::json!(texts)));
    let _ = writeln!(out, "const C={};", script_json(&serde_json::json!(refs)));
    out.push_str(
        "document.getElementById('m').addEventListener('mouseover',function(e){\n\
         var t=e.target;if(t.tagName!=='TD'||t.title)return;\n\
         var r=t.parentNode.rowIndex-1,c=t.cellIndex-1;\n\
         t.title=N[r]+' \\u2192 '+N[c]+': '+T[C[r][c]];});\n</script>\n</body></html>\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(yaml: &str) -> Model {
        crate::model::from_valid_yaml(yaml)
    }

    const THREE: &str = "
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {name: web, namespace: a, labels: {app: web}}
spec: {node: n1, interfaceName: veth-web, ips: [10.0.0.1]}
---
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {name: db, namespace: a, labels: {app: db}}
spec: {node: n1, interfaceName: veth-db, ips: [10.0.0.2], ports: [{name: pg, port: 5432}]}
---
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {name: six, namespace: b, labels: {app: six}}
spec: {node: n1, interfaceName: veth-six, ips: ['fd00::6']}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-from-web, namespace: a}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: 5432}]}]
";

    fn matrix(ports: &[Port], ns: Option<&str>) -> Matrix {
        let m = model(THREE);
        let mut x = Explainer::new(&m, "n1", "netpold");
        build(&mut x, ns, ports)
    }

    fn tcp(n: u16) -> Port {
        Port {
            protocol: Protocol::Tcp,
            number: n,
        }
    }

    #[test]
    fn default_ports_are_those_the_policies_and_the_destination_name() {
        let m = matrix(&[], None);
        assert_eq!(m.endpoints, ["a/db", "a/web", "b/six"]);
        assert!(m.ports.iter().all(|p| p == &[tcp(5432)]), "{:?}", m.ports);
        assert_eq!(m.cells[1][0].status(), Status::Allowed);
        assert_eq!(m.cells[0][1].status(), Status::Allowed);
        assert_eq!(m.cells[0][0].status(), Status::Itself);
        assert_eq!(m.cells[2][0].status(), Status::NoPath);
    }

    /// Host endpoints with expectedIPs are rows and columns `host:NAME` after the
    /// workloads, decided as `explain` decides them: the host's policy (and its
    /// failsafe ports) to and from the host, the host's own workloads always reachable
    /// from it, two host endpoints of one host itself.
    #[test]
    fn host_endpoints_are_rows_and_columns() {
        let m = model(&format!(
            "{THREE}---
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {{name: r1, namespace: c}}
spec: {{node: n2, interfaceName: veth-r1, ips: [10.5.0.1]}}
---
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {{name: r2, namespace: c}}
spec: {{node: n2, interfaceName: veth-r2, ips: [10.5.0.2]}}
---
apiVersion: netpold.io/v1
kind: HostEndpoint
metadata: {{name: uplink, labels: {{role: edge}}}}
spec: {{node: n1, interfaceName: eth0, expectedIPs: [192.0.2.10]}}
---
apiVersion: netpold.io/v1
kind: HostEndpoint
metadata: {{name: mgmt, labels: {{role: mgmt}}}}
spec: {{node: n1, interfaceName: eth1, expectedIPs: [192.0.2.11]}}
---
apiVersion: netpold.io/v1
kind: HostEndpoint
metadata: {{name: bare}}
spec: {{node: n1, interfaceName: eth2}}
---
apiVersion: netpold.io/v1
kind: GlobalNetworkPolicy
metadata: {{name: edge}}
spec:
  selector: role == 'edge'
  types: [Ingress, Egress]
  ingress:
  - {{action: Allow, protocol: TCP, source: {{nets: [10.5.0.1/32]}}, destination: {{ports: [443]}}}}
  egress:
  - {{action: Allow, protocol: TCP, destination: {{selector: app == 'db'}}}}
"
        ));
        let mut x = Explainer::new(&m, "n1", "netpold");
        let mx = build(&mut x, None, &[tcp(443), tcp(5432)]);
        // The host endpoint without an address is left out.
        assert_eq!(
            mx.endpoints,
            [
                "a/db",
                "a/web",
                "b/six",
                "c/r1",
                "c/r2",
                "host:mgmt",
                "host:uplink"
            ]
        );
        let at = |from: &str, to: &str| {
            let i = mx.endpoints.iter().position(|e| e == from).unwrap();
            let j = mx.endpoints.iter().position(|e| e == to).unwrap();
            &mx.cells[i][j]
        };
        // Through the uplink, r1 may reach the host on 443 only; r2 on neither port.
        assert_eq!(at("c/r1", "host:uplink").status(), Status::Partial);
        assert_eq!(at("c/r2", "host:uplink").status(), Status::Denied);
        let Cell::Ports(ports) = at("c/r2", "host:uplink") else {
            panic!("ports")
        };
        assert!(
            ports
                .iter()
                .all(|p| p.decided_by == Some(Direction::Ingress)
                    && p.by == ["GlobalNetworkPolicy edge"]),
            "{ports:?}"
        );
        // The host's egress by the uplink: to db only.
        assert_eq!(at("host:uplink", "c/r1").status(), Status::Denied);
        // A local workload's traffic to the host is its own egress policy's; the host
        // always reaches its own workloads; mgmt is selected by no policy.
        assert_eq!(at("a/web", "host:uplink").status(), Status::Allowed);
        assert_eq!(at("host:uplink", "a/web").status(), Status::Allowed);
        assert_eq!(at("c/r2", "host:mgmt").status(), Status::Allowed);
        // One host: itself; no IPv6 on the host endpoints: no path to b/six.
        assert_eq!(at("host:mgmt", "host:uplink").status(), Status::Itself);
        assert_eq!(at("host:uplink", "b/six").status(), Status::NoPath);
        // Each cell says what explain says.
        let e = x
            .explain(
                &"c/r1".parse().unwrap(),
                &"host:uplink".parse().unwrap(),
                tcp(5432),
            )
            .unwrap();
        let Cell::Ports(ports) = at("c/r1", "host:uplink") else {
            panic!("ports")
        };
        assert_eq!((ports[1].allowed, &ports[1].by), (e.allowed, &e.deciding()));
        // With a namespace, only that namespace's workloads.
        let only_a = build(&mut x, Some("a"), &[tcp(443)]);
        assert_eq!(only_a.endpoints, ["a/db", "a/web"]);
    }

    /// A cell is allowed only when every family both ends have is: here the policy's
    /// ipBlock is IPv4, so IPv6 from web to db is denied.
    #[test]
    fn a_pair_denied_over_one_family_is_denied() {
        let m = model(
            "
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {name: web, namespace: a, labels: {app: web}}
spec: {node: n1, interfaceName: veth-web, ips: [10.0.0.1, 'fd00::1']}
---
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {name: db, namespace: a, labels: {app: db}}
spec: {node: n1, interfaceName: veth-db, ips: [10.0.0.2, 'fd00::2']}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-from-v4, namespace: a}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8}}]}]
",
        );
        let mut x = Explainer::new(&m, "n1", "netpold");
        let mx = build(&mut x, None, &[tcp(80)]);
        assert_eq!(mx.endpoints, ["a/db", "a/web"]);
        assert_eq!(mx.cells[1][0].status(), Status::Denied);
        let Cell::Ports(results) = &mx.cells[1][0] else {
            panic!("{:?}", mx.cells[1][0]);
        };
        assert!(
            results[0]
                .reason
                .contains("over IPv6; the other family is allowed"),
            "{}",
            results[0].reason
        );
        assert_eq!(mx.cells[0][1].status(), Status::Allowed);
    }

    #[test]
    fn table_marks_each_pair() {
        let m = matrix(&[tcp(5432), tcp(22)], Some("a"));
        assert_eq!(
            table(&m),
            "from (rows) -> to (columns): ✓ allowed, ✗ denied, ~ some ports allowed, · itself
ports: TCP 5432, TCP 22
         1 2
1 a/db   · ✓
2 a/web  ~ ·
"
        );
    }

    #[test]
    fn csv_has_a_line_per_pair_and_port() {
        let m = matrix(&[tcp(22)], Some("a"));
        assert_eq!(
            csv(&m),
            "from,to,protocol,port,verdict,decided_by,by,reason
a/db,a/web,TCP,22,allowed,,,allowed: neither the sender's egress nor the receiver's ingress is isolated
a/web,a/db,TCP,22,denied,ingress,a/db-from-web,denied by ingress: isolated; no rule of a/db-from-web allows this
"
        );
    }

    #[test]
    fn json_names_the_deciding_policy_per_cell() {
        let m = matrix(&[tcp(5432)], None);
        let text = json(&m);
        // A line per cell, after the endpoints.
        assert_eq!(text.lines().count(), 1 + 6 + 1);
        let j: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(j["endpoints"][2], "b/six");
        assert_eq!(j["ports"], "given");
        let cell = j["cells"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["from"] == "a/web" && c["to"] == "a/db")
            .unwrap();
        assert_eq!(cell["verdict"], "allowed");
        assert_eq!(cell["ports"][0]["by"][0], "a/db-from-web ingress[0]");
        let cell = j["cells"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["from"] == "b/six")
            .unwrap();
        assert_eq!(cell["verdict"], "n/a");
        assert_eq!(cell["ports"], serde_json::json!([]));
        // Six pairs of three endpoints.
        assert_eq!(j["cells"].as_array().unwrap().len(), 6);
    }

    #[test]
    fn dot_has_an_edge_per_allowed_pair() {
        let m = matrix(&[tcp(5432), tcp(22)], Some("a"));
        assert_eq!(
            dot(&m),
            "digraph reachability {
  rankdir=LR;
  node [shape=box, fontname=\"sans-serif\"];
  edge [fontname=\"sans-serif\", fontsize=10];
  \"a/db\";
  \"a/web\";
  \"a/db\" -> \"a/web\" [label=\"TCP 5432, TCP 22\"];
  \"a/web\" -> \"a/db\" [label=\"TCP 5432\"];
}
"
        );
    }

    #[test]
    fn html_is_self_contained_and_carries_the_details() {
        let m = matrix(&[tcp(5432), tcp(22)], None);
        let page = html(&m, "reachability <test>");
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.contains("<title>reachability &lt;test&gt;</title>"));
        for external in ["http://", "https://", "src=", "href=", "@import", "url("] {
            assert!(!page.contains(external), "{external}");
        }
        assert_eq!(page.matches("<td class=").count(), 9);
        assert!(page.contains("<td class=p>"), "{page}");
        assert!(
            page.contains(
                "TCP 22: denied by ingress: isolated; no rule of a/db-from-web allows this"
            )
        );
        assert!(page.contains("allowed by a/db-from-web ingress[0]"));
    }
}
