//! One sync: load the directory, compile, program the kernel when the desired ruleset
//! differs from the one programmed last, and say in one log line what happened.
//!
//! The reconciler owns the dataplane and is driven by one thread, so a transaction is
//! never interrupted: a signal is handled after the sync in flight. What the kernel
//! holds is tracked as the last ruleset programmed successfully; a failed transaction
//! leaves it as it was (the kernel applies all of a batch or none), and the next sync
//! or a retry with backoff tries again. Every sync logs exactly one line starting with
//! `sync N:`, at INFO, at WARN when files are held or nothing is programmed, at ERROR
//! when a transaction failed; the problems behind it are logged just before it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::reclaim;
use super::source::{Before, Load, Reload, Source};
use super::stats::{Stats, SyncResult};
use crate::compile::{self, Incremental};
use crate::dataplane::{Applied, Dataplane, DriftObject};
use crate::ir::Ruleset;
use crate::ir::diff::{Delta, NeedsReplace, SetChange};
use crate::model::{Changes, Model};
use crate::status::FileInError;

/// Why a sync runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    Start,
    /// The directory changed (after the debounce).
    Change,
    /// SIGHUP: re-read everything and program unconditionally.
    Hangup,
    /// The periodic rescan, for events the watcher missed.
    Rescan,
    /// A failed transaction is tried again.
    Retry,
}

/// What a sync did, for the caller's notifications and timers.
#[derive(Debug)]
pub struct Outcome {
    /// The `sync N:` line and its level; `None` for a rescan that found nothing new.
    pub line: Option<(log::Level, String)>,
    /// One line for systemd's `STATUS=`.
    pub status: String,
    /// A transaction succeeded.
    pub programmed: bool,
    /// When to try again after a failed transaction.
    pub retry_in: Option<Duration>,
}

pub const RETRY_FIRST: Duration = Duration::from_secs(1);
const MAX_OBJECTS_REPAIRED: usize = 500;
pub const RETRY_MAX: Duration = Duration::from_secs(30);

/// Counts of what is enforced, for `STATUS=`.
#[derive(Clone, Copy, Debug)]
struct Enforced {
    policies: usize,
    /// Of them, those with chains here (that select a local endpoint).
    here: usize,
    endpoints: usize,
    local: usize,
}

pub struct Reconciler<D> {
    source: Source,
    dataplane: D,
    node: String,
    table: String,
    options: compile::Options,
    /// The compiled ruleset, kept up to date edit by edit; `None` before the first
    /// valid load.
    compiled: Option<Incremental>,
    /// The load whose model `compiled` is of; `None` while an update is under way, so
    /// that one interrupted by a panic is not built on.
    compiled_generation: Option<u64>,
    /// The kernel holds `compiled`'s ruleset: the last transaction went in. When it
    /// did not, what the kernel holds is the older ruleset and the next transaction
    /// replaces the whole table.
    in_kernel: bool,
    /// What the last successful transaction enforces; `None` before the first.
    enforced: Option<Enforced>,
    /// Nothing is programmed before the first load in which every file is valid
    /// (or stands in with its last good content).
    complete_load_seen: bool,
    syncs: u64,
    /// Consecutive failed transactions, for the backoff.
    failures: u32,
    directory_unreadable: bool,
    stats: Arc<Stats>,
    /// The problems the last load reported, so each is counted as an error once.
    reported: BTreeSet<crate::diag::Diagnostic>,
    drift_log: DriftLog,
    /// The model enforced when the daemon stopped, rebuilt at start when the manifests
    /// changed since, until the conntrack clean-up takes it.
    restored: Option<crate::model::Model>,
}

/// How often, at most, repairs of foreign changes are logged while they keep coming.
pub const DRIFT_LOG_EVERY: Duration = Duration::from_secs(10);

/// A program that keeps rewriting our table is repaired every time, but logged like
/// this: the first repair in full; while more come within `DRIFT_LOG_EVERY` of the
/// last line, each only at DEBUG, and then one summary line (how many, and by whom)
/// at most every `DRIFT_LOG_EVERY`. A failed repair is always logged.
#[derive(Default)]
struct DriftLog {
    /// When a repair was last logged at WARN (in full or summed up).
    last_line: Option<Instant>,
    /// Repairs since then, not logged above DEBUG.
    quiet: u64,
    /// Who made the changes they repaired (process names, at most a few), and how
    /// many changes each.
    by: BTreeMap<String, u64>,
}

impl DriftLog {
    const NAMED: usize = 3;

