//! The daemon against a fake dataplane: the reconciler's decisions sync by sync, then
//! the whole loop with real inotify in a temporary directory.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::reconcile::{Outcome, Reconciler, Trigger};
use super::source::Source;
use super::state::StateDir;
use super::*;
use crate::dataplane::{Applied, Dataplane, Error};
use crate::ir::Ruleset;

/// Records the table after every transaction; fails the next `fail` ones.
#[derive(Clone, Default)]
struct Fake(Arc<Mutex<FakeState>>);

#[derive(Default)]
struct FakeState {
    replaced: Vec<Ruleset>,
    /// Transactions that were deltas rather than replacements.
    updates: usize,
    /// What the next read-back reports.
    drift: Vec<crate::dataplane::Drift>,
    fail: usize,
}

impl Fake {
    fn calls(&self) -> usize {
        self.0.lock().unwrap().replaced.len()
    }
    fn updates(&self) -> usize {
        self.0.lock().unwrap().updates
    }
    fn last(&self) -> Option<Ruleset> {
        self.0.lock().unwrap().replaced.last().cloned()
    }
    fn fail_next(&self, n: usize) {
        self.0.lock().unwrap().fail = n;
    }
    /// The next read-back finds the table changed by someone else.
    fn change_behind_our_back(&self) {
        self.0.lock().unwrap().drift = vec![crate::dataplane::Drift {
            object: crate::dataplane::DriftObject::Table,
            what: "changed by another program".to_owned(),
        }];
    }
}

fn refuse(state: &mut FakeState) -> Result<(), Error> {
    if state.fail > 0 {
        state.fail -= 1;
        return Err(Error(
            "chain ep_0123_in, rule 2: Operation not permitted".to_owned(),
        ));
    }
    Ok(())
}

const APPLIED: Applied = Applied {
    messages: 12,
    bytes: 3000,
    elapsed: Duration::from_millis(1),
};

impl Dataplane for Fake {
    fn replace(&mut self, desired: &Ruleset) -> Result<Applied, Error> {
        let mut state = self.0.lock().unwrap();
        refuse(&mut state)?;
        state.replaced.push(desired.clone());
        Ok(APPLIED)
    }

    fn update(
        &mut self,
        desired: &Ruleset,
        delta: &crate::ir::diff::Delta,
    ) -> Result<Applied, Error> {
        let mut state = self.0.lock().unwrap();
        refuse(&mut state)?;
        let held = state.replaced.last().expect("a delta follows a replace");
        // What a kernel holding `held` would hold after the delta.
        let after = crate::ir::diff::apply(held, delta, desired);
        assert_eq!(
            &after, desired,
            "the delta must lead to the desired ruleset"
        );
        state.replaced.push(after);
        state.updates += 1;
        Ok(APPLIED)
    }

    fn read_back(
        &mut self,
        desired: &Ruleset,
        _thorough: bool,
    ) -> Result<Vec<crate::dataplane::Drift>, Error> {
        let mut state = self.0.lock().unwrap();
        let drift = std::mem::take(&mut state.drift);
        if !drift.is_empty() || state.replaced.last() == Some(desired) {
            return Ok(drift);
        }
        Ok(vec![crate::dataplane::Drift {
            object: crate::dataplane::DriftObject::Table,
            what: "the table holds another ruleset".to_owned(),
        }])
    }
}

/// A local WorkloadEndpoint `default/<name>` labelled `app: <name>`.
fn endpoint(name: &str, interface: &str, ip: &str) -> String {
    format!(
        "apiVersion: netpold.io/v1\nkind: WorkloadEndpoint\nmetadata: {{name: {name}, labels: {{app: {name}}}}}\nspec: {{interfaceName: {interface}, ips: [\"{ip}\"]}}\n"
    )
}

/// A policy isolating `app: <app>` for ingress.
fn policy(name: &str, app: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}}}\nspec: {{podSelector: {{matchLabels: {{app: {app}}}}}, ingress: []}}\n"
    )
}

/// Parses (a syntax error on line 1).
const BROKEN: &str = "kind: [unclosed\n";

/// Interfaces that have dispatch entries: the local endpoints programmed.
fn interfaces(ruleset: &Ruleset) -> BTreeSet<String> {
    ruleset
        .maps
        .values()
        .flat_map(|m| m.entries.keys().cloned())
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn reconciler(dir: &Path, state: Option<&Path>, fake: &Fake) -> Reconciler<Fake> {
    let source = Source::new(dir, state.map(|s| StateDir::new(s, dir)));
    Reconciler::new(source, fake.clone(), "n1", "netpold")
}

fn line(outcome: &Outcome) -> &str {
    &outcome.line.as_ref().expect("a sync line").1
}

fn level(outcome: &Outcome) -> log::Level {
    outcome.line.as_ref().expect("a sync line").0
}

#[test]
fn nothing_is_programmed_before_the_first_valid_load() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "a.yaml", &endpoint("a", "veth-a", "10.0.0.1"));
    write(dir, "b.yaml", BROKEN);
    let fake = Fake::default();
    let mut r = reconciler(dir, None, &fake);
    let first = r.sync(Trigger::Start);
    assert_eq!(fake.calls(), 0);
    assert!(!first.programmed);
    assert_eq!(level(&first), log::Level::Warn);
    assert!(
        line(&first).starts_with(
            "sync 1: not programmed: 1 error in 1 file; nothing is programmed before the first valid load"
        ),
        "{}",
        line(&first)
    );
    // A rescan that finds nothing new says nothing.
    assert!(r.sync(Trigger::Rescan).line.is_none());
    write(dir, "b.yaml", &policy("p", "a"));
    let second = r.sync(Trigger::Change);
    assert!(second.programmed);
    assert_eq!(fake.calls(), 1);
    assert_eq!(interfaces(&fake.last().unwrap()), set(&["veth-a"]));
    assert!(line(&second).starts_with("sync 2: "), "{}", line(&second));
    assert!(
        line(&second).contains("programmed 1 namespace, 1 endpoint (1 local), 1 policy: "),
        "{}",
        line(&second)
    );
    assert!(
        second
            .status
            .starts_with("enforcing 1 policy on 1 endpoint")
    );
}

