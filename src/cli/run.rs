use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::Duration;

use super::{EXIT_OK, NodeArgs};
use netpold::daemon::notify::Notifier;
use netpold::daemon::serve::{self, CounterSource};
use netpold::daemon::stats::Stats;
use netpold::daemon::{Daemon, Event, Options};
use netpold::status::FlowKey;
use netpold::{config, nft};

/// The daemon, in the foreground, until SIGTERM or SIGINT (then exit code 0, the rules
/// staying in the kernel). Only set-up failures return an error.
pub fn run(args: &NodeArgs) -> anyhow::Result<u8> {
    let settings = args.settings()?;
    init_logging(settings.config.log_level.as_deref());
    // The manifests are checked on every load, each file on its own.
    if let Some(problem) = settings.unsafe_modes(false).first() {
        anyhow::bail!("{problem}");
    }
    let cfg = &settings.config;
    let options = Options {
        manifests: settings.manifests.clone(),
        node: settings.node.clone(),
        table: settings.table.clone(),
        state_dir: trusted_state_dir(
            cfg.state_dir
                .clone()
                .unwrap_or_else(|| config::DEFAULT_STATE_DIR.into()),
            settings.strict_modes(),
        ),
        debounce: Duration::from_millis(cfg.debounce_ms.unwrap_or(config::DEFAULT_DEBOUNCE_MS)),
        resync: Duration::from_secs(
            cfg.resync_interval_s
                .unwrap_or(config::DEFAULT_RESYNC_INTERVAL_S)
                .max(1),
        ),
        compile: cfg.compile_options(),
        strict_modes: settings.strict_modes(),
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
    // A port below 1024 needs CAP_NET_BIND_SERVICE: bound before it goes.
    let metrics = cfg
        .metrics_addr()
        .map(|addr| (addr, TcpListener::bind(addr)));
    // Before the first thread starts: threads keep the capabilities they start with.
    netpold::privilege::drop_to_net_admin()
        .map_err(|e| anyhow::anyhow!("cannot drop capabilities: {e}"))?;
    let conntrack = netpold::conntrack::Flusher::new(&options.node, cfg.strict_conntrack());
    let daemon = Daemon::new(options, dataplane, Notifier::from_env())?.with_conntrack(conntrack);
    daemon.forward_signals()?;
    watch_table(monitor, &table, own_portid, daemon.sender())?;
    let socket = serve_status(cfg, &table, &daemon.stats(), metrics);
    daemon.run();
    if let Some(socket) = socket {
        let _ = std::fs::remove_file(socket);
    }
    Ok(EXIT_OK)
}

/// The state directory, unless `strict_modes` finds that others than root could
/// write it: what it holds is enforced while a file is broken, so an untrusted one is
/// not used at all (the daemon then keeps last good contents in memory only).
fn trusted_state_dir(dir: PathBuf, strict_modes: bool) -> Option<PathBuf> {
    if !strict_modes || !dir.exists() {
        return Some(dir);
    }
    match netpold::strict::StrictModes::new().path_and_parents(&dir) {
        Ok(()) => Some(dir),
        Err(e) => {
            log::error!(
                "state_dir {}: {e}; last good contents are kept in memory only",
                dir.display()
            );
            None
        }
    }
}

/// The status socket, the metrics endpoint and the drop-log reader. None of them is
/// needed to enforce, so a failure to start one is logged and the daemon goes on.
fn serve_status(
    cfg: &config::Config,
    table: &str,
    stats: &Arc<Stats>,
    metrics: Option<(SocketAddr, std::io::Result<TcpListener>)>,
) -> Option<PathBuf> {
    let counters: CounterSource = {
        let table = table.to_owned();
        Arc::new(move || match nft::counters::read_counters(&table) {
            Ok(Some(rows)) => Ok(rows),
            Ok(None) => Err(format!("table inet {table} does not exist")),
            Err(e) => Err(e.to_string()),
        })
    };
    let runtime_dir = cfg
        .runtime_dir
        .clone()
        .unwrap_or_else(|| config::DEFAULT_RUNTIME_DIR.into());
    let socket = match serve::status_socket(&runtime_dir, stats.clone(), counters.clone()) {
        Ok(socket) => socket,
        Err(e) => {
            log::error!(
                "cannot serve the status in {}: {e}; `netpold status` will not reach this daemon",
                runtime_dir.display()
            );
            None
        }
    };
    if let Some((addr, listener)) = metrics {
        match listener.and_then(|l| serve::metrics_on(l, stats.clone(), counters)) {
            Ok(bound) => log::info!("metrics at http://{bound}/metrics"),
            Err(e) => log::error!("cannot serve metrics on {addr}: {e}; no metrics"),
        }
    }
    if cfg.log_group_listen()
        && let Some(group) = cfg.log_group
    {
        match nft::nflog::NflogReader::bind(group) {
            Ok(reader) => {
                stats.collect_flows(group);
                if let Err(e) = read_drops(reader, stats.clone()) {
                    log::error!("cannot start the drop-log reader: {e}");
                }
            }
            Err(e) => log::warn!("top denied flows are not collected: {e}"),
        }
    }
    socket
}

/// Tallies the drops logged to the NFLOG group, for `status`'s top denied flows.
fn read_drops(mut reader: nft::nflog::NflogReader, stats: Arc<Stats>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("drop-log".to_owned())
        .spawn(move || {
            loop {
                let packets = match reader.read(Duration::from_secs(3600)) {
                    Ok(packets) => packets,
                    Err(e) => {
                        log::warn!("reading NFLOG group {}: {e}", reader.group());
                        std::thread::sleep(Duration::from_secs(1));
                        continue;
                    }
                };
                stats.lost_drops(reader.lost());
                for packet in packets {
                    let Some(prefix) = packet.drop_prefix() else {
                        continue;
                    };
                    stats.denied(FlowKey {
                        src: packet.src.to_string(),
                        dst: packet.dst.to_string(),
                        protocol: protocol_name(packet.protocol),
                        dport: packet.dst_port,
                        endpoint: prefix.endpoint.unwrap_or_else(|| "-".to_owned()),
                        direction: prefix.direction.to_string(),
                        cause: prefix.cause.word().to_owned(),
                        rule: prefix.rule,
                    });
                }
            }
        })?;
    Ok(())
}

fn protocol_name(number: u8) -> String {
    match number {
        1 => "icmp".to_owned(),
        6 => "tcp".to_owned(),
        17 => "udp".to_owned(),
        58 => "icmpv6".to_owned(),
        132 => "sctp".to_owned(),
        n => n.to_string(),
    }
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