    /// Whether this repair's line is logged at its own level; else it is counted.
    fn record(&mut self, now: Instant, cause: &str) -> bool {
        if self
            .last_line
            .is_some_and(|at| now.duration_since(at) < DRIFT_LOG_EVERY)
        {
            self.quiet += 1;
            for who in foreign_processes(cause) {
                if self.by.len() < Self::NAMED || self.by.contains_key(&who) {
                    *self.by.entry(who).or_default() += 1;
                }
            }
            return false;
        }
        self.summary(now);
        self.last_line = Some(now);
        true
    }

    /// When a summary of quiet repairs is due.
    fn due(&self) -> Option<Instant> {
        (self.quiet > 0)
            .then_some(self.last_line)
            .flatten()
            .map(|at| at + DRIFT_LOG_EVERY)
    }

    /// Logs the repairs counted since the last line, if any.
    fn summary(&mut self, now: Instant) {
        if self.quiet == 0 {
            return;
        }
        let since = self
            .last_line
            .map_or(0, |at| now.duration_since(at).as_secs());
        let by: Vec<String> = std::mem::take(&mut self.by)
            .into_iter()
            .map(|(who, n)| format!("{who} {n}×"))
            .collect();
        // Taken outside the macro, which skips its arguments when WARN is filtered out.
        let quiet = std::mem::take(&mut self.quiet);
        log::warn!(
            "drift: {quiet} more changes to our table by another program ({}) repaired in the last {since} s; the table is put right every time (each repair at DEBUG)",
            if by.is_empty() {
                "unknown".to_owned()
            } else {
                by.join(", ")
            }
        );
        self.last_line = Some(now);
    }
}

/// The processes a drift cause names: "… by nft (pid 31425, port 31425)" → "nft".
fn foreign_processes(cause: &str) -> Vec<String> {
    cause
        .split(" by ")
        .skip(1)
        .filter_map(|rest| Some(rest.split_once(" (pid ")?.0.to_owned()))
        .collect()
}

impl<D: Dataplane> Reconciler<D> {
    pub fn new(source: Source, dataplane: D, node: &str, table: &str) -> Self {
        Reconciler {
            source,
            dataplane,
            node: node.to_owned(),
            table: table.to_owned(),
            options: compile::Options::default(),
            compiled: None,
            compiled_generation: None,
            in_kernel: false,
            enforced: None,
            complete_load_seen: false,
            syncs: 0,
            failures: 0,
            directory_unreadable: false,
            stats: Stats::new(node, table),
            reported: BTreeSet::new(),
            drift_log: DriftLog::default(),
            restored: None,
        }
    }

    /// When the summary of repairs not logged one by one is due, if any are pending.
    pub fn drift_summary_at(&self) -> Option<Instant> {
        self.drift_log.due()
    }

    /// Logs the summary of repairs not logged one by one, if it is due.
    pub fn drift_summary(&mut self) {
        if self.drift_log.due().is_some_and(|at| at <= Instant::now()) {
            self.drift_log.summary(Instant::now());
        }
    }

    /// What `netpold status` and the metrics report, shared with their threads.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Compiles with `options` (drop logs) rather than the defaults.
    pub fn with_compile_options(mut self, options: compile::Options) -> Self {
        self.options = options;
        self
    }

    /// Drops the compiled state (after a panic left it in doubt): the next sync
    /// compiles everything and replaces the whole table.
    pub fn forget_compiled(&mut self) {
        self.compiled = None;
        self.in_kernel = false;
    }

    /// The model enforced when the daemon stopped, when the first sync found the
    /// manifests changed since (taken once).
    pub fn take_restored(&mut self) -> Option<crate::model::Model> {
        self.restored.take()
    }

    /// The model and ruleset the kernel holds since the last transaction, if it does.
    pub fn enforced(&self) -> Option<(&crate::model::Model, &crate::ir::Ruleset)> {
        let compiled = self.compiled.as_ref().filter(|_| self.in_kernel)?;
        Some((self.source.model(), compiled.ruleset()))
    }

    pub fn into_dataplane(self) -> D {
        self.dataplane
    }

