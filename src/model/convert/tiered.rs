//! `netpold.io/v1` NetworkPolicy and GlobalNetworkPolicy: raw tree → `TieredPolicy`.
//! Strict like the other kinds: unknown fields, fields that cannot apply (ports without
//! a protocol that has ports, `icmp` without ICMP) and contradictions (an IPv6 net in an
//! `ipVersion: 4` rule) are errors, each at its own place.

use super::*;
use crate::model::tiered::*;
use crate::selector::expr::Expr;

const SPEC_FIELDS: &[&str] = &[
    "order",
    "selector",
    "nodeSelector",
    "types",
    "ingress",
    "egress",
];
const GLOBAL_SPEC_FIELDS: &[&str] = &[
    "order",
    "selector",
    "namespaceSelector",
    "nodeSelector",
    "types",
    "ingress",
    "egress",
    "applyOnForward",
];
const RULE_FIELDS: &[&str] = &[
    "action",
    "protocol",
    "ipVersion",
    "icmp",
    "notICMP",
    "source",
    "destination",
];
/// Most `notPorts` items of one end of a rule.
const MAX_NOT_PORTS: usize = 12;

const ENTITY_FIELDS: &[&str] = &[
    "selector",
    "namespaceSelector",
    "nets",
    "notNets",
    "ports",
    "notPorts",
];

/// What the spec says, before metadata is added.
pub(super) struct TieredParts {
    pub order: Option<Order>,
    pub selector: Expr,
    pub namespace_selector: Option<Expr>,
    pub node_selector: Option<Expr>,
    pub ingress: Option<Vec<TierRule>>,
    pub egress: Option<Vec<TierRule>>,
    pub apply_on_forward: bool,
}

impl Ctx<'_> {
    /// A selector expression; errors point inside the string where the file allows.
    pub(super) fn expr(&mut self, node: &Node, path: &str) -> Option<Expr> {
        let text = self.string(node, path)?;
        match Expr::parse(text) {
            Ok(e) => Some(e),
            Err(e) => {
                let pos = node.pos_in_string(e.offset);
                self.error(pos, path, format!("selector {e}"));
                None
            }
        }
    }
}

