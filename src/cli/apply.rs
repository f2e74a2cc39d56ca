use std::time::Instant;

use super::{EXIT_INVALID, EXIT_OK, NodeArgs};
use netpold::dataplane::Dataplane;
use netpold::{compile, nft};

/// Programs the current network namespace once, as `run` does on start: nothing is
/// programmed unless the whole directory is valid.
pub fn run(args: &NodeArgs) -> anyhow::Result<u8> {
    let settings = args.settings()?;
    let started = Instant::now();
    let Some(loaded) = super::load_valid(
        &settings,
        "nothing programmed; the kernel keeps what it had",
    )?
    else {
        return Ok(EXIT_INVALID);
    };
    let loaded_at = started.elapsed();
    let ruleset = compile::compile(&loaded.model, &settings.node, &settings.table);
    let compiled_at = started.elapsed();
    let mut kernel = nft::Kernel::open(&settings.table)?;
    let applied = kernel.replace(&ruleset)?;
    let m = &loaded.model;
    let local = m
        .endpoints
        .values()
        .filter(|e| e.is_local(&settings.node))
        .count();
    eprintln!(
        "netpold: programmed table inet {} for node {}: {} namespaces, {} endpoints ({local} local), {} policies -> {} sets, {} maps, {} chains, {} rules in 1 transaction ({} messages, {} KiB) in {:.1?} (load {:.1?}, compile {:.1?}, kernel {:.1?})",
        settings.table,
        settings.node,
        m.namespaces.len(),
        m.endpoints.len(),
        m.policies.len(),
        ruleset.sets.len(),
        ruleset.maps.len(),
        ruleset.chains.len(),
        ruleset.rule_count(),
        applied.messages,
        applied.bytes.div_ceil(1024),
        started.elapsed(),
        loaded_at,
        compiled_at - loaded_at,
        applied.elapsed,
    );
    Ok(EXIT_OK)
}