    /// Loads, compiles and programs if needed; logs the problems and the `sync N:` line.
    pub fn sync(&mut self, trigger: Trigger) -> Outcome {
        let started = Instant::now();
        // At start, what was enforced when the daemon stopped: if the kernel still holds
        // it and the manifests changed meanwhile, only the difference is sent.
        let restored = (self.syncs == 0 && self.compiled.is_none())
            .then(|| self.source.restored())
            .flatten();
        let how = match trigger {
            Trigger::Start | Trigger::Hangup => Reload::Everything,
            Trigger::Rescan => Reload::Reread,
            Trigger::Change | Trigger::Retry => Reload::Changes,
        };
        let mut load = match self.source.reload_with(how) {
            Ok(load) => load,
            Err(e) => return self.without_directory(trigger, &e, started),
        };
        let was_unreadable = std::mem::replace(&mut self.directory_unreadable, false);
        let load_time = started.elapsed();
        let news = load.files_touched() || was_unreadable || self.failures > 0;
        if load.complete() {
            self.complete_load_seen = true;
        }
        if !self.complete_load_seen {
            if trigger == Trigger::Rescan && !news {
                return self.quiet();
            }
            let (errors, files) = error_counts(&load);
            let text = format!(
                "not programmed: {} in {}; nothing is programmed before the first valid load",
                count(errors, "error", "errors"),
                count(files, "file", "files")
            );
            let status = format!("waiting for a valid manifest directory: {text}");
            return self.report(
                log::Level::Warn,
                &load,
                vec![text],
                Outcome {
                    line: None,
                    status,
                    programmed: false,
                    retry_in: None,
                },
                (SyncResult::NotProgrammed, started, None),
            );
        }

        let mut parts = Vec::new();
        match trigger {
            Trigger::Start => {}
            Trigger::Hangup => parts.push("SIGHUP".to_owned()),
            Trigger::Rescan => parts.push("rescan".to_owned()),
            Trigger::Retry => parts.push("retry".to_owned()),
            Trigger::Change => {}
        }
        // Compile: the whole model when the kernel's content is not known to be the
        // last ruleset (first sync, SIGHUP, after a failure), otherwise only the change.
        let compile_started = Instant::now();
        let in_step = self.compiled_generation == Some(load.generation - 1);
        let replace_why = match (&self.compiled, trigger) {
            (None, _) => Some("the first transaction".to_owned()),
            (_, Trigger::Hangup) => Some("SIGHUP".to_owned()),
            _ if !self.in_kernel => Some("after a failed transaction".to_owned()),
            _ if !in_step => Some("the compiled ruleset was not the last load's".to_owned()),
            _ => None,
        };
        // What changed: listed by a patched load, found by comparing models after a
        // full one, and only when the sync line or the compiler needs it.
        let model = self.source.model();
        let wanted = self.compiled.is_some() && (load.files_touched() || replace_why.is_none());
        let before = std::mem::replace(&mut load.before, Before::Patched(Changes::default()));
        let changes = match before {
            Before::Patched(changes) => Some(changes),
            Before::Model(old) => {
                // A model replaced whole is freed off the sync's path.
                let changes = wanted.then(|| Changes::between(&old, model));
                reclaim::later(old);
                changes
            }
        };
        if let Some(changes) = changes
            .as_ref()
            .filter(|_| self.compiled.is_some() && load.files_touched())
        {
            parts.push(format!(
                "{}: {}",
                files_summary(&load),
                ModelDelta::of(changes, model)
            ));
        }
        parts.extend(held_summary(&load));

        self.compiled_generation = None;
        let update = match (replace_why, self.compiled.as_mut(), changes.as_ref()) {
            (None, Some(compiled), Some(changes)) => compiled.update(model, changes).err(),
            (None, _, _) => Some(NeedsReplace("the change is not known".to_owned())),
            (Some(why), _, _) => Some(NeedsReplace(why)),
        };
        // The ruleset compiled before stays until the kernel is programmed: the table
        // may still hold it, and then only the difference needs sending.
        let mut previous = None;
        let replace_why = update.map(|NeedsReplace(why)| {
            let fresh = Incremental::with_options(model, &self.node, &self.table, &self.options);
            previous = self.compiled.replace(fresh);
            why
        });
        self.compiled_generation = Some(load.generation);
        reclaim::later(changes);
        // Compiled only when the manifests changed since the daemon stopped.
        self.restored = restored
            .filter(|r| previous.is_none() && !self.source.loaded_as(r))
            .and_then(|r| r.model());
        let restored_ruleset = self
            .restored
            .as_ref()
            .map(|m| compile::compile_with(m, &self.node, &self.table, &self.options));
        let compile_time = compile_started.elapsed();
        let compiled = self.compiled.as_mut().expect("compiled above");
        let enforced = Enforced {
            policies: model.policies.len() + model.tiered.len(),
            here: compiled.enforced_policies(),
            endpoints: model.endpoints.len(),
            local: compiled.local_endpoints(),
        };
        let contents = contents(model, compiled);
        let held_files = load.held.iter().filter(|h| h.last_good).count();
        let held_status = if held_files > 0 {
            format!(
                "; {} held at last good content",
                count(held_files, "file", "files")
            )
        } else {
            String::new()
        };

        let mut level = if load.held.is_empty() {
            log::Level::Info
        } else {
            log::Level::Warn
        };
        let mut outcome = Outcome {
            line: None,
            status: String::new(),
            programmed: false,
            retry_in: None,
        };
        let kernel_started = Instant::now();
        let attempt = match replace_why {
            Some(why) => Some(program_whole(
                &mut self.dataplane,
                previous
                    .as_ref()
                    .map(Incremental::ruleset)
                    .or(restored_ruleset.as_ref()),
                compiled.ruleset(),
                &why,
            )),
            None => match compiled.delta() {
                Ok((delta, _)) if delta.is_empty() => None,
                Ok((delta, desired)) => {
                    let summary = delta.summary();
                    match self.dataplane.update(desired, &delta) {
                        Ok(applied) => Some((Ok(applied), format!("(changed: {summary})"))),
                        Err(e) => {
                            // The table was changed behind our back (or the kernel
                            // refused something): the whole table puts it right.
                            log::warn!(
                                "the kernel refused the change ({e}); replacing the whole table"
                            );
                            Some((
                                self.dataplane.replace(desired),
                                "(replaced the whole table after the change was refused)"
                                    .to_owned(),
                            ))
                        }
                    }
                }
                Err(NeedsReplace(why)) => Some((
                    self.dataplane.replace(compiled.ruleset()),
                    format!("(replaced the whole table: {why})"),
                )),
            },
        };
        if let Some(previous) = previous {
            reclaim::later(previous);
        }
        let mut kernel_time = None;
        let mut result = SyncResult::Unchanged;
        let mut messages = None;
        match attempt {
            Some((Ok(applied), how)) => {
                kernel_time = Some(kernel_started.elapsed());
                result = SyncResult::Programmed;
                messages = Some(applied.messages);
                self.stats.objects(objects(
                    &enforced,
                    model,
                    compiled.ruleset(),
                    compiled.rule_count(),
                ));
                parts.push(format!(
                    "programmed {contents} {how} {}",
                    transaction(&applied)
                ));
                self.in_kernel = true;
                self.enforced = Some(enforced);
                self.failures = 0;
                outcome.programmed = true;
            }
            Some((Err(e), _)) => {
                kernel_time = Some(kernel_started.elapsed());
                result = SyncResult::Failed;
                self.stats.error("transaction", 1);
                self.in_kernel = false;
                self.failures += 1;
                let retry_in = backoff(self.failures);
                parts.push(format!(
                    "transaction failed: {e}; the kernel keeps {}; retrying in {} s",
                    if self.enforced.is_some() {
                        "the ruleset programmed before"
                    } else {
                        "what it held"
                    },
                    retry_in.as_secs()
                ));
                level = log::Level::Error;
                outcome.retry_in = Some(retry_in);
            }
            None => {
                if trigger == Trigger::Rescan && !news {
                    return self.quiet();
                }
                // The kernel already holds the desired ruleset: nothing is left to retry.
                self.failures = 0;
                parts.push(format!(
                    "no change to the ruleset ({} read, {} parsed)",
                    count(load.read, "file", "files"),
                    load.parsed
                ));
            }
        }
        outcome.status = match (&self.enforced, outcome.retry_in) {
            (Some(enforced), None) => format!(
                "enforcing {} on {} ({} local){held_status}",
                if enforced.here == enforced.policies {
                    count(enforced.policies, "policy", "policies")
                } else {
                    format!(
                        "{} of {}",
                        enforced.here,
                        count(enforced.policies, "policy", "policies")
                    )
                },
                count(enforced.endpoints, "endpoint", "endpoints"),
                enforced.local
            ),
            (Some(_), Some(_)) => {
                "the last transaction failed; the previously programmed ruleset stays; retrying"
                    .to_owned()
            }
            (None, _) => "the first transaction failed; retrying".to_owned(),
        };
        let mut timing = format!(
            "{} ms (load {} ms, compile {} ms",
            ms(started.elapsed()),
            ms(load_time),
            ms(compile_time)
        );
        if let Some(kernel) = kernel_time {
            timing.push_str(&format!(", kernel {} ms", ms(kernel)));
        }
        timing.push(')');
        parts.push(format!("in {timing}"));
        self.report(level, &load, parts, outcome, (result, started, messages))
    }