pub(super) fn tiered_spec(cx: &mut Ctx, node: &Node, global: bool) -> Option<TieredParts> {
    let known = if global {
        GLOBAL_SPEC_FIELDS
    } else {
        SPEC_FIELDS
    };
    let f = cx.fields(node, "spec", known)?;
    let order = f.get("order").and_then(|o| {
        let value = match &o.value {
            Value::Int(n) => *n as f64,
            Value::Float(x) => *x,
            _ => {
                cx.error(
                    o.pos,
                    "spec.order",
                    format!("expected a number, got {}", o.kind_name()),
                );
                return None;
            }
        };
        let order = Order::new(value);
        if order.is_none() {
            cx.error(o.pos, "spec.order", "must be a finite number");
        }
        order
    });
    let selector = match f.get("selector") {
        Some(s) => cx.expr(s, "spec.selector").unwrap_or(Expr::All),
        None => Expr::All,
    };
    let namespace_selector = f
        .get("namespaceSelector")
        .and_then(|s| cx.expr(s, "spec.namespaceSelector"));
    let node_selector = f
        .get("nodeSelector")
        .and_then(|s| cx.expr(s, "spec.nodeSelector"));
    let apply_on_forward = match f.get("applyOnForward") {
        Some(n) => match &n.value {
            Value::Bool(b) => *b,
            _ => {
                cx.error(
                    n.pos,
                    "spec.applyOnForward",
                    format!("expected true or false, got {}", n.kind_name()),
                );
                false
            }
        },
        None => false,
    };
    let ingress = f.get("ingress").map(|n| tier_rules(cx, n, "spec.ingress"));
    let egress = f.get("egress").map(|n| tier_rules(cx, n, "spec.egress"));
    let has_rules = |r: &Option<Vec<TierRule>>| r.as_ref().is_some_and(|r| !r.is_empty());
    let (has_ingress, has_egress) = match f.get("types") {
        Some(types) => {
            let (mut has_ingress, mut has_egress) = (false, false);
            let items = cx.list(types, "spec.types").unwrap_or_default();
            if items.is_empty() && matches!(types.value, Value::Seq(_)) {
                cx.error(
                    types.pos,
                    "spec.types",
                    "list Ingress, Egress or both, or leave types out for the default",
                );
            }
            for (i, t) in items.iter().enumerate() {
                let path = format!("spec.types[{i}]");
                let (flag, name) = match cx.string(t, &path) {
                    Some("Ingress") => (&mut has_ingress, "Ingress"),
                    Some("Egress") => (&mut has_egress, "Egress"),
                    Some(other) => {
                        cx.error(
                            t.pos,
                            &path,
                            format!("unknown type {other:?}: Ingress or Egress"),
                        );
                        continue;
                    }
                    None => continue,
                };
                if *flag {
                    cx.error(t.pos, &path, format!("{name} is listed twice"));
                }
                *flag = true;
            }
            // Rules of a direction the policy does not govern would be ignored: refused,
            // so that a forgotten type cannot silently drop rules.
            for (listed, field, name) in [
                (has_ingress, "ingress", "Ingress"),
                (has_egress, "egress", "Egress"),
            ] {
                if let Some(n) = f.get(field)
                    && !listed
                    && !items.is_empty()
                    && matches!(&n.value, Value::Seq(r) if !r.is_empty())
                {
                    cx.error(
                        n.pos,
                        &format!("spec.{field}"),
                        format!("has rules but spec.types does not list {name}"),
                    );
                }
            }
            (has_ingress, has_egress)
        }
        // Calico's default: Egress alone when only egress has rules; both when both
        // have; else Ingress.
        None => match (has_rules(&ingress), has_rules(&egress)) {
            (false, true) => (false, true),
            (true, true) => (true, true),
            _ => (true, false),
        },
    };
    Some(TieredParts {
        order,
        selector,
        namespace_selector,
        node_selector,
        ingress: has_ingress.then(|| ingress.unwrap_or_default()),
        egress: has_egress.then(|| egress.unwrap_or_default()),
        apply_on_forward,
    })
}

fn tier_rules(cx: &mut Ctx, node: &Node, path: &str) -> Vec<TierRule> {
    let mut out = Vec::new();
    for (i, r) in cx.list(node, path).unwrap_or_default().iter().enumerate() {
        if let Some(rule) = tier_rule(cx, r, &format!("{path}[{i}]")) {
            out.push(rule);
        }
    }
    let total = out
        .iter()
        .map(crate::compile::tier_rule_alternatives)
        .filter(|&n| n <= crate::compile::MAX_RULE_ALTERNATIVES)
        .fold(0, usize::saturating_add);
    too_many_in_list(cx, node, path, total);
    out
}