#[test]
fn a_broken_file_keeps_its_last_good_content_until_fixed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "a.yaml", &endpoint("a", "veth-a", "10.0.0.1"));
    let fake = Fake::default();
    let mut r = reconciler(dir, None, &fake);
    assert!(r.sync(Trigger::Start).programmed);

    write(dir, "a.yaml", BROKEN);
    write(dir, "b.yaml", &endpoint("b", "veth-b", "10.0.0.2"));
    let held = r.sync(Trigger::Change);
    assert_eq!(
        interfaces(&fake.last().unwrap()),
        set(&["veth-a", "veth-b"])
    );
    assert_eq!(level(&held), log::Level::Warn);
    let expected = format!(
        "kept last good content of {}/a.yaml (1 error)",
        dir.display()
    );
    assert!(line(&held).contains(&expected), "{}", line(&held));
    assert!(held.status.contains("1 file held at last good content"));

    // Fixed: its new content replaces the old.
    write(dir, "a.yaml", &endpoint("a", "veth-c", "10.0.0.1"));
    let fixed = r.sync(Trigger::Change);
    assert_eq!(level(&fixed), log::Level::Info);
    assert_eq!(
        interfaces(&fake.last().unwrap()),
        set(&["veth-b", "veth-c"])
    );
    assert!(
        line(&fixed).contains("a.yaml changed: 1 endpoint changed"),
        "{}",
        line(&fixed)
    );
}

#[test]
fn a_file_that_was_never_valid_contributes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "a.yaml", &endpoint("a", "veth-a", "10.0.0.1"));
    let fake = Fake::default();
    let mut r = reconciler(dir, None, &fake);
    r.sync(Trigger::Start);
    // One valid object and one invalid: the file as a whole is not loaded.
    let mixed = format!(
        "{}---\n{}",
        endpoint("new", "veth-new", "10.0.0.9"),
        endpoint("bad", "veth-bad", "10.0.0.300")
    );
    write(dir, "new.yaml", &mixed);
    let outcome = r.sync(Trigger::Change);
    assert_eq!(fake.calls(), 1, "the ruleset is unchanged");
    assert!(
        line(&outcome).contains("not loaded (never valid): ")
            && line(&outcome).contains("new.yaml (1 error)"),
        "{}",
        line(&outcome)
    );
    assert!(line(&outcome).contains("no change to the ruleset"));
}

#[test]
fn an_unchanged_ruleset_is_not_programmed_again_and_sighup_reads_it_back() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "a.yaml", &endpoint("a", "veth-a", "10.0.0.1"));
    let fake = Fake::default();
    let mut r = reconciler(dir, None, &fake);
    r.sync(Trigger::Start);
    // Same objects, different text.
    write(
        dir,
        "a.yaml",
        &format!("# a comment\n{}", endpoint("a", "veth-a", "10.0.0.1")),
    );
    let touched = r.sync(Trigger::Change);
    assert_eq!(fake.calls(), 1);
    assert!(
        line(&touched).starts_with("sync 2: ")
            && line(&touched).contains("a.yaml changed: no object changed; no change to the ruleset (1 file read, 1 parsed)"),
        "{}",
        line(&touched)
    );
    assert!(r.sync(Trigger::Rescan).line.is_none());
    assert_eq!(fake.calls(), 1);

    // SIGHUP reads the table back: as programmed, so nothing is sent.
    let hup = r.sync(Trigger::Hangup);
    assert_eq!(fake.calls(), 1);
    assert!(hup.programmed);
    assert!(
        line(&hup).starts_with("sync 3: SIGHUP: programmed ")
            && line(&hup)
                .contains("(the table already held it, read back: SIGHUP) with no transaction"),
        "{}",
        line(&hup)
    );
    // Changed by someone else: SIGHUP replaces it.
    fake.change_behind_our_back();
    let hup = r.sync(Trigger::Hangup);
    assert_eq!(fake.calls(), 2);
    assert!(
        line(&hup).contains("(replaced the whole table: SIGHUP)"),
        "{}",
        line(&hup)
    );
}

