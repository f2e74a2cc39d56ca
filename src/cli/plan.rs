use std::io::Write;

use super::{EXIT_INVALID, EXIT_OK, NodeArgs};
use netpold::{compile, render};

/// Prints the ruleset `run` would program, as `nft -f` input. Invalid manifests
/// print their problems on stderr and no plan: a partial plan would mislead.
pub fn run(args: &NodeArgs) -> anyhow::Result<u8> {
    let settings = args.settings()?;
    let started = std::time::Instant::now();
    let Some(loaded) = super::load_valid(&settings, "no plan")? else {
        return Ok(EXIT_INVALID);
    };
    let loaded_at = started.elapsed();
    // Incremental for its count of the policies enforced here; nothing is updated.
    let compiled = compile::Incremental::with_options(
        &loaded.model,
        &settings.node,
        &settings.table,
        &settings.config.compile_options(),
    );
    let ruleset = compiled.ruleset();
    let compiled_at = started.elapsed();
    let m = &loaded.model;
    let local = m.local_endpoints(&settings.node);
    let hosts = match m
        .hosts
        .values()
        .filter(|h| h.is_local(&settings.node))
        .count()
    {
        0 => String::new(),
        n => format!(", {n} local host endpoints"),
    };
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "# netpold plan for node {}: {} namespaces, {} endpoints ({local} local){hosts}, {} policies ({} enforced here); {} sets, {} chains, {} rules",
        settings.node,
        m.namespaces.len(),
        m.endpoints.len(),
        m.policies.len() + m.tiered.len(),
        compiled.enforced_policies(),
        ruleset.sets.len(),
        ruleset.chains.len(),
        ruleset.rule_count()
    )?;
    out.write_all(render::render(ruleset).as_bytes())?;
    out.flush()?;
    log::info!(
        "plan: loaded in {:?}, compiled in {:?}, rendered in {:?}",
        loaded_at,
        compiled_at - loaded_at,
        started.elapsed() - compiled_at
    );
    Ok(EXIT_OK)
}