    /// The directory cannot be listed. What is enforced stays: a directory deleted by
    /// accident must not open the firewall. SIGHUP still re-programs the ruleset
    /// programmed last, which repairs a table someone deleted.
    fn without_directory(
        &mut self,
        trigger: Trigger,
        e: &std::io::Error,
        started: Instant,
    ) -> Outcome {
        let first_time = !std::mem::replace(&mut self.directory_unreadable, true);
        if !first_time && matches!(trigger, Trigger::Rescan | Trigger::Retry) {
            return self.quiet();
        }
        self.stats.error("directory", 1);
        let mut level = log::Level::Error;
        let mut programmed = false;
        // The desired ruleset is unknown: what the kernel holds is at best the last one.
        let mut result = if self.compiled.is_some() {
            SyncResult::Failed
        } else {
            SyncResult::NotProgrammed
        };
        let what = match (&self.compiled, trigger) {
            (Some(compiled), Trigger::Hangup) => match program_whole(
                &mut self.dataplane,
                Some(compiled.ruleset()),
                compiled.ruleset(),
                "SIGHUP",
            ) {
                (Ok(applied), how) => {
                    programmed = true;
                    result = SyncResult::Programmed;
                    self.in_kernel = true;
                    level = log::Level::Warn;
                    format!(
                        "re-programmed the ruleset programmed last {how} {}",
                        transaction(&applied)
                    )
                }
                (Err(e), _) => {
                    result = SyncResult::Failed;
                    self.stats.error("transaction", 1);
                    format!("re-programming the ruleset programmed last failed: {e}")
                }
            },
            (Some(_), _) => "the ruleset programmed last stays enforced".to_owned(),
            (None, _) => "nothing is programmed".to_owned(),
        };
        self.syncs += 1;
        let line = format!(
            "sync {}: manifest directory {}: {e}; {what} in {} ms",
            self.syncs,
            self.source.dir().display(),
            ms(started.elapsed())
        );
        // Counted before it is logged: a status request prompted by the line sees it.
        self.stats.sync(result, started.elapsed(), &line, None);
        log::log!(level, "{line}");
        Outcome {
            status: format!("manifest directory unreadable ({e}); {what}"),
            line: Some((level, line)),
            programmed,
            retry_in: None,
        }
    }