#[test]
fn changes_are_deltas_and_a_refused_delta_replaces_the_table() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "a.yaml", &endpoint("a", "veth-a", "10.0.0.1"));
    write(dir, "p.yaml", &policy("p", "a"));
    let fake = Fake::default();
    let mut r = reconciler(dir, None, &fake);
    let first = r.sync(Trigger::Start);
    assert!(line(&first).contains("(replaced the whole table: the first transaction)"));
    assert_eq!(fake.updates(), 0);

    // The Fake checks that each delta turns what it holds into the desired ruleset.
    write(dir, "b.yaml", &endpoint("b", "veth-b", "10.0.0.2"));
    let added = r.sync(Trigger::Change);
    assert!(added.programmed);
    assert!(line(&added).contains("(changed: "), "{}", line(&added));
    assert!(line(&added).contains("2 chains added"), "{}", line(&added));
    assert_eq!(fake.updates(), 1);
    write(dir, "p.yaml", &policy("p", "b"));
    assert!(r.sync(Trigger::Change).programmed);
    fs::remove_file(dir.join("a.yaml")).unwrap();
    let removed = r.sync(Trigger::Change);
    assert!(
        line(&removed).contains("2 chains removed"),
        "{}",
        line(&removed)
    );
    assert_eq!(fake.updates(), 3);

    // A refused delta (the table changed behind our back) is followed at once by a
    // replacement of the whole table.
    write(dir, "c.yaml", &endpoint("c", "veth-c", "10.0.0.3"));
    fake.fail_next(1);
    let repaired = r.sync(Trigger::Change);
    assert!(repaired.programmed);
    assert!(
        line(&repaired).contains("(replaced the whole table after the change was refused)"),
        "{}",
        line(&repaired)
    );
    assert_eq!(fake.updates(), 3);

    // SIGHUP with an edit not yet synced: the table read back is as programmed, so
    // only the difference is sent; a whole replacement could drop packets of flows
    // that both rulesets allow.
    write(dir, "d.yaml", &endpoint("d", "veth-d", "10.0.0.4"));
    let hup = r.sync(Trigger::Hangup);
    assert!(
        line(&hup).contains("(read back, then changed: SIGHUP; ")
            && line(&hup).contains("2 chains added"),
        "{}",
        line(&hup)
    );
    assert_eq!(fake.updates(), 4);
    assert_eq!(
        interfaces(&fake.last().unwrap()),
        set(&["veth-b", "veth-c", "veth-d"])
    );
    // The table changed behind our back: SIGHUP replaces it whole.
    fake.change_behind_our_back();
    let hup = r.sync(Trigger::Hangup);
    assert!(
        line(&hup).contains("(replaced the whole table: SIGHUP)"),
        "{}",
        line(&hup)
    );
    assert_eq!(fake.updates(), 4);
}

#[test]
fn a_failed_transaction_is_retried_with_backoff() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "a.yaml", &endpoint("a", "veth-a", "10.0.0.1"));
    let fake = Fake::default();
    fake.fail_next(2);
    let mut r = reconciler(dir, None, &fake);
    let first = r.sync(Trigger::Start);
    assert_eq!(level(&first), log::Level::Error);
    assert!(!first.programmed);
    assert_eq!(first.retry_in, Some(Duration::from_secs(1)));
    assert!(
        line(&first)
            .contains("transaction failed: chain ep_0123_in, rule 2: Operation not permitted"),
        "{}",
        line(&first)
    );
    let second = r.sync(Trigger::Retry);
    assert_eq!(second.retry_in, Some(Duration::from_secs(2)));
    assert!(line(&second).starts_with("sync 2: retry: transaction failed"));
    let third = r.sync(Trigger::Retry);
    assert!(third.programmed);
    assert_eq!(third.retry_in, None);
    assert_eq!(fake.calls(), 1);
    assert!(line(&third).starts_with("sync 3: retry: programmed "));

    // After a success, a failure on a change (the delta, then the whole table) keeps
    // what was programmed and retries.
    write(dir, "b.yaml", &endpoint("b", "veth-b", "10.0.0.2"));
    fake.fail_next(2);
    let failed = r.sync(Trigger::Change);
    assert_eq!(failed.retry_in, Some(Duration::from_secs(1)));
    assert!(
        failed
            .status
            .contains("the previously programmed ruleset stays")
    );
    assert!(r.sync(Trigger::Retry).programmed);
    assert_eq!(
        interfaces(&fake.last().unwrap()),
        set(&["veth-a", "veth-b"])
    );

    // After a failure what the kernel holds is not taken for granted but read back:
    // the change was undone meanwhile, and the table, which the failures left alone,
    // holds what is wanted.
    write(dir, "c.yaml", &endpoint("c", "veth-c", "10.0.0.3"));
    fake.fail_next(2);
    assert!(r.sync(Trigger::Change).retry_in.is_some());
    fs::remove_file(dir.join("c.yaml")).unwrap();
    let calls = fake.calls();
    let undone = r.sync(Trigger::Retry);
    assert_eq!(undone.retry_in, None);
    assert!(
        line(&undone).contains(
            "(the table already held it, read back: after a failed transaction) with no transaction"
        ),
        "{}",
        line(&undone)
    );
    assert_eq!(fake.calls(), calls);
    assert_eq!(
        interfaces(&fake.last().unwrap()),
        set(&["veth-a", "veth-b"])
    );
    assert!(r.sync(Trigger::Rescan).line.is_none());
}

#[test]
fn backoff_doubles_up_to_thirty_seconds() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "a.yaml", &endpoint("a", "veth-a", "10.0.0.1"));
    let fake = Fake::default();
    fake.fail_next(7);
    let mut r = reconciler(tmp.path(), None, &fake);
    let waits: Vec<u64> = (0..7)
        .map(|_| r.sync(Trigger::Retry).retry_in.unwrap().as_secs())
        .collect();
    assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30]);
}

#[test]
fn a_start_after_offline_changes_sends_only_the_difference() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    let state = tmp.path().join("state");
    write(&dir, "a.yaml", &endpoint("a", "veth-a", "10.0.0.1"));
    write(&dir, "p.yaml", &policy("p", "a"));
    // The kernel outlives the daemon: every start below shares `kernel`.
    let kernel = Fake::default();
    reconciler(&dir, Some(&state), &kernel).sync(Trigger::Start);
    assert_eq!((kernel.calls(), kernel.updates()), (1, 0));

    // Changed while the daemon was down: one endpoint added, the policy removed.
    write(&dir, "b.yaml", &endpoint("b", "veth-b", "10.0.0.2"));
    fs::remove_file(dir.join("p.yaml")).unwrap();
    let start = reconciler(&dir, Some(&state), &kernel).sync(Trigger::Start);
    assert!(start.programmed);
    assert!(
        line(&start).contains("(read back, then changed: the first transaction; "),
        "{}",
        line(&start)
    );
    assert_eq!(kernel.updates(), 1, "a delta, not a whole table");
    assert_eq!(
        interfaces(&kernel.last().unwrap()),
        set(&["veth-a", "veth-b"])
    );

    // A table changed by another program while the daemon was down is replaced whole.
    write(&dir, "p.yaml", &policy("p", "b"));
    kernel.change_behind_our_back();
    let start = reconciler(&dir, Some(&state), &kernel).sync(Trigger::Start);
    assert!(
        line(&start).contains("(replaced the whole table: the first transaction)"),
        "{}",
        line(&start)
    );
    assert_eq!(kernel.updates(), 1);

    // Nothing changed: nothing is sent.
    let start = reconciler(&dir, Some(&state), &kernel).sync(Trigger::Start);
    assert!(
        line(&start).contains("(the table already held it, read back: the first transaction)"),
        "{}",
        line(&start)
    );
}