fn tier_rule(cx: &mut Ctx, node: &Node, path: &str) -> Option<TierRule> {
    let f = cx.fields(node, path, RULE_FIELDS)?;
    let ap = join(path, "action");
    let action = match f.get("action") {
        Some(a) => cx.string(a, &ap).and_then(|s| {
            let action = Action::parse(s);
            if action.is_none() {
                let hint = Action::parse(&capitalised(s))
                    .map(|a| format!(" (actions are capitalised: {a})"))
                    .unwrap_or_default();
                cx.error(
                    a.pos,
                    &ap,
                    format!("unknown action {s:?}: one of Allow, Deny, Log, Pass{hint}"),
                );
            }
            action
        }),
        None => {
            cx.error(node.pos, &ap, "required: one of Allow, Deny, Log, Pass");
            None
        }
    };
    let pp = join(path, "protocol");
    let protocol = f.get("protocol").and_then(|p| rule_protocol(cx, p, &pp));
    let vp = join(path, "ipVersion");
    let ip_version = f.get("ipVersion").and_then(|v| match &v.value {
        Value::Int(4) => Some(IpVersion::V4),
        Value::Int(6) => Some(IpVersion::V6),
        _ => {
            cx.error(v.pos, &vp, "must be 4 or 6");
            None
        }
    });
    // ICMP is IPv4's, ICMPv6 IPv6's.
    if let (Some(p), Some(v), Some(n)) = (protocol, ip_version, f.get("ipVersion"))
        && p.version().is_some_and(|pv| pv != v)
    {
        cx.error(n.pos, &vp, format!("protocol {p} is not carried in IPv{v}"));
    }
    let mut icmps = [None, None];
    for (slot, field) in icmps.iter_mut().zip(["icmp", "notICMP"]) {
        let Some(n) = f.get(field) else { continue };
        let ip = join(path, field);
        if !matches!(protocol, Some(RuleProtocol::Icmp | RuleProtocol::Icmpv6)) {
            cx.error(n.pos, &ip, "needs protocol ICMP or ICMPv6");
            continue;
        }
        *slot = icmp_match(cx, n, &ip);
    }
    let [icmp, not_icmp] = icmps;
    let version = ip_version.or(protocol.and_then(RuleProtocol::version));
    let source = match f.get("source") {
        Some(s) => entity(cx, s, &join(path, "source"), protocol, version)?,
        None => Entity::default(),
    };
    let destination = match f.get("destination") {
        Some(d) => entity(cx, d, &join(path, "destination"), protocol, version)?,
        None => Entity::default(),
    };
    let rule = TierRule {
        action: action?,
        protocol,
        ip_version,
        icmp,
        not_icmp,
        source,
        destination,
    };
    too_many_alternatives(
        cx,
        node,
        path,
        crate::compile::tier_rule_alternatives(&rule),
    );
    Some(rule)
}