    /// Puts right objects of our table that someone else changed: a chain's rules are
    /// written again, a set is refilled, anything else (the table or a chain deleted,
    /// a map changed, an object added) replaces the whole table. `cause` says what was
    /// seen, for the log.
    pub fn repair(&mut self, objects: &BTreeSet<DriftObject>, cause: &str) -> Outcome {
        let started = Instant::now();
        let Some(compiled) = self.compiled.as_ref().filter(|_| self.in_kernel) else {
            // Nothing programmed yet, or a retry is due that replaces the whole table.
            return self.quiet();
        };
        let desired = compiled.ruleset();
        let mut delta = Delta::default();
        // Past a few hundred objects a replacement costs no more and needs no list.
        let mut whole = objects.len() > MAX_OBJECTS_REPAIRED;
        for object in objects {
            match object {
                DriftObject::Chain(name) if desired.chains.contains_key(name) => {
                    let (name, _) = desired
                        .chains
                        .get_key_value(name.as_str())
                        .expect("present");
                    delta.changed_chains.push(name);
                }
                DriftObject::Set(name) if desired.sets.contains_key(name) => {
                    let (name, _) = desired.sets.get_key_value(name.as_str()).expect("present");
                    delta.changed_sets.push(SetChange {
                        name,
                        add: Vec::new(),
                        remove: Vec::new(),
                        refill: true,
                    });
                }
                _ => whole = true,
            }
        }
        let (result, how) = if whole {
            (
                self.dataplane.replace(desired),
                "replaced the whole table".to_owned(),
            )
        } else {
            let mut names: Vec<String> = delta
                .changed_chains
                .iter()
                .map(|c| format!("rewrote chain {c}"))
                .collect();
            names.extend(
                delta
                    .changed_sets
                    .iter()
                    .map(|c| format!("refilled set {}", c.name)),
            );
            let how = names.join(", ");
            match self.dataplane.update(desired, &delta) {
                Ok(applied) => (Ok(applied), how),
                Err(e) => {
                    log::warn!(
                        "repairing the changed objects failed ({e}); replacing the whole table"
                    );
                    (
                        self.dataplane.replace(desired),
                        "replaced the whole table".to_owned(),
                    )
                }
            }
        };
        self.syncs += 1;
        let messages = result.as_ref().ok().map(|a| a.messages);
        let (level, text, programmed, retry_in) = match result {
            Ok(applied) => (
                log::Level::Warn,
                format!("{how} {}", transaction(&applied)),
                true,
                None,
            ),
            Err(e) => {
                self.stats.error("repair", 1);
                self.in_kernel = false;
                self.failures += 1;
                let retry_in = backoff(self.failures);
                (
                    log::Level::Error,
                    format!("repair failed: {e}; retrying in {} s", retry_in.as_secs()),
                    false,
                    Some(retry_in),
                )
            }
        };
        let line = format!(
            "sync {}: drift: {cause}; {text} in {} ms",
            self.syncs,
            ms(started.elapsed())
        );
        let result = if programmed {
            SyncResult::Repaired
        } else {
            SyncResult::Failed
        };
        self.stats.sync(result, started.elapsed(), &line, messages);
        if !programmed || self.drift_log.record(Instant::now(), cause) {
            log::log!(level, "{line}");
        } else {
            log::debug!("{line}");
        }
        Outcome {
            status: if programmed {
                format!("repaired a change made by another program ({cause})")
            } else {
                format!(
                    "a change made by another program could not be repaired ({cause}); retrying"
                )
            },
            line: Some((level, line)),
            programmed,
            retry_in,
        }
    }