#[test]
fn last_good_content_survives_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    let state = tmp.path().join("state");
    write(&dir, "a.yaml", &endpoint("a", "veth-a", "10.0.0.1"));
    write(&dir, "gone.yaml", &endpoint("g", "veth-g", "10.0.0.7"));
    let fake = Fake::default();
    reconciler(&dir, Some(&state), &fake).sync(Trigger::Start);

    // Broken (and one file deleted) while the daemon is down.
    write(&dir, "a.yaml", BROKEN);
    fs::remove_file(dir.join("gone.yaml")).unwrap();
    let after = Fake::default();
    let outcome = reconciler(&dir, Some(&state), &after).sync(Trigger::Start);
    assert!(outcome.programmed, "{}", line(&outcome));
    assert_eq!(interfaces(&after.last().unwrap()), set(&["veth-a"]));
    assert!(line(&outcome).contains("kept last good content of"));

    // Without the state directory the same start programs nothing.
    let fresh = Fake::default();
    reconciler(&dir, None, &fresh).sync(Trigger::Start);
    assert_eq!(fresh.calls(), 0);
}

#[test]
fn a_conflict_with_enforced_content_rejects_the_change() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "b.yaml", &endpoint("x", "veth-x", "10.0.0.1"));
    let fake = Fake::default();
    let mut r = reconciler(dir, None, &fake);
    r.sync(Trigger::Start);
    // a.yaml sorts first, so the duplicate is reported in b.yaml, which did not change.
    write(dir, "a.yaml", &endpoint("x", "veth-y", "10.0.0.2"));
    let outcome = r.sync(Trigger::Change);
    assert_eq!(fake.calls(), 1);
    assert_eq!(interfaces(&fake.last().unwrap()), set(&["veth-x"]));
    assert!(
        line(&outcome).contains("not loaded (never valid): "),
        "{}",
        line(&outcome)
    );

    // An address taken from another endpoint: refused, whichever endpoint the
    // clash is reported on (the later in file order, b.yaml's here).
    write(dir, "a.yaml", &endpoint("w", "veth-w", "10.0.0.1"));
    let clash = r.sync(Trigger::Change);
    assert!(
        line(&clash).contains("a.yaml (in conflict with enforced content)"),
        "{}",
        line(&clash)
    );
    assert_eq!(interfaces(&fake.last().unwrap()), set(&["veth-x"]));
    write(dir, "a.yaml", &endpoint("z", "veth-z", "10.0.0.1"));
    let clash = r.sync(Trigger::Change);
    assert!(
        line(&clash).contains("a.yaml (in conflict with enforced content)"),
        "{}",
        line(&clash)
    );
    assert_eq!(interfaces(&fake.last().unwrap()), set(&["veth-x"]));
}

#[test]
fn a_missing_directory_keeps_what_is_enforced() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    write(&dir, "a.yaml", &endpoint("a", "veth-a", "10.0.0.1"));
    let fake = Fake::default();
    let mut r = reconciler(&dir, None, &fake);
    r.sync(Trigger::Start);
    fs::remove_dir_all(&dir).unwrap();
    let gone = r.sync(Trigger::Change);
    assert_eq!(fake.calls(), 1);
    assert_eq!(level(&gone), log::Level::Error);
    assert!(
        line(&gone).starts_with(&format!("sync 2: manifest directory {}: ", dir.display()))
            && line(&gone).contains("the ruleset programmed last stays enforced"),
        "{}",
        line(&gone)
    );
    assert!(r.sync(Trigger::Rescan).line.is_none(), "said once");
    // SIGHUP re-programs what was enforced (a repair), not an empty table.
    fake.change_behind_our_back();
    let hup = r.sync(Trigger::Hangup);
    assert_eq!(fake.calls(), 2);
    assert!(line(&hup).starts_with("sync 3: "));
    assert_eq!(interfaces(&fake.last().unwrap()), set(&["veth-a"]));

    write(&dir, "b.yaml", &endpoint("b", "veth-b", "10.0.0.2"));
    let back = r.sync(Trigger::Change);
    assert!(line(&back).starts_with("sync 4: "), "{}", line(&back));
    assert_eq!(interfaces(&fake.last().unwrap()), set(&["veth-b"]));
}

