use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::{Common, EXIT_OK};
use netpold::explain::{Explainer, Port};

/// `diff(1)`'s convention: 0 the trees enforce the same, 1 some flow changes verdict
/// (or an endpoint is added or removed), 2 trouble (an invalid tree, a usage error).
pub const EXIT_DIFFERENT: u8 = 1;
pub const EXIT_TROUBLE: u8 = 2;

#[derive(Args, Debug)]
pub struct DiffArgs {
    /// Configuration file (TOML), for the node of endpoints naming none, the table
    /// and the compile options [default: /etc/netpold/netpold.toml, if present]
    #[arg(long, value_name = "F")]
    pub config: Option<PathBuf>,
    /// The manifest tree before the change
    #[arg(value_name = "OLD_DIR")]
    pub old: PathBuf,
    /// The manifest tree after the change
    #[arg(value_name = "NEW_DIR")]
    pub new: PathBuf,
    /// Only the flows this node enforces (its endpoints' egress and ingress)
    #[arg(long, value_name = "N")]
    pub node: Option<String>,
    /// Port to check, N (TCP) or N/tcp, N/udp, N/sctp; repeat for several
    /// [default: every port either tree's policies name, and each destination's named ports]
    #[arg(long, value_name = "N/PROTO")]
    pub port: Vec<Port>,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &DiffArgs) -> anyhow::Result<u8> {
    let common = |dir: &PathBuf| Common {
        config: args.config.clone(),
        manifests: Some(dir.clone()),
        no_strict_modes: false,
    };
    let old_settings = common(&args.old).settings(None, None)?;
    let new_settings = common(&args.new).settings(None, None)?;
    // Both trees are checked before either is compared: a diff against a tree the
    // daemon would refuse means nothing.
    let old = super::load_valid(
        &old_settings,
        &format!("{} is invalid, no diff", args.old.display()),
    )?;
    let new = super::load_valid(
        &new_settings,
        &format!("{} is invalid, no diff", args.new.display()),
    )?;
    let (Some(old), Some(new)) = (old, new) else {
        return Ok(EXIT_TROUBLE);
    };
    let started = std::time::Instant::now();
    let node = &new_settings.node;
    let options = new_settings.config.compile_options();
    let table = &new_settings.table;
    let mut before = Explainer::new(&old.model, node, table).with_options(options.clone());
    let mut after = Explainer::new(&new.model, node, table).with_options(options);
    let d = netpold::diff::diff(
        &mut before,
        &mut after,
        node,
        args.node.as_deref(),
        &args.port,
    );
    log::info!(
        "diff: {} of {} pairs decided again in {:?}",
        d.pairs_decided,
        d.pairs,
        started.elapsed()
    );
    let text = if args.json {
        netpold::diff::json(&d)
    } else {
        netpold::diff::table(&d)
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(if d.is_empty() {
        EXIT_OK
    } else {
        EXIT_DIFFERENT
    })
}