    /// Reads our table back and repairs what differs from the ruleset programmed last;
    /// `thorough` after lost events (see `Dataplane::read_back`).
    pub fn check_drift(&mut self, thorough: bool) -> Outcome {
        let Some(compiled) = self.compiled.as_ref().filter(|_| self.in_kernel) else {
            return self.quiet();
        };
        let started = Instant::now();
        match self.dataplane.read_back(compiled.ruleset(), thorough) {
            Ok(drift) if drift.is_empty() => {
                log::debug!(
                    "read back table inet {} in {} ms: as programmed",
                    self.table,
                    ms(started.elapsed())
                );
                self.quiet()
            }
            Ok(drift) => {
                const SHOWN: usize = 5;
                let mut cause: Vec<String> =
                    drift.iter().take(SHOWN).map(|d| d.what.clone()).collect();
                if drift.len() > SHOWN {
                    cause.push(format!("{} more differences", drift.len() - SHOWN));
                }
                let objects = drift.into_iter().map(|d| d.object).collect();
                self.repair(
                    &objects,
                    &format!("the table read back differs: {}", cause.join("; ")),
                )
            }
            Err(e) => {
                self.stats.error("readback", 1);
                log::warn!("reading table inet {} back failed: {e}", self.table);
                self.quiet()
            }
        }
    }

    fn quiet(&self) -> Outcome {
        Outcome {
            line: None,
            status: String::new(),
            programmed: false,
            retry_in: None,
        }
    }

    /// Logs the problems, then the one `sync N:` line, and counts the sync.
    fn report(
        &mut self,
        level: log::Level,
        load: &Load,
        parts: Vec<String>,
        mut outcome: Outcome,
        (result, started, messages): (SyncResult, Instant, Option<usize>),
    ) -> Outcome {
        for problem in &load.problems {
            log::warn!("{problem}");
        }
        self.syncs += 1;
        let line = format!("sync {}: {}", self.syncs, join_parts(&parts));
        let problems: BTreeSet<crate::diag::Diagnostic> = load.problems.iter().cloned().collect();
        let new = problems.difference(&self.reported).count();
        self.stats.error("manifest", new as u64);
        self.reported = problems;
        self.stats.files_in_error(files_in_error(load));
        self.stats.sync(result, started.elapsed(), &line, messages);
        // After the counts: a status request prompted by the line sees this sync.
        log::log!(level, "{line}");
        outcome.line = Some((level, line));
        outcome
    }
}

/// The files whose current content is not loaded, with their problems.
fn files_in_error(load: &Load) -> Vec<FileInError> {
    let mut files: BTreeMap<&str, FileInError> = BTreeMap::new();
    for held in &load.held {
        files.insert(
            &held.file,
            FileInError {
                file: held.file.clone(),
                last_good: held.last_good,
                messages: Vec::new(),
            },
        );
    }
    for problem in &load.problems {
        files
            .entry(&problem.file)
            .or_insert_with(|| FileInError {
                file: problem.file.clone(),
                last_good: false,
                messages: Vec::new(),
            })
            .messages
            .push(problem.to_string());
    }
    files.into_values().collect()
}

/// What is enforced, by kind, for the status and `netpold_objects`.
fn objects(
    enforced: &Enforced,
    model: &Model,
    ruleset: &Ruleset,
    rules: usize,
) -> BTreeMap<String, u64> {
    [
        ("namespaces", model.namespaces.len()),
        ("endpoints", enforced.endpoints),
        ("local_endpoints", enforced.local),
        ("policies", enforced.policies),
        ("policies_enforced", enforced.here),
        ("chains", ruleset.chains.len()),
        ("rules", rules),
        ("sets", ruleset.sets.len()),
        ("maps", ruleset.maps.len()),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_owned(), n as u64))
    .collect()
}

