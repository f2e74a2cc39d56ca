//! The whole pure pipeline: bytes → check → compile → render, as `netpold plan` runs it.
//! Whatever validated must compile and render, and the result must not depend on the
//! order of the documents.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netpold::manifest;
use netpold::model::Model;
use netpold::{compile, render};

const NODE: &str = "node-1";
const TABLE: &str = "netpold";

fuzz_target!(|data: &[u8]| {
    let mut problems = Vec::new();
    let raw = manifest::parse_bytes("f.yaml", data, &mut problems);
    let (model, more) = Model::build(&raw);
    if !problems.is_empty() || !more.is_empty() {
        return;
    }
    // The node of the files' first endpoint, so that their endpoints are local.
    let node = model
        .endpoints
        .values()
        .find_map(|e| e.node.clone())
        .or_else(|| model.hosts.values().find_map(|h| h.node.clone()))
        .unwrap_or_else(|| NODE.to_owned());
    let ruleset = compile::compile(&model, &node, TABLE);
    let text = render::render(&ruleset);
    assert!(text.contains(TABLE), "{text}");
    let (reversed, more) = Model::build(raw.iter().rev());
    assert!(
        more.is_empty(),
        "valid in one order, not in the other: {more:?}"
    );
    assert_eq!(compile::compile(&reversed, &node, TABLE), ruleset);
});