/// What `status` and the metrics report: each sync's result, problems counted once
/// however many syncs report them, an unreadable directory a failure.
#[test]
fn stats_count_results_and_problems_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    let fake = Fake::default();
    let mut r = reconciler(&dir, None, &fake);
    r.sync(Trigger::Start);
    let stats = r.stats();
    let report = stats.snapshot();
    assert_eq!(report.last_sync.unwrap().result, "not_programmed");
    assert_eq!(report.errors["directory"], 1);

    write(&dir, "a.yaml", &endpoint("a", "veth-a", "10.0.0.1"));
    write(&dir, "b.yaml", BROKEN);
    write(&dir, "c.yaml", &policy("p", "a"));
    r.sync(Trigger::Change);
    write(&dir, "b.yaml", &policy("q", "a"));
    r.sync(Trigger::Change);
    write(&dir, "b.yaml", BROKEN);
    for i in 0..3 {
        write(&dir, "c.yaml", &policy(&format!("p{i}"), "a"));
        r.sync(Trigger::Change);
    }
    let report = stats.snapshot();
    assert_eq!(report.errors["manifest"], 2, "broken twice: {report:?}");
    assert_eq!(report.files_in_error.len(), 1);
    assert!(report.files_in_error[0].file.ends_with("b.yaml"));
    assert!(report.files_in_error[0].last_good);
    assert_eq!(report.syncs["programmed"], 4, "{:?}", report.syncs);
    assert_eq!(report.objects["policies"], 2);

    fs::remove_dir_all(&dir).unwrap();
    r.sync(Trigger::Change);
    let report = stats.snapshot();
    assert_eq!(report.last_sync.unwrap().result, "failed");
    assert_eq!(report.errors["directory"], 2);
}

#[test]
fn a_policy_enforced_elsewhere_is_counted_apart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "a.yaml", &endpoint("a", "veth-a", "10.0.0.1"));
    write(dir, "p.yaml", &policy("p", "a"));
    // `b` runs on n2, so its policy is enforced there, not here.
    write(
        dir,
        "b.yaml",
        &endpoint("b", "veth-b", "10.0.0.2").replace("{interfaceName", "{node: n2, interfaceName"),
    );
    write(dir, "q.yaml", &policy("q", "b"));
    let fake = Fake::default();
    let mut r = reconciler(dir, None, &fake);
    let first = r.sync(Trigger::Start);
    assert!(
        line(&first).contains("2 endpoints (1 local), 2 policies (1 enforced here): "),
        "{}",
        line(&first)
    );
    assert!(
        first
            .status
            .starts_with("enforcing 1 of 2 policies on 2 endpoints (1 local)"),
        "{}",
        first.status
    );
    let report = r.stats().snapshot();
    assert_eq!(report.objects["policies"], 2);
    assert_eq!(report.objects["policies_enforced"], 1);
    // b moves here: q comes with it, in an update.
    write(dir, "b.yaml", &endpoint("b", "veth-b", "10.0.0.2"));
    let moved = r.sync(Trigger::Change);
    assert!(
        line(&moved).contains("2 endpoints (2 local), 2 policies: "),
        "{}",
        line(&moved)
    );
    assert!(line(&moved).contains("(changed: "), "{}", line(&moved));
    assert_eq!(r.stats().snapshot().objects["policies_enforced"], 2);
}

#[test]
fn every_sync_logs_one_numbered_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "a.yaml", &endpoint("a", "veth-a", "10.0.0.1"));
    let fake = Fake::default();
    let mut r = reconciler(dir, None, &fake);
    let mut lines = vec![r.sync(Trigger::Start).line];
    write(dir, "p.yaml", &policy("p", "a"));
    lines.push(r.sync(Trigger::Change).line);
    lines.push(r.sync(Trigger::Rescan).line);
    lines.push(r.sync(Trigger::Hangup).line);
    fs::remove_file(dir.join("p.yaml")).unwrap();
    lines.push(r.sync(Trigger::Rescan).line);
    let lines: Vec<String> = lines.into_iter().flatten().map(|(_, l)| l).collect();
    assert_eq!(lines.len(), 4, "{lines:#?}");
    for (i, l) in lines.iter().enumerate() {
        assert!(l.starts_with(&format!("sync {}: ", i + 1)), "{l}");
        assert!(l.contains(" ms (load "), "{l}");
    }
    assert!(
        lines[1].contains("p.yaml added: 1 policy added; programmed"),
        "{}",
        lines[1]
    );
    assert!(
        lines[3].contains("rescan: ") && lines[3].contains("p.yaml removed: 1 policy removed"),
        "{}",
        lines[3]
    );
}

// The loop, with real inotify.

const DEBOUNCE: Duration = Duration::from_millis(50);
/// How long a change may take to be programmed: the debounce plus a generous margin
/// for a loaded test machine.
const WITHIN: Duration = Duration::from_secs(5);

struct Running {
    sender: std::sync::mpsc::Sender<Event>,
    thread: JoinHandle<Fake>,
    fake: Fake,
}

impl Running {
    fn start(dir: &Path) -> Running {
        let fake = Fake::default();
        let options = Options {
            manifests: dir.to_path_buf(),
            node: "n1".to_owned(),
            table: "netpold".to_owned(),
            state_dir: None,
            debounce: DEBOUNCE,
            resync: Duration::from_secs(3600),
            compile: Default::default(),
            strict_modes: true,
        };
        let daemon = Daemon::new(options, fake.clone(), Notifier::none()).unwrap();
        let sender = daemon.sender();
        let thread = std::thread::spawn(move || daemon.run());
        Running {
            sender,
            thread,
            fake,
        }
    }

