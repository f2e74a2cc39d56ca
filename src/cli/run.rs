use std::sync::mpsc::Sender;
use std::time::Duration;

use super::{EXIT_OK, NodeArgs};
use netpold::daemon::notify::Notifier;
use netpold::daemon::{Daemon, Event, Options};
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
        compile: cfg.compile_options(),
    };
    let mut dataplane = nft::Kernel::open(&settings.table)?;
    let own_portid = dataplane.portid();
    let monitor = nft::monitor::Monitor::open()
        .map_err(|e| anyhow::anyhow!("cannot subscribe to nftables events: {e}"))?;
    dataplane.pause_during_replace(monitor.pauser()?);
    log::info!(
        "netpold {} starting: manifests {}, node {}, table inet {}",
        env!("CARGO_PKG_VERSION"),
        options.manifests.display(),
        options.node,
        options.table
    );
    let table = options.table.clone();
    let daemon = Daemon::new(options, dataplane, Notifier::from_env())?;
    daemon.forward_signals()?;
    watch_table(monitor, &table, own_portid, daemon.sender())?;
    daemon.run();
    Ok(EXIT_OK)
}

/// Reports other programs' changes to our table to the daemon, which repairs them.
/// Our own transactions come from `own_portid` and are not reported.
fn watch_table(
    mut monitor: nft::monitor::Monitor,
    table: &str,
    own_portid: u32,
    sender: Sender<Event>,
) -> anyhow::Result<()> {
    let table = table.to_owned();
    std::thread::Builder::new()
        .name("nft-events".to_owned())
        .spawn(move || {
            loop {
                // Changes held for their transaction's end are looked at again soon;
                // otherwise the thread sleeps until an event comes.
                let wait = if monitor.holding() {
                    nft::monitor::HOLD
                } else {
                    Duration::from_secs(3600)
                };
                if let Err(e) = monitor.wait(wait) {
                    log::warn!("waiting for nftables events: {e}");
                    std::thread::sleep(Duration::from_secs(1));
                }
                let drained = monitor.drain(own_portid, &table);
                // After a loss the changes read are half a story (a deleted table shows
                // as some of its rules deleted): the read-back tells the whole of it.
                if drained.overflow {
                    if sender.send(Event::EventsLost).is_err() {
                        return;
                    }
                    continue;
                }
                if !drained.foreign.is_empty() {
                    let objects = drained
                        .foreign
                        .iter()
                        .map(|c| nft::drift_object(&c.change))
                        .collect();
                    const SHOWN: usize = 3;
                    let mut cause = drained
                        .foreign
                        .iter()
                        .take(SHOWN)
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ");
                    if drained.foreign.len() > SHOWN {
                        cause
                            .push_str(&format!("; {} more changes", drained.foreign.len() - SHOWN));
                    }
                    if sender.send(Event::Foreign { objects, cause }).is_err() {
                        return;
                    }
                }
            }
        })?;
    Ok(())
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