/// 1 s, doubling, at most 30 s.
fn backoff(failures: u32) -> Duration {
    RETRY_FIRST
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(RETRY_MAX)
}

/// `a: b; c; programmed … in …`: the trigger and the file summary lead with a colon,
/// the rest are separated by semicolons and the timing by a space.
fn join_parts(parts: &[String]) -> String {
    let mut out = String::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            let lead = matches!(parts[i - 1].as_str(), "SIGHUP" | "rescan" | "retry");
            out.push_str(if lead {
                ": "
            } else if part.starts_with("in ") {
                " "
            } else {
                "; "
            });
        }
        out.push_str(part);
    }
    out
}

/// What a ruleset enforces, as the sync line (and `apply`) says it:
/// `1 namespace, 3 endpoints (3 local), 1 policy: 10 chains, 32 rules, 2 sets, 2 maps`,
/// or on a fleet `…, 2000 policies (222 enforced here): …`.
pub fn contents(model: &Model, compiled: &Incremental) -> String {
    let ruleset = compiled.ruleset();
    format!(
        "{}, {} ({} local), {}: {}, {}, {}, {}",
        count(model.namespaces.len(), "namespace", "namespaces"),
        count(model.endpoints.len(), "endpoint", "endpoints"),
        compiled.local_endpoints(),
        policies_here(
            model.policies.len() + model.tiered.len(),
            compiled.enforced_policies()
        ),
        count(ruleset.chains.len(), "chain", "chains"),
        count(compiled.rule_count(), "rule", "rules"),
        count(ruleset.sets.len(), "set", "sets"),
        count(ruleset.maps.len(), "map", "maps"),
    )
}

/// `3 policies`, or when fewer have chains here, `3 policies (1 enforced here)`.
fn policies_here(all: usize, here: usize) -> String {
    let policies = count(all, "policy", "policies");
    if here == all {
        policies
    } else {
        format!("{policies} ({here} enforced here)")
    }
}

/// `in 1 transaction (57 messages, 13 KB)`.
pub fn transaction(applied: &Applied) -> String {
    if applied.messages == 0 {
        return "with no transaction".to_owned();
    }
    format!(
        "in 1 transaction ({} messages, {})",
        applied.messages,
        size(applied.bytes)
    )
}

fn error_counts(load: &Load) -> (usize, usize) {
    let mut files: Vec<&str> = load.problems.iter().map(|p| p.file.as_str()).collect();
    files.sort_unstable();
    files.dedup();
    (load.problems.len(), files.len())
}

/// `web.yaml changed`, `a.yaml, b.yaml added, c.yaml removed`; long lists become counts.
fn files_summary(load: &Load) -> String {
    let mut parts = Vec::new();
    for (names, what) in [
        (&load.changed, "changed"),
        (&load.added, "added"),
        (&load.removed, "removed"),
    ] {
        match names.len() {
            0 => {}
            1..=3 => parts.push(format!("{} {what}", names.join(", "))),
            n => parts.push(format!("{n} files {what}")),
        }
    }
    parts.join(", ")
}

/// `kept last good content of web.yaml (1 error)`, `not loaded (never valid): new.yaml (2 errors)`.
fn held_summary(load: &Load) -> Vec<String> {
    let describe = |last_good: bool| {
        load.held
            .iter()
            .filter(|h| h.last_good == last_good)
            .map(|h| match h.errors {
                0 => format!("{} (in conflict with enforced content)", h.file),
                n => format!("{} ({})", h.file, count(n, "error", "errors")),
            })
            .collect::<Vec<_>>()
    };
    let mut parts = Vec::new();
    let kept = describe(true);
    if !kept.is_empty() {
        parts.push(format!("kept last good content of {}", kept.join(", ")));
    }
    let ignored = describe(false);
    if !ignored.is_empty() {
        parts.push(format!("not loaded (never valid): {}", ignored.join(", ")));
    }
    parts
}

/// Objects added, removed and changed between two models, by identity. Where an
/// object was written (its origin) does not count as a change.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ModelDelta {
    /// Namespaces, endpoints, policies.
    pub added: [usize; 3],
    pub removed: [usize; 3],
    pub changed: [usize; 3],
}