    /// Waits until the last programmed ruleset has exactly these interfaces.
    fn expect(&self, names: &[&str]) -> Duration {
        let started = Instant::now();
        let want = set(names);
        loop {
            if self.fake.last().is_some_and(|r| interfaces(&r) == want) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < WITHIN,
                "expected {want:?}, programmed {:?}",
                self.fake.last().map(|r| interfaces(&r))
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn stop(self) -> Fake {
        self.sender.send(Event::Terminate("test")).unwrap();
        self.thread.join().unwrap()
    }
}

fn tree() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("manifests.d");
    write(&dir, "a.yaml", &endpoint("a", "veth-a", "10.0.0.1"));
    (tmp, dir)
}

#[test]
fn watch_sees_rename_saves_deletes_and_new_subdirectories() {
    let (_tmp, dir) = tree();
    let running = Running::start(&dir);
    running.expect(&["veth-a"]);

    // An editor's save: a temporary file renamed over the original.
    write(&dir, ".a.yaml.swp", &endpoint("a", "veth-a2", "10.0.0.1"));
    fs::rename(dir.join(".a.yaml.swp"), dir.join("a.yaml")).unwrap();
    running.expect(&["veth-a2"]);

    write(
        &dir,
        "sub/deeper/b.yaml",
        &endpoint("b", "veth-b", "10.0.0.2"),
    );
    running.expect(&["veth-a2", "veth-b"]);
    // The new subdirectory is watched too.
    write(
        &dir,
        "sub/deeper/b.yaml",
        &endpoint("b", "veth-b2", "10.0.0.2"),
    );
    running.expect(&["veth-a2", "veth-b2"]);

    fs::remove_file(dir.join("a.yaml")).unwrap();
    running.expect(&["veth-b2"]);
    running.stop();
}

#[test]
fn watch_sees_the_directory_removed_recreated_and_replaced() {
    let (tmp, dir) = tree();
    let running = Running::start(&dir);
    running.expect(&["veth-a"]);

    fs::remove_dir_all(&dir).unwrap();
    std::thread::sleep(DEBOUNCE * 4);
    // Deleting the directory does not empty the table.
    assert_eq!(interfaces(&running.fake.last().unwrap()), set(&["veth-a"]));
    assert_eq!(running.fake.calls(), 1);

    write(&dir, "b.yaml", &endpoint("b", "veth-b", "10.0.0.2"));
    running.expect(&["veth-b"]);

    // `mv dir dir.old && mv new dir`.
    let new = tmp.path().join("new");
    write(&new, "c.yaml", &endpoint("c", "veth-c", "10.0.0.3"));
    fs::rename(&dir, tmp.path().join("old")).unwrap();
    fs::rename(&new, &dir).unwrap();
    running.expect(&["veth-c"]);
    // Watches follow the new directory.
    write(&dir, "d.yaml", &endpoint("d", "veth-d", "10.0.0.4"));
    running.expect(&["veth-c", "veth-d"]);
    running.stop();
}

#[test]
fn watch_follows_an_atomic_symlink_swap() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(
        &root.join("rev1"),
        "a.yaml",
        &endpoint("a", "veth-a", "10.0.0.1"),
    );
    write(
        &root.join("rev2"),
        "sub/b.yaml",
        &endpoint("b", "veth-b", "10.0.0.2"),
    );
    let dir = root.join("manifests.d");
    std::os::unix::fs::symlink("rev1", &dir).unwrap();
    let running = Running::start(&dir);
    running.expect(&["veth-a"]);

    // `ln -s rev2 tmp && mv -T tmp manifests.d`
    std::os::unix::fs::symlink("rev2", root.join("tmp")).unwrap();
    fs::rename(root.join("tmp"), &dir).unwrap();
    let took = running.expect(&["veth-b"]);
    assert!(took < WITHIN);
    // The new target's tree is watched, the old one's is not needed any more.
    write(
        &root.join("rev2"),
        "sub/b.yaml",
        &endpoint("b", "veth-b2", "10.0.0.2"),
    );
    running.expect(&["veth-b2"]);
    let calls = running.fake.calls();
    write(
        &root.join("rev1"),
        "a.yaml",
        &endpoint("a", "veth-z", "10.0.0.1"),
    );
    std::thread::sleep(DEBOUNCE * 4);
    assert_eq!(running.fake.calls(), calls);
    running.stop();
}

#[test]
fn a_burst_of_changes_is_one_reload() {
    let (_tmp, dir) = tree();
    let running = Running::start(&dir);
    running.expect(&["veth-a"]);
    for i in 0..20 {
        write(
            &dir,
            &format!("e{i:02}.yaml"),
            &endpoint(
                &format!("e{i}"),
                &format!("veth-e{i}"),
                &format!("10.0.1.{i}"),
            ),
        );
    }
    let mut want: Vec<String> = (0..20).map(|i| format!("veth-e{i}")).collect();
    want.push("veth-a".to_owned());
    let want: Vec<&str> = want.iter().map(String::as_str).collect();
    running.expect(&want);
    let fake = running.stop();
    // One for the start, and one or (on a slow machine, a pause mid-burst) two more.
    assert!(fake.calls() <= 3, "{} transactions", fake.calls());
}

#[test]
fn sighup_reprograms_and_terminate_exits() {
    let (_tmp, dir) = tree();
    let running = Running::start(&dir);
    running.expect(&["veth-a"]);
    running.fake.change_behind_our_back();
    running.sender.send(Event::Hangup).unwrap();
    let started = Instant::now();
    while running.fake.calls() < 2 {
        assert!(started.elapsed() < WITHIN, "SIGHUP did not program");
        std::thread::sleep(Duration::from_millis(10));
    }
    let fake = running.stop();
    assert_eq!(fake.calls(), 2);
}