fn capitalised(s: &str) -> String {
    let lower = s.to_ascii_lowercase();
    let mut chars = lower.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

fn rule_protocol(cx: &mut Ctx, node: &Node, path: &str) -> Option<RuleProtocol> {
    match &node.value {
        Value::Int(n) if (1..=255).contains(n) => Some(RuleProtocol::from_number(*n as u8)),
        Value::Int(n) => {
            cx.error(
                node.pos,
                path,
                format!("protocol number {n} is out of range 1-255"),
            );
            None
        }
        Value::Str(s) => {
            let p = RuleProtocol::parse(s);
            if p.is_none() {
                let hint = ["TCP", "UDP", "SCTP", "ICMP", "ICMPv6"]
                    .into_iter()
                    .find(|name| name.eq_ignore_ascii_case(s))
                    .map(|name| format!(" (write {name})"))
                    .unwrap_or_default();
                cx.error(
                    node.pos,
                    path,
                    format!(
                        "unsupported protocol {s:?}: one of TCP, UDP, SCTP, ICMP, ICMPv6 or a number 1-255{hint}"
                    ),
                );
            }
            p
        }
        _ => {
            cx.error(
                node.pos,
                path,
                format!(
                    "expected a protocol name or number, got {}",
                    node.kind_name()
                ),
            );
            None
        }
    }
}

fn icmp_match(cx: &mut Ctx, node: &Node, path: &str) -> Option<IcmpMatch> {
    let f = cx.fields(node, path, &["type", "code"])?;
    let byte = |cx: &mut Ctx, n: &Node, path: &str, max: i128| match &n.value {
        Value::Int(v) if (0..=max).contains(v) => Some(*v as u8),
        _ => {
            cx.error(n.pos, path, format!("must be an integer 0-{max}"));
            None
        }
    };
    let tp = join(path, "type");
    let icmp_type = match f.get("type") {
        Some(t) => byte(cx, t, &tp, 254),
        None => {
            cx.error(
                node.pos,
                &tp,
                "required (a code alone matches nothing useful)",
            );
            None
        }
    };
    let code = match f.get("code") {
        Some(c) => Some(byte(cx, c, &join(path, "code"), 255)?),
        None => None,
    };
    Some(IcmpMatch {
        icmp_type: icmp_type?,
        code,
    })
}

fn entity(
    cx: &mut Ctx,
    node: &Node,
    path: &str,
    protocol: Option<RuleProtocol>,
    version: Option<IpVersion>,
) -> Option<Entity> {
    let f = cx.fields(node, path, ENTITY_FIELDS)?;
    let mut ok = true;
    let mut entity = Entity::default();
    for (field, slot) in [
        ("selector", &mut entity.selector),
        ("namespaceSelector", &mut entity.namespace_selector),
    ] {
        if let Some(n) = f.get(field) {
            *slot = cx.expr(n, &join(path, field));
            ok &= slot.is_some();
        }
    }
    for (field, slot) in [
        ("nets", &mut entity.nets),
        ("notNets", &mut entity.not_nets),
    ] {
        let Some(n) = f.get(field) else { continue };
        let np = join(path, field);
        for (i, item) in cx.list(n, &np).unwrap_or_default().iter().enumerate() {
            let ip = format!("{np}[{i}]");
            let Some(net) = cx.cidr(item, &ip) else {
                ok = false;
                continue;
            };
            if let Some(v) = version
                && IpVersion::of(&net) != v
            {
                cx.error(
                    item.pos,
                    &ip,
                    format!(
                        "{net} is not an IPv{v} network, as the rule's ipVersion or protocol says"
                    ),
                );
                ok = false;
                continue;
            }
            slot.push(net);
        }
        slot.sort();
        slot.dedup();
    }
    for (field, slot) in [
        ("ports", &mut entity.ports),
        ("notPorts", &mut entity.not_ports),
    ] {
        let Some(n) = f.get(field) else { continue };
        let pp = join(path, field);
        if !matches!(protocol, Some(RuleProtocol::Ported(_))) {
            cx.error(n.pos, &pp, "needs protocol TCP, UDP or SCTP");
            ok = false;
            continue;
        }
        for (i, item) in cx.list(n, &pp).unwrap_or_default().iter().enumerate() {
            let ip = format!("{pp}[{i}]");
            match port_item(cx, item, &ip) {
                Some(p) => slot.push(p),
                None => ok = false,
            }
        }
        slot.sort();
        slot.dedup();
        // Each is a condition of its own in every nft rule of the rule, which takes at
        // most 128 expressions.
        if field == "notPorts" && slot.len() > MAX_NOT_PORTS {
            cx.error(
                n.pos,
                &pp,
                format!(
                    "{} ports; at most {MAX_NOT_PORTS} (each is a condition of its own): merge them into ranges or split the rule",
                    slot.len()
                ),
            );
            ok = false;
        }
    }
    ok.then_some(entity)
}

/// `80`, `"8000:8080"` or a port name.
fn port_item(cx: &mut Ctx, node: &Node, path: &str) -> Option<PortItem> {
    match &node.value {
        Value::Str(s) => {
            if let Some((a, b)) = s.split_once(':') {
                let bound = |text: &str| text.parse::<u16>().ok().filter(|p| *p >= 1);
                let (Some(a), Some(b)) = (bound(a), bound(b)) else {
                    cx.error(
                        node.pos,
                        path,
                        format!("{s:?} is not a port range: write first:last, each 1-65535"),
                    );
                    return None;
                };
                if b < a {
                    cx.error(node.pos, path, format!("range {s:?} ends below its start"));
                    return None;
                }
                Some(PortItem::Range(a, b))
            } else if s.parse::<u32>().is_ok() {
                cx.error(
                    node.pos,
                    path,
                    format!("{s:?} is a string; write {s} without quotes for a port number"),
                );
                None
            } else {
                cx.check(node, path, syntax::port_name(s))
                    .then(|| PortItem::Named(s.clone()))
            }
        }
        _ => cx.port_number(node, path).map(|p| PortItem::Range(p, p)),
    }
}
