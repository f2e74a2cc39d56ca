//! The daemon (`netpold run`): keeps the kernel in step with the manifest directory.
//!
//! ## Model
//! One thread, the main loop, owns the dataplane and does every sync; everything else
//! (inotify, signals) only sends `Event`s to it over a channel. So a transaction is
//! never interrupted: a SIGTERM that arrives mid-sync is read after the sync ends, and
//! the daemon exits leaving the rules in the kernel.
//!
//! ## When a sync runs
//! - at start;
//! - `debounce` after the last relevant file event (each event restarts the timer), so
//!   an editor's save or a `git checkout` of many files is one reload;
//! - on SIGHUP, which re-reads everything and reads the table back: a table as
//!   programmed last gets only the difference, any other (someone changed or deleted
//!   it) a full replace; bracketed by `RELOADING=1`/`READY=1`;
//! - every `resync` interval, in case an event was missed; it logs and programs only if
//!   something differs;
//! - after a failed transaction, with backoff (`reconcile::backoff`).
//!
//! ## Where the rest lives
//! `source` keeps each file's last good content (persisted by `state`), `reconcile`
//! does one sync and writes its log line, `watch` holds the inotify watches, `notify`
//! speaks systemd's notification protocol.

pub mod notify;
mod reclaim;
pub mod reconcile;
pub mod serve;
pub mod source;
pub mod state;
pub mod stats;
pub mod watch;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use crate::dataplane::{Dataplane, DriftObject};
use notify::Notifier;
use reconcile::{Outcome, Reconciler, Trigger};
use source::Source;
use state::StateDir;
use watch::{FsEvent, Watcher};

pub struct Options {
    pub manifests: PathBuf,
    pub node: String,
    pub table: String,
    /// Where last good contents are kept across restarts; `None`: in memory only.
    pub state_dir: Option<PathBuf>,
    pub debounce: Duration,
    pub resync: Duration,
    /// What the compiled ruleset holds besides the policies (drop logs).
    pub compile: crate::compile::Options,
    /// Refuse files others than root could change (`strict_modes`).
    pub strict_modes: bool,
}

/// What the main loop reacts to.
#[derive(Debug)]
pub enum Event {
    Files(Vec<FsEvent>),
    /// Another program changed our table: what it changed, and how to say so.
    Foreign {
        objects: Vec<DriftObject>,
        cause: String,
    },
    /// The table's change events overflowed: read the whole table back.
    EventsLost,
    Hangup,
    /// SIGTERM or SIGINT, by name.
    Terminate(&'static str),
}

pub struct Daemon<D> {
    // Declared before `watcher`, so it is dropped first and the watcher's reader
    // thread, woken by the watches' removal, finds the channel closed.
    events: Receiver<Event>,
    sender: Sender<Event>,
    watcher: Watcher,
    reconciler: Reconciler<D>,
    notifier: Notifier,
    debounce: Duration,
    resync: Duration,
    /// Conntrack clean-up after each transaction; `None` (the tests' fake kernel): none.
    conntrack: Option<crate::conntrack::Flusher>,
}

impl<D: Dataplane> Daemon<D> {
    pub fn new(options: Options, dataplane: D, notifier: Notifier) -> std::io::Result<Daemon<D>> {
        let (sender, events) = mpsc::channel();
        let watcher = Watcher::start(&options.manifests, sender.clone())?;
        let source = Source::new(
            &options.manifests,
            options
                .state_dir
                .as_deref()
                .map(|dir| StateDir::new(dir, &options.manifests)),
        )
        .with_strict_modes(options.strict_modes);
        Ok(Daemon {
            events,
            sender,
            watcher,
            reconciler: Reconciler::new(source, dataplane, &options.node, &options.table)
                .with_compile_options(options.compile),
            notifier,
            debounce: options.debounce,
            resync: options.resync,
            conntrack: None,
        })
    }

    /// Cleans conntrack up after each transaction (the real kernel only).
    pub fn with_conntrack(mut self, flusher: crate::conntrack::Flusher) -> Self {
        self.conntrack = Some(flusher);
        self
    }

    /// The bookkeeping `netpold status` and the metrics read.
    pub fn stats(&self) -> std::sync::Arc<stats::Stats> {
        self.reconciler.stats()
    }

    /// A handle for sending events, as the signal thread does.
    pub fn sender(&self) -> Sender<Event> {
        self.sender.clone()
    }