#[test]
fn a_read_back_that_differs_is_repaired_object_by_object() {
    use crate::dataplane::{Drift, DriftObject};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "a.yaml", &endpoint("a", "veth-a", "10.0.0.1"));
    write(dir, "p.yaml", &policy("p", "a"));
    let fake = Fake::default();
    let mut r = reconciler(dir, None, &fake);
    assert!(r.sync(Trigger::Start).programmed);
    // As programmed: nothing to do, nothing logged.
    assert!(r.check_drift(false).line.is_none());
    assert_eq!(fake.calls(), 1);

    let programmed = fake.last().unwrap();
    let chain = programmed
        .chains
        .keys()
        .find(|c| c.starts_with("pol_"))
        .unwrap()
        .clone();
    fake.0.lock().unwrap().drift = vec![
        Drift {
            object: DriftObject::Chain(chain.clone()),
            what: format!("chain {chain}: 0 rules, expected 1"),
        },
        Drift {
            object: DriftObject::Set("local_addrs4".into()),
            what: "set local_addrs4: 1 element missing".into(),
        },
    ];
    let repaired = r.check_drift(false);
    let text = line(&repaired);
    assert_eq!(level(&repaired), log::Level::Warn);
    assert!(
        text.contains("drift: the table read back differs: chain ")
            && text.contains(&format!("rewrote chain {chain}, refilled set local_addrs4")),
        "{text}"
    );
    assert_eq!(fake.updates(), 1);
    assert_eq!(fake.last().unwrap(), programmed);

    // Something only a whole table puts right.
    fake.0.lock().unwrap().drift = vec![Drift {
        object: DriftObject::Table,
        what: "table inet netpold is missing".into(),
    }];
    assert!(line(&r.check_drift(false)).contains("replaced the whole table"));
    assert_eq!(fake.updates(), 1);
    assert_eq!(fake.calls(), 3);
}

#[test]
fn a_file_is_read_again_only_when_its_metadata_changed() {
    use super::source::Reload;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "a.yaml", &endpoint("a", "veth-a", "10.0.0.1"));
    write(dir, "b.yaml", &endpoint("b", "veth-b", "10.0.0.2"));
    let mut source = Source::new(dir, None);
    source.settle_after(Duration::from_millis(50));
    // Read before the files settled: read again next time.
    assert_eq!(source.reload().unwrap().read, 2);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(source.reload().unwrap().read, 2);
    let unchanged = source.reload().unwrap();
    assert_eq!((unchanged.read, unchanged.parsed), (0, 0));
    assert!(!unchanged.files_touched());

    // Same size, new content: the change time differs.
    write(dir, "a.yaml", &endpoint("a", "veth-x", "10.0.0.1"));
    let changed = source.reload().unwrap();
    assert_eq!((changed.read, changed.parsed), (1, 1));
    assert!(source.model().endpoints[&("default".into(), "a".into())].interface == "veth-x");
    // Everything is read when asked.
    assert_eq!(source.reload_with(Reload::Reread).unwrap().read, 2);
}

#[test]
fn a_clean_change_is_patched_and_a_conflict_is_built_whole() {
    use super::source::Before;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "a.yaml", &endpoint("a", "veth-a", "10.0.0.1"));
    let mut source = Source::new(dir, None);
    assert!(matches!(source.reload().unwrap().before, Before::Model(_)));
    write(dir, "b.yaml", &endpoint("b", "veth-b", "10.0.0.2"));
    let Before::Patched(changes) = source.reload().unwrap().before else {
        panic!("not patched")
    };
    assert_eq!(changes.endpoints.len(), 1);
    // An address taken: the full build reports it, and the next load is whole too.
    write(dir, "c.yaml", &endpoint("c", "veth-c", "10.0.0.2"));
    let clash = source.reload().unwrap();
    assert!(matches!(clash.before, Before::Model(_)));
    assert_eq!(clash.problems.len(), 1, "{:?}", clash.problems);
    fs::remove_file(dir.join("c.yaml")).unwrap();
    assert!(matches!(source.reload().unwrap().before, Before::Model(_)));
    write(dir, "c.yaml", &endpoint("c", "veth-c", "10.0.0.3"));
    assert!(matches!(
        source.reload().unwrap().before,
        Before::Patched(_)
    ));
    assert_eq!(source.model().endpoints.len(), 3);
}

/// The ordered policy kinds are patched in like the others: added, changed, removed,
/// with the namespace a namespaced one names implied while it stays; a second object of
/// the same kind and name is built whole and reported.
#[test]
fn ordered_policies_are_patched_in_and_out() {
    use super::source::Before;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "a.yaml", &endpoint("a", "veth-a", "10.0.0.1"));
    let mut source = Source::new(dir, None);
    assert!(matches!(source.reload().unwrap().before, Before::Model(_)));
    let tiered = |order: u32| {
        format!(
            "apiVersion: netpold.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p, namespace: shop}}\nspec: {{order: {order}, ingress: [{{action: Deny}}]}}\n---\napiVersion: netpold.io/v1\nkind: GlobalNetworkPolicy\nmetadata: {{name: p}}\nspec: {{egress: [{{action: Log}}]}}\n"
        )
    };
    write(dir, "t.yaml", &tiered(10));
    let Before::Patched(changes) = source.reload().unwrap().before else {
        panic!("not patched")
    };
    assert_eq!(changes.tiered.len(), 2);
    assert!(source.model().namespaces.contains_key("shop"));
    write(dir, "t.yaml", &tiered(20));
    let Before::Patched(changes) = source.reload().unwrap().before else {
        panic!("not patched")
    };
    assert_eq!(
        changes.tiered.keys().collect::<Vec<_>>(),
        [&("shop".to_owned(), "p".to_owned())]
    );
    // The same netpold.io NetworkPolicy in a second file: built whole, reported.
    write(
        dir,
        "u.yaml",
        "apiVersion: netpold.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: shop}\nspec: {}\n",
    );
    let twice = source.reload().unwrap();
    assert!(matches!(twice.before, Before::Model(_)));
    assert_eq!(twice.problems.len(), 1, "{:?}", twice.problems);
    assert!(
        twice.problems[0]
            .message
            .starts_with("duplicate netpold.io/v1 NetworkPolicy shop/p"),
        "{:?}",
        twice.problems
    );
    fs::remove_file(dir.join("u.yaml")).unwrap();
    source.reload().unwrap();
    fs::remove_file(dir.join("t.yaml")).unwrap();
    let removed = source.reload().unwrap();
    assert!(
        matches!(removed.before, Before::Patched(_)),
        "{:?}",
        removed.problems
    );
    assert!(source.model().tiered.is_empty());
    assert!(!source.model().namespaces.contains_key("shop"));
}

