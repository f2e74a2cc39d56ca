use std::time::Instant;

use super::{EXIT_INVALID, EXIT_OK, NodeArgs};
use netpold::daemon::reconcile;
use netpold::dataplane::Dataplane;
use netpold::{compile, nft};

/// Programs the current network namespace once, as `run` does on start: nothing is
/// programmed unless the whole directory is valid.
pub fn run(args: &NodeArgs) -> anyhow::Result<u8> {
    let settings = args.settings()?;
    let started = Instant::now();
    let unsafe_modes = settings.unsafe_modes(true);
    if !unsafe_modes.is_empty() {
        for problem in &unsafe_modes {
            eprintln!("{problem}");
        }
        eprintln!(
            "{} errors: nothing programmed; the kernel keeps what it had",
            unsafe_modes.len()
        );
        return Ok(EXIT_INVALID);
    }
    let Some(loaded) = super::load_valid(
        &settings,
        "nothing programmed; the kernel keeps what it had",
    )?
    else {
        return Ok(EXIT_INVALID);
    };
    let loaded_at = started.elapsed();
    // Incremental for its counts (the policies enforced here); nothing is updated.
    let compiled = compile::Incremental::with_options(
        &loaded.model,
        &settings.node,
        &settings.table,
        &settings.config.compile_options(),
    );
    let ruleset = compiled.ruleset();
    let compiled_at = started.elapsed();
    let mut kernel = nft::Kernel::open(&settings.table)?;
    let applied = kernel.replace(ruleset)?;
    eprintln!(
        "netpold: programmed table inet {} for node {}: {} {} in {} ms (load {} ms, compile {} ms, kernel {} ms)",
        settings.table,
        settings.node,
        reconcile::contents(&loaded.model, &compiled),
        reconcile::transaction(&applied),
        started.elapsed().as_millis(),
        loaded_at.as_millis(),
        (compiled_at - loaded_at).as_millis(),
        applied.elapsed.as_millis(),
    );
    Ok(EXIT_OK)
}
