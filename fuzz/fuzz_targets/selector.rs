//! The two selector languages. The first byte picks one:
//! even — a Calico-style expression (`app == 'web' && !has(x)`): one that parses
//! prints canonical text that parses to the same expression and agrees on labels;
//! odd — the rest is YAML for a Kubernetes `podSelector`: one that converts, written
//! back as `matchExpressions`, converts to the same selector.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netpold::manifest::node::{Node, Pos, Value};
use netpold::manifest::{self, RawObject};
use netpold::model::{Object, convert_object};
use netpold::selector::expr::Expr;
use netpold::selector::{LabelSelector, Labels, Op};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        expression(rest);
    } else {
        label_selector(rest);
    }
});

fn expression(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(expr) = Expr::parse(text) else {
        return;
    };
    let printed = expr.to_string();
    let again = Expr::parse(&printed).unwrap_or_else(|e| panic!("{printed:?}: {e}"));
    assert_eq!(expr, again, "{text:?} printed as {printed:?}");
    assert_eq!(printed, again.to_string());
    for labels in label_sets() {
        assert_eq!(expr.matches(&labels), again.matches(&labels));
    }
}

fn label_sets() -> Vec<Labels> {
    let pairs: &[&[(&str, &str)]] = &[
        &[],
        &[("a", "1")],
        &[("a", "2"), ("b", "1")],
        &[("app", "web"), ("x.io/c", "v-3")],
    ];
    pairs
        .iter()
        .map(|p| {
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

fn label_selector(data: &[u8]) {
    let mut problems = Vec::new();
    let raw = manifest::parse_bytes("s.yaml", data, &mut problems);
    let Some(first) = raw.into_iter().next() else {
        return;
    };
    let Some(selector) = pod_selector(first.node) else {
        return;
    };
    let written = Node {
        pos: Pos { line: 1, col: 1 },
        len: 0,
        value: Value::Map(vec![(str_node("matchExpressions"), expressions(&selector))]),
    };
    let again = pod_selector(written).expect("a selector written back converts");
    assert_eq!(selector, again);
}

/// The selector of a NetworkPolicy whose `podSelector` is `node`, if it converts.
fn pod_selector(node: Node) -> Option<LabelSelector> {
    let map = |entries: Vec<(&str, Node)>| Node {
        pos: Pos { line: 1, col: 1 },
        len: 0,
        value: Value::Map(entries.into_iter().map(|(k, v)| (str_node(k), v)).collect()),
    };
    let policy = map(vec![
        ("apiVersion", str_node("networking.k8s.io/v1")),
        ("kind", str_node("NetworkPolicy")),
        ("metadata", map(vec![("name", str_node("p"))])),
        ("spec", map(vec![("podSelector", node)])),
    ]);
    let raw = RawObject {
        file: "s.yaml".to_owned(),
        node: policy,
    };
    match convert_object(&raw, &mut Vec::new())? {
        Object::Policy(p) => Some(p.pod_selector),
        other => panic!("a NetworkPolicy converted to {other:?}"),
    }
}

fn expressions(selector: &LabelSelector) -> Node {
    let items = selector
        .requirements()
        .iter()
        .map(|r| {
            let (operator, values) = match &r.op {
                Op::In(v) => ("In", Some(v)),
                Op::NotIn(v) => ("NotIn", Some(v)),
                Op::Exists => ("Exists", None),
                Op::DoesNotExist => ("DoesNotExist", None),
            };
            let mut entries = vec![
                (str_node("key"), str_node(&r.key)),
                (str_node("operator"), str_node(operator)),
            ];
            if let Some(values) = values {
                let list = values.iter().map(|v| str_node(v)).collect();
                entries.push((str_node("values"), seq_node(list)));
            }
            Node {
                pos: Pos { line: 1, col: 1 },
                len: 0,
                value: Value::Map(entries),
            }
        })
        .collect();
    seq_node(items)
}

fn str_node(s: &str) -> Node {
    Node {
        pos: Pos { line: 1, col: 1 },
        len: 0,
        value: Value::Str(s.to_owned()),
    }
}

fn seq_node(items: Vec<Node>) -> Node {
    Node {
        pos: Pos { line: 1, col: 1 },
        len: 0,
        value: Value::Seq(items),
    }
}
