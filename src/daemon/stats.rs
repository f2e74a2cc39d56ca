//! The daemon's bookkeeping for `netpold status` and the metrics endpoint: written by
//! the main loop after each step, read by the servers' threads. A lock held for
//! microseconds; nothing here talks to the kernel.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::status::{DeniedFlow, DeniedFlows, FileInError, FlowKey, Histogram, LastSync, Report};

/// Seconds: from an edit's few milliseconds to a very large first load.
const SYNC_SECONDS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
const TRANSACTION_MESSAGES: [f64; 7] = [1.0, 10.0, 100.0, 1000.0, 10_000.0, 100_000.0, 1_000_000.0];
/// Distinct denied flows remembered; past it the rarest is forgotten for a new one.
const MAX_FLOWS: usize = 4096;
/// Flows `status` shows.
const TOP_FLOWS: usize = 10;

pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// How a sync or repair ended, as `netpold_syncs_total{result}` counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncResult {
    Programmed,
    /// The kernel already held the desired ruleset (or the directory could not be read
    /// and what is enforced stays).
    Unchanged,
    Failed,
    /// No valid load yet: nothing is programmed.
    NotProgrammed,
    /// A change another program made was put right.
    Repaired,
}

impl SyncResult {
    fn name(self) -> &'static str {
        match self {
            SyncResult::Programmed => "programmed",
            SyncResult::Unchanged => "unchanged",
            SyncResult::Failed => "failed",
            SyncResult::NotProgrammed => "not_programmed",
            SyncResult::Repaired => "repaired",
        }
    }
}

struct Inner {
    report: Report,
    flows: Option<Flows>,
}

struct Flows {
    group: u16,
    logged: u64,
    lost: u64,
    seen: HashMap<FlowKey, (u64, f64)>,
}

pub struct Stats(Mutex<Inner>);

impl Stats {
    pub fn new(node: &str, table: &str) -> Arc<Stats> {
        let report = Report {
            source: "daemon".to_owned(),
            table: table.to_owned(),
            node: Some(node.to_owned()),
            pid: Some(std::process::id()),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_unix: Some(unix_now()),
            sync_seconds: Some(Histogram::new(&SYNC_SECONDS)),
            transaction_messages: Some(Histogram::new(&TRANSACTION_MESSAGES)),
            ..Report::default()
        };
        Arc::new(Stats(Mutex::new(Inner {
            report,
            flows: None,
        })))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain numbers behind, still usable.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn sync(&self, result: SyncResult, took: Duration, line: &str, messages: Option<usize>) {
        let mut inner = self.lock();
        let r = &mut inner.report;
        *r.syncs.entry(result.name().to_owned()).or_default() += 1;
        if let Some(h) = &mut r.sync_seconds {
            h.observe(took.as_secs_f64());
        }
        if let (Some(h), Some(n)) = (&mut r.transaction_messages, messages) {
            h.observe(n as f64);
        }
        if result == SyncResult::Repaired {
            r.drift_repairs += 1;
        }
        r.last_sync = Some(LastSync {
            at_unix: unix_now(),
            seconds: took.as_secs_f64(),
            result: result.name().to_owned(),
            line: line.to_owned(),
        });
    }

    pub fn error(&self, kind: &str, n: u64) {
        if n > 0 {
            *self
                .lock()
                .report
                .errors
                .entry(kind.to_owned())
                .or_default() += n;
        }
    }

    pub fn files_in_error(&self, files: Vec<FileInError>) {
        self.lock().report.files_in_error = files;
    }

    pub fn objects(&self, objects: BTreeMap<String, u64>) {
        self.lock().report.objects = objects;
    }

    /// From now on drops read from NFLOG `group` are tallied.
    pub fn collect_flows(&self, group: u16) {
        self.lock().flows = Some(Flows {
            group,
            logged: 0,
            lost: 0,
            seen: HashMap::new(),
        });
    }

    pub fn denied(&self, key: FlowKey) {
        let now = unix_now();
        let mut inner = self.lock();
        let Some(flows) = &mut inner.flows else {
            return;
        };
        flows.logged += 1;
        if !flows.seen.contains_key(&key) && flows.seen.len() >= MAX_FLOWS {
            let rarest = flows
                .seen
                .iter()
                .min_by(|a, b| a.1.0.cmp(&b.1.0).then(a.1.1.total_cmp(&b.1.1)))
                .map(|(k, _)| k.clone());
            if let Some(k) = rarest {
                flows.seen.remove(&k);
            }
        }
        let entry = flows.seen.entry(key).or_insert((0, now));
        entry.0 += 1;
        entry.1 = now;
    }

    /// The drop-log reader's count of messages the kernel could not deliver.
    pub fn lost_drops(&self, lost: u64) {
        if let Some(flows) = &mut self.lock().flows {
            flows.lost = lost;
        }
    }

    /// Everything but the kernel's counters, which the caller reads at request time.
    pub fn snapshot(&self) -> Report {
        let inner = self.lock();
        let mut report = inner.report.clone();
        report.denied_flows = inner.flows.as_ref().map(|f| {
            let mut top: Vec<DeniedFlow> = f
                .seen
                .iter()
                .map(|(key, (packets, last))| DeniedFlow {
                    key: key.clone(),
                    packets: *packets,
                    last_unix: *last,
                })
                .collect();
            top.sort_by(|a, b| b.packets.cmp(&a.packets).then_with(|| a.key.cmp(&b.key)));
            top.truncate(TOP_FLOWS);
            DeniedFlows {
                group: f.group,
                logged: f.logged,
                lost: f.lost,
                top,
            }
        });
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(src: &str) -> FlowKey {
        FlowKey {
            src: src.into(),
            dst: "10.0.0.2".into(),
            protocol: "tcp".into(),
            dport: Some(80),
            endpoint: "a/b".into(),
            direction: "ingress".into(),
            cause: "isolated".into(),
            rule: None,
        }
    }

    #[test]
    fn syncs_and_flows_are_tallied() {
        let stats = Stats::new("n1", "netpold");
        stats.sync(
            SyncResult::Programmed,
            Duration::from_millis(20),
            "sync 1: x",
            Some(57),
        );
        stats.sync(
            SyncResult::Repaired,
            Duration::from_millis(5),
            "sync 2: y",
            Some(3),
        );
        stats.error("manifest", 2);
        stats.collect_flows(5);
        for _ in 0..3 {
            stats.denied(key("10.0.0.1"));
        }
        stats.denied(key("10.0.0.9"));
        let r = stats.snapshot();
        assert_eq!(r.syncs["programmed"], 1);
        assert_eq!(r.drift_repairs, 1);
        assert_eq!(r.errors["manifest"], 2);
        assert_eq!(r.last_sync.unwrap().line, "sync 2: y");
        assert_eq!(r.transaction_messages.unwrap().count, 2);
        let flows = r.denied_flows.unwrap();
        assert_eq!(flows.logged, 4);
        assert_eq!(flows.top[0].key.src, "10.0.0.1");
        assert_eq!(flows.top[0].packets, 3);
    }

    #[test]
    fn flow_table_is_bounded() {
        let stats = Stats::new("n1", "netpold");
        stats.collect_flows(1);
        stats.denied(key("busy"));
        stats.denied(key("busy"));
        for i in 0..MAX_FLOWS + 10 {
            stats.denied(key(&format!("10.1.{}.{}", i / 256, i % 256)));
        }
        let inner = stats.lock();
        let flows = inner.flows.as_ref().unwrap();
        assert_eq!(flows.seen.len(), MAX_FLOWS);
        assert!(flows.seen.contains_key(&key("busy")));
    }
}
