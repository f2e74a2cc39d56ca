use std::time::Duration;

use super::{EXIT_OK, NodeArgs};
use netpold::daemon::notify::Notifier;
use netpold::daemon::{Daemon, Options};
use netpold::{config, nft};

/// The daemon, in the foreground, until SIGTERM or SIGINT (then exit code 0, the rules
/// staying in the kernel). Only set-up failures return an error.
pub fn run(args: &NodeArgs) -> anyhow::Result<u8> {
    let settings = args.settings()?;
    init_logging(settings.config.log_level.as_deref());
    let cfg = &settings.config;
    let options = Options {
        manifests: settings.manifests.clone(),
        node: settings.node.clone(),
        table: settings.table.clone(),
        state_dir: Some(
            cfg.state_dir
                .clone()
                .unwrap_or_else(|| config::DEFAULT_STATE_DIR.into()),
        ),
        debounce: Duration::from_millis(cfg.debounce_ms.unwrap_or(config::DEFAULT_DEBOUNCE_MS)),
        resync: Duration::from_secs(
            cfg.resync_interval_s
                .unwrap_or(config::DEFAULT_RESYNC_INTERVAL_S)
                .max(1),
        ),
    };
    let dataplane = nft::Kernel::open(&settings.table)?;
    log::info!(
        "netpold {} starting: manifests {}, node {}, table inet {}",
        env!("CARGO_PKG_VERSION"),
        options.manifests.display(),
        options.node,
        options.table
    );
    let daemon = Daemon::new(options, dataplane, Notifier::from_env())?;
    daemon.forward_signals()?;
    daemon.run();
    Ok(EXIT_OK)
}

/// Info by default; `log_level` from the configuration, or `RUST_LOG`, which wins.
/// Under systemd the journal stamps each line, so the timestamp is left out.
fn init_logging(level: Option<&str>) {
    let env = env_logger::Env::default().default_filter_or(level.unwrap_or("info"));
    let mut builder = env_logger::Builder::from_env(env);
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.format_timestamp(None);
    }
    builder.init();
}