/// Programs nothing: for timing what the daemon does before the kernel.
struct Null;

impl Dataplane for Null {
    fn replace(&mut self, _: &Ruleset) -> Result<Applied, Error> {
        Ok(APPLIED)
    }

    fn update(&mut self, _: &Ruleset, _: &crate::ir::diff::Delta) -> Result<Applied, Error> {
        Ok(APPLIED)
    }

    fn read_back(&mut self, _: &Ruleset, _: bool) -> Result<Vec<crate::dataplane::Drift>, Error> {
        Ok(Vec::new())
    }
}

/// The sync lines of one-object edits on a generated directory, without a kernel:
/// `NETPOLD_SYNC_BENCH=/tmp/gen-xl/manifests cargo test --release --lib sync_bench --
/// --ignored --nocapture`. One policy with a numeric port 8080 is moved to a file of
/// its own first; then, five times, an endpoint file is added, relabelled and removed,
/// that policy's port is changed and changed back, a rule with a new peer selector is
/// added to it and removed, and the first namespace is relabelled and back.
#[test]
#[ignore = "a benchmark: needs NETPOLD_SYNC_BENCH"]
fn sync_bench() {
    let Ok(from) = std::env::var("NETPOLD_SYNC_BENCH") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for entry in fs::read_dir(&from).unwrap() {
        let path = entry.unwrap().path();
        let text = fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let mut docs: Vec<&str> = text.split("---\n").collect();
        if let Some(i) = docs
            .iter()
            .position(|d| d.contains("kind: NetworkPolicy") && d.contains("port: 8080"))
        {
            write(dir, "pol-own.yaml", &format!("---\n{}", docs.remove(i)));
        }
        write(dir, &name, &docs.join("---\n"));
    }
    let source = Source::new(dir, None);
    let mut r = Reconciler::new(source, Null, "node-0", "netpold");
    let say = |outcome: Outcome| {
        let line = line(&outcome).to_owned();
        eprintln!("{}", line.chars().take(140).collect::<String>());
        if let Some(timing) = line.rfind(" in ") {
            eprintln!("    {}", &line[timing..]);
        }
    };
    say(r.sync(Trigger::Start));
    // Past the settling time, so that unchanged files are not read again.
    std::thread::sleep(Duration::from_millis(2100));
    r.sync(Trigger::Rescan);
    let endpoint = |version: &str| {
        format!(
            "apiVersion: netpold.io/v1\nkind: WorkloadEndpoint\nmetadata: {{name: extra-1, namespace: ns-000, labels: {{app: cart, tier: web, version: {version}}}}}\nspec: {{node: node-0, interfaceName: caliextra0001, ips: [\"198.18.250.1\"]}}\n"
        )
    };
    let policy = fs::read_to_string(dir.join("pol-own.yaml")).unwrap();
    let namespaces = fs::read_to_string(dir.join("namespaces.yaml")).unwrap();
    let new_peer = "  ingress:\n    - from:\n        - podSelector:\n            matchLabels:\n              app: brand-new\n";
    for _ in 0..5 {
        write(dir, "extra.yaml", &endpoint("v1"));
        say(r.sync(Trigger::Change));
        write(dir, "extra.yaml", &endpoint("v2"));
        say(r.sync(Trigger::Change));
        fs::remove_file(dir.join("extra.yaml")).unwrap();
        say(r.sync(Trigger::Change));
        write(
            dir,
            "pol-own.yaml",
            &policy.replacen("port: 8080", "port: 8081", 1),
        );
        say(r.sync(Trigger::Change));
        write(dir, "pol-own.yaml", &policy);
        say(r.sync(Trigger::Change));
        write(
            dir,
            "pol-own.yaml",
            &policy.replacen("  ingress:\n", new_peer, 1),
        );
        say(r.sync(Trigger::Change));
        write(dir, "pol-own.yaml", &policy);
        say(r.sync(Trigger::Change));
        write(
            dir,
            "namespaces.yaml",
            &namespaces.replacen("    team: ", "    team: x", 1),
        );
        say(r.sync(Trigger::Change));
        write(dir, "namespaces.yaml", &namespaces);
        say(r.sync(Trigger::Change));
    }
}

/// A rule that would compile to millions of nft rules is a bad file like any other:
/// its last good content stays, and the daemon compiles nothing of it.
#[test]
fn a_rule_over_the_compiled_size_cap_keeps_the_last_good_content() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "a.yaml", &endpoint("a", "veth-a", "10.0.0.1"));
    write(dir, "p.yaml", &policy("p", "a"));
    let fake = Fake::default();
    let mut r = reconciler(dir, None, &fake);
    assert!(r.sync(Trigger::Start).programmed);
    let before = fake.last().unwrap();

    let names: Vec<String> = (0..1000).map(|i| format!("p{i}")).collect();
    let names = names.join(", ");
    write(
        dir,
        "p.yaml",
        &format!(
            "apiVersion: netpold.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p}}\nspec:\n  selector: app == 'a'\n  ingress:\n  - {{action: Allow, protocol: TCP, source: {{ports: [{names}]}}, destination: {{ports: [{names}]}}}}\n"
        ),
    );
    let held = r.sync(Trigger::Change);
    let expected = format!(
        "kept last good content of {}/p.yaml (1 error)",
        dir.display()
    );
    assert!(line(&held).contains(&expected), "{}", line(&held));
    let now = fake.last().unwrap();
    assert_eq!(now.rule_count(), before.rule_count());
    assert!(now.chains.keys().all(|c| !c.starts_with("tp_")));
}