    /// SIGHUP, SIGTERM and SIGINT become events. Once this returns, their default
    /// actions no longer apply.
    pub fn forward_signals(&self) -> std::io::Result<()> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGHUP, SIGTERM, SIGINT])?;
        let sender = self.sender();
        std::thread::Builder::new()
            .name("signals".to_owned())
            .spawn(move || {
                for signal in signals.forever() {
                    let event = match signal {
                        SIGHUP => Event::Hangup,
                        SIGTERM => Event::Terminate("SIGTERM"),
                        _ => Event::Terminate("SIGINT"),
                    };
                    if sender.send(event).is_err() {
                        return;
                    }
                }
            })?;
        Ok(())
    }

    /// Runs until SIGTERM or SIGINT; returns the dataplane.
    pub fn run(mut self) -> D {
        let mut ready = false;
        let mut retry_at = self.sync(Trigger::Start, &mut ready);
        let mut resync_at = Instant::now() + self.resync;
        // Its own timer: syncs for changes must not put the read-back off forever. The
        // first one runs right after start, so the table is verified (and later checks
        // can stop at the generation id) before edits come.
        let mut readback_at = Instant::now();
        let mut debounce_at: Option<Instant> = None;
        // When the first change not yet synced was seen.
        let mut changes_since: Option<Instant> = None;
        // Foreign changes seen and not yet repaired; a burst of them is one repair.
        let mut drift: BTreeSet<DriftObject> = BTreeSet::new();
        let mut drift_causes: Vec<String> = Vec::new();
        let mut read_back = false;
        let mut drift_at: Option<Instant> = None;
        let watchdog_every = self.notifier.watchdog_interval();
        let mut watchdog_at = watchdog_every.map(|every| Instant::now() + every);
        loop {
            let deadline = [
                debounce_at,
                retry_at,
                watchdog_at,
                drift_at,
                self.reconciler.drift_summary_at(),
                Some(resync_at),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(resync_at);
            match self
                .events
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(Event::Files(batch)) => {
                    if self.watcher.is_relevant(&batch) {
                        // Each event restarts the quiet period, but a directory that is
                        // never quiet still syncs every `max_debounce`.
                        let now = Instant::now();
                        let first = *changes_since.get_or_insert(now);
                        debounce_at = Some((now + self.debounce).min(first + self.max_debounce()));
                    }
                }
                Ok(Event::Foreign { objects, cause }) => {
                    drift.extend(objects);
                    drift_causes.push(cause);
                    drift_at.get_or_insert(Instant::now() + DRIFT_SETTLE);
                }
                Ok(Event::EventsLost) => {
                    read_back = true;
                    drift_at.get_or_insert(Instant::now() + DRIFT_SETTLE);
                }
                Ok(Event::Hangup) => {
                    // Before the first programming systemd is still waiting for READY=1,
                    // which `sync` sends when it comes.
                    let was_ready = ready;
                    if was_ready {
                        self.notifier.reloading();
                    }
                    retry_at = self.sync(Trigger::Hangup, &mut ready);
                    if was_ready {
                        self.notifier.ready();
                    }
                    debounce_at = None;
                    changes_since = None;
                    resync_at = Instant::now() + self.resync;
                }
                Ok(Event::Terminate(signal)) => {
                    log::info!("{signal}: exiting; the rules programmed last stay in the kernel");
                    self.notifier.stopping();
                    return self.reconciler.into_dataplane();
                }
                // The loop holds a sender itself, so the channel never disconnects.
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
            }
            let now = Instant::now();
            if let (Some(at), Some(every)) = (watchdog_at, watchdog_every)
                && at <= now
            {
                self.notifier.watchdog();
                watchdog_at = Some(now + every);
            }
            let due = |at: Option<Instant>| at.is_some_and(|at| at <= now);
            self.reconciler.drift_summary();
            if due(drift_at) {
                drift_at = None;
                let objects = std::mem::take(&mut drift);
                let causes = std::mem::take(&mut drift_causes);
                if !objects.is_empty() {
                    let shown: Vec<&str> = causes.iter().take(3).map(String::as_str).collect();
                    let mut cause = shown.join("; ");
                    if causes.len() > shown.len() {
                        cause.push_str(&format!("; {} more", causes.len() - shown.len()));
                    }
                    if let Some(at) = guarded(
                        &self.notifier,
                        || self.reconciler.repair(&objects, &cause),
                        &mut ready,
                    )
                    .unwrap_or_else(|()| self.after_panic())
                    {
                        retry_at = Some(at);
                    }
                }
                if std::mem::take(&mut read_back) {
                    log::info!("nftables change events were lost; reading the table back");
                    if let Some(at) = guarded(
                        &self.notifier,
                        || self.reconciler.check_drift(true),
                        &mut ready,
                    )
                    .unwrap_or_else(|()| self.after_panic())
                    {
                        retry_at = Some(at);
                    }
                }
                continue;
            }
            if readback_at <= now {
                // The kernel's table against what was programmed, for changes whose
                // events were missed.
                readback_at = now + self.resync;
                if retry_at.is_none() {
                    retry_at = guarded(
                        &self.notifier,
                        || self.reconciler.check_drift(false),
                        &mut ready,
                    )
                    .unwrap_or_else(|()| self.after_panic());
                }
                continue;
            }
            let trigger = if due(debounce_at) {
                Trigger::Change
            } else if due(retry_at) {
                Trigger::Retry
            } else if resync_at <= now {
                Trigger::Rescan
            } else {
                continue;
            };
            retry_at = self.sync(trigger, &mut ready);
            debounce_at = None;
            changes_since = None;
            resync_at = Instant::now() + self.resync;
        }
    }

    /// The longest a stream of changes can put a sync off.
    fn max_debounce(&self) -> Duration {
        (self.debounce * 10).max(Duration::from_secs(1))
    }

    /// Re-arms the watches, syncs and tells systemd; returns when to retry, if needed.
    fn sync(&mut self, trigger: Trigger, ready: &mut bool) -> Option<Instant> {
        // Watches first: a change made while the directory is read is seen again.
        self.watcher.rearm();
        let mut programmed = false;
        let step = || {
            let outcome = self.reconciler.sync(trigger);
            programmed = outcome.programmed;
            outcome
        };
        let retry = guarded(&self.notifier, step, ready).unwrap_or_else(|()| self.after_panic());
        // Endpoints removed while the daemon was down: their flows end like any other's.
        if let Some(restored) = self.reconciler.take_restored()
            && let Some(flusher) = self.conntrack.as_mut()
        {
            flusher.seed(&restored);
        }
        if programmed
            && let (Some(flusher), Some((model, ruleset))) =
                (self.conntrack.as_mut(), self.reconciler.enforced())
        {
            // The rules are in; a bug here must not take enforcement down.
            let cleaned =
                std::panic::catch_unwind(AssertUnwindSafe(|| flusher.after_sync(model, ruleset)));
            if cleaned.is_err() {
                log::error!(
                    "conntrack clean-up failed with an internal error (a bug); the rules are in force"
                );
            }
        }
        retry
    }

    /// After a panic in a step the compiled state may be half updated: it is dropped,
    /// and a retry compiles everything again and replaces the whole table.
    fn after_panic(&mut self) -> Option<Instant> {
        self.reconciler.forget_compiled();
        Some(Instant::now() + reconcile::RETRY_FIRST)
    }
}

/// Runs one step of the reconciler (a sync or a repair) and tells systemd; returns
/// when to retry, if needed, or `Err` if the step panicked.
fn guarded(
    notifier: &Notifier,
    step: impl FnOnce() -> Outcome,
    ready: &mut bool,
) -> Result<Option<Instant>, ()> {
    {
        // A whole WatchdogSec for the step, however long since the last ping.
        notifier.watchdog();
        // Nothing a file says may take the daemon down: a panic here is a bug, and the
        // kernel still holds the rules programmed last, which is the safe state.
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(step));
        let Ok(Outcome {
            line,
            status,
            programmed,
            retry_in,
        }) = outcome
        else {
            log::error!(
                "sync failed with an internal error (a bug; the panic message is above); the kernel keeps the rules programmed last; everything is compiled again in 1 s"
            );
            return Err(());
        };
        if line.is_some() {
            notifier.status(&status);
        }
        if programmed && !*ready {
            notifier.ready();
            *ready = true;
        }
        Ok(retry_in.map(|after| Instant::now() + after))
    }
}

/// How long foreign changes may keep coming before they are repaired together: an
/// `nft -f` of many commands is one repair, well within a second.
const DRIFT_SETTLE: Duration = Duration::from_millis(50);