impl ModelDelta {
    /// From the objects that changed, `new` being the model after the change.
    pub fn of(changes: &Changes, new: &Model) -> ModelDelta {
        fn tally<K: Ord, V>(
            i: usize,
            delta: &mut ModelDelta,
            changes: &BTreeMap<K, Option<V>>,
            new: &BTreeMap<K, V>,
        ) {
            for (key, old) in changes {
                match (old, new.contains_key(key)) {
                    (None, true) => delta.added[i] += 1,
                    (Some(_), false) => delta.removed[i] += 1,
                    (Some(_), true) => delta.changed[i] += 1,
                    (None, false) => {}
                }
            }
        }
        let mut delta = ModelDelta::default();
        tally(0, &mut delta, &changes.namespaces, &new.namespaces);
        tally(1, &mut delta, &changes.endpoints, &new.endpoints);
        tally(2, &mut delta, &changes.policies, &new.policies);
        tally(2, &mut delta, &changes.tiered, &new.tiered);
        // Host endpoints count as endpoints.
        tally(1, &mut delta, &changes.hosts, &new.hosts);
        delta
    }
}

impl std::fmt::Display for ModelDelta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const NOUNS: [(&str, &str); 3] = [
            ("namespace", "namespaces"),
            ("endpoint", "endpoints"),
            ("policy", "policies"),
        ];
        let mut parts = Vec::new();
        for (counts, what) in [
            (&self.added, "added"),
            (&self.removed, "removed"),
            (&self.changed, "changed"),
        ] {
            for (n, (one, many)) in counts.iter().zip(NOUNS) {
                if *n > 0 {
                    parts.push(format!("{} {what}", count(*n, one, many)));
                }
            }
        }
        if parts.is_empty() {
            f.write_str("no object changed")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// Programs `desired` as the whole table's content, for the syncs that cannot trust
/// what the kernel holds (start, SIGHUP, a retry). A transaction that deletes and
/// re-creates the table lets packets meet the new rules before some new sets answer
/// lookups (the kernel swaps some set backends' contents in after the generation
/// flips), so it can drop a packet of a flow that both rulesets allow. So when a
/// thorough read-back finds the table holding `previous` (the ruleset compiled last;
/// at start, the one restored from the state directory), or else `desired` itself,
/// only the difference is sent.
fn program_whole<D: Dataplane>(
    dataplane: &mut D,
    previous: Option<&Ruleset>,
    desired: &Ruleset,
    why: &str,
) -> (Result<Applied, crate::dataplane::Error>, String) {
    let mut candidates = vec![desired];
    // Pointer first: SIGHUP passes the same ruleset twice, and comparing it is a walk.
    if let Some(previous) = previous.filter(|p| !std::ptr::eq(*p, desired) && *p != desired) {
        candidates.insert(0, previous);
    }
    let held = candidates
        .into_iter()
        .find(|held| match dataplane.read_back(held, true) {
            Ok(drift) => drift.is_empty(),
            Err(e) => {
                log::debug!("read-back before a whole-table programming failed: {e}");
                false
            }
        });
    let delta = held.and_then(|held| crate::ir::diff::diff(held, desired).ok());
    match delta {
        Some(delta) if delta.is_empty() => (
            Ok(Applied {
                messages: 0,
                bytes: 0,
                elapsed: Duration::ZERO,
            }),
            format!("(the table already held it, read back: {why})"),
        ),
        Some(delta) => {
            let summary = delta.summary();
            match dataplane.update(desired, &delta) {
                Ok(applied) => (
                    Ok(applied),
                    format!("(read back, then changed: {why}; {summary})"),
                ),
                Err(e) => {
                    log::warn!("the kernel refused the change ({e}); replacing the whole table");
                    (
                        dataplane.replace(desired),
                        format!("(replaced the whole table: {why})"),
                    )
                }
            }
        }
        None => (
            dataplane.replace(desired),
            format!("(replaced the whole table: {why})"),
        ),
    }
}

fn size(bytes: usize) -> String {
    if bytes < 1024 {
        format!("{bytes} bytes")
    } else {
        format!("{} KB", bytes.div_ceil(1024))
    }
}

#[cfg(test)]
mod drift_log_tests {
    use super::*;

    #[test]
    fn repairs_in_a_row_are_summed_up_not_logged_each() {
        let start = Instant::now();
        let mut log = DriftLog::default();
        let cause = "rule deleted from chain x by nft (pid 42, port 42)";
        assert!(log.record(start, cause));
        for i in 1..=20 {
            assert!(!log.record(start + Duration::from_millis(100 * i), cause));
        }
        assert_eq!(log.quiet, 20);
        assert_eq!(log.by, BTreeMap::from([("nft".to_owned(), 20)]));
        assert_eq!(log.due(), Some(start + DRIFT_LOG_EVERY));
        log.summary(start + DRIFT_LOG_EVERY);
        assert_eq!((log.quiet, log.due()), (0, None));
        // Quiet for a while: the next repair is logged in full again.
        assert!(log.record(start + DRIFT_LOG_EVERY * 3, cause));
    }
}
