//! The manifest directory as the daemon loads it: per file, its current content and its
//! last good content (CONTRACT §7).
//!
//! A reload reads every file's bytes and re-parses only files whose bytes changed. Each
//! file then contributes one of three things: its current objects (they parse), its last
//! good objects (it is broken now but was valid once) or nothing (it has never been
//! valid). Validation across files can still find problems (a duplicate identity, an
//! address claimed twice), so the model is rebuilt until no file that contributes has a
//! problem, demoting one step at a time (current → last good → nothing). A change never
//! displaces what is enforced: when a problem names a file that is unchanged, the files
//! that did change are reverted first. Each round demotes at least one file, so the loop
//! ends within two rounds per file.
//!
//! That full build is the reference, and what every load does after a load with a
//! problem. After a load without one, a change is patched in: when the files that
//! changed are valid on their own and conflict with nothing kept (checked against
//! `Claims`), the model loses their old objects and gets their new ones, and no other
//! file is converted or validated again (`Model::patch`). Conversions are kept per file
//! content, so a full build converts only what changed too. A file whose metadata is
//! unchanged since a read long enough after its last change is not read again.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use super::reclaim;
use super::state::StateDir;
use crate::diag::Diagnostic;
use crate::load::display_under;
use crate::manifest::node::Pos;
use crate::manifest::{self, RawObject};
use crate::model::{Changes, Claims, Converted, Identity, Model, Object};
use crate::strict::StrictModes;

/// How much of the previous load a reload may trust.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reload {
    /// Files whose metadata is unchanged are not read again, and a change valid on its
    /// own is patched into the model.
    Changes,
    /// Every file is read again (metadata misses a change made with the clock set
    /// back, or on a file system with coarse timestamps); changes are still patched in.
    Reread,
    /// Every file is read and the model is built from all of them.
    Everything,
}

/// What the model was before a load.
#[derive(Debug)]
pub enum Before {
    /// The model was built from every file; this was the previous one.
    Model(Model),
    /// The model was patched: the objects that changed, with their old values.
    Patched(Changes),
}

/// One load of the directory; the model it leads to is `Source::model`.
#[derive(Debug)]
pub struct Load {
    pub before: Before,
    /// Counts loads; `before` is the model of load `generation - 1`.
    pub generation: u64,
    /// Every problem found, by file and position: the order a user fixes them in.
    pub problems: Vec<Diagnostic>,
    /// Files whose current content is not what is loaded.
    pub held: Vec<Held>,
    /// Manifest files found.
    pub files: usize,
    /// Files read in this load (the others' metadata showed no change).
    pub read: usize,
    /// Files parsed in this load (the others were unchanged).
    pub parsed: usize,
    /// Display names of files changed, added and removed since the previous load.
    pub changed: Vec<String>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

/// A file whose current content is not loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    pub file: String,
    /// Problems reported in it (0 when it was reverted because of a conflict blamed elsewhere).
    pub errors: usize,
    /// Its last good content stands in; otherwise it contributes nothing.
    pub last_good: bool,
}

impl Load {
    /// Every file contributes its current or its last good content.
    pub fn complete(&self) -> bool {
        self.held.iter().all(|h| h.last_good)
    }

    pub fn files_touched(&self) -> bool {
        !(self.changed.is_empty() && self.added.is_empty() && self.removed.is_empty())
    }
}

/// The objects parsed from one content, and their conversions, made on first need.
#[derive(Debug, Default)]
struct Parsed {
    raw: Vec<RawObject>,
    converted: OnceLock<Vec<Converted>>,
}

impl Parsed {
    fn new(raw: Vec<RawObject>) -> Arc<Parsed> {
        Arc::new(Parsed {
            raw,
            converted: OnceLock::new(),
        })
    }

    fn converted(&self) -> &[Converted] {
        self.converted
            .get_or_init(|| self.raw.iter().map(Converted::new).collect())
    }
}

/// The last good contents restored from the state directory (`Source::restored`).
pub struct Restored(BTreeMap<String, Content>);

impl Restored {
    /// Their model; `None` when they do not make a valid model together.
    pub fn model(&self) -> Option<Model> {
        let converted = self
            .0
            .values()
            .flat_map(|c| c.objects.converted())
            .map(Cow::Borrowed);
        let (model, problems) = Model::assemble(converted);
        problems.is_empty().then_some(model)
    }
}

/// Bytes and the objects parsed from them, shared between loads.
#[derive(Clone, Debug)]
struct Content {
    bytes: Arc<Vec<u8>>,
    objects: Arc<Parsed>,
}

#[derive(Clone, Debug)]
struct Current {
    /// `None`: the file could not be read.
    bytes: Option<Arc<Vec<u8>>>,
    objects: Arc<Parsed>,
    /// Reading and parsing problems; validation problems are found per load.
    problems: Vec<Diagnostic>,
    /// The file's metadata before `bytes` were read, when it had settled by then:
    /// while the metadata stays so, the content is what was read.
    stamp: Option<Stamp>,
}

/// What changes with a file's content: any write sets its change time, which no
/// program can set back, and a rename in place gives another inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(meta: &fs::Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// Whether the last change was `settle` before `now`. A write after `now` then
    /// gets a later change time, even from a clock that ticks coarsely; a write
    /// within the same tick as the last change could keep it.
    fn settled(&self, now: SystemTime, settle: Duration) -> bool {
        let Ok(since) = now.duration_since(SystemTime::UNIX_EPOCH) else {
            return false;
        };
        let changed = i128::from(self.ctime.0) * 1_000_000_000 + i128::from(self.ctime.1);
        changed + settle.as_nanos() as i128 <= since.as_nanos() as i128
    }
}

/// How long after its last change a file's metadata is trusted to show the next one.
const SETTLE: Duration = Duration::from_secs(2);

#[derive(Debug, Default)]
struct FileState {
    /// `None` until first read (a file known only from the state directory).
    current: Option<Current>,
    good: Option<Content>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Choice {
    Current,
    LastGood,
    Nothing,
}

pub struct Source {
    dir: PathBuf,
    /// By path relative to `dir`.
    files: BTreeMap<String, FileState>,
    state: Option<StateDir>,
    model: Model,
    generation: u64,
    /// Present after a load without any problem: what a change is checked against to
    /// be patched in.
    clean: Option<Clean>,
    settle: Duration,
    /// `strict_modes`: files others than root could change are refused like bad ones.
    strict: Option<StrictModes>,
}

struct Clean {
    claims: Claims,
    /// The directory's (device, inode): a directory replaced is loaded whole.
    dir: (u64, u64),
}

fn dir_id(dir: &Path) -> Option<(u64, u64)> {
    fs::metadata(dir).ok().map(|m| (m.dev(), m.ino()))
}

impl Source {
    /// A source for `dir`, with last good contents restored from `state` if given.
    pub fn new(dir: &Path, mut state: Option<StateDir>) -> Source {
        let mut files = BTreeMap::new();
        if let Some(state) = &mut state {
            for (rel, bytes) in state.load() {
                let mut problems = Vec::new();
                let objects =
                    manifest::parse_bytes(&display_under(dir, &rel), &bytes, &mut problems);
                if problems.is_empty() {
                    let good = Content {
                        bytes: Arc::new(bytes),
                        objects: Parsed::new(objects),
                    };
                    files.insert(
                        rel,
                        FileState {
                            current: None,
                            good: Some(good),
                        },
                    );
                } else {
                    state.forget(&rel);
                }
            }
            state.flush();
            if !files.is_empty() {
                log::info!(
                    "restored the last good content of {} files from the state directory",
                    files.len()
                );
            }
        }
        Source {
            dir: dir.to_path_buf(),
            files,
            state,
            model: Model::default(),
            generation: 0,
            clean: None,
            settle: SETTLE,
            strict: None,
        }
    }

    /// Before the first load: the last good contents restored from the state
    /// directory, which are what the daemon enforced when it stopped (when its last
    /// sync was programmed). Shared, not copied.
    pub fn restored(&self) -> Option<Restored> {
        if self.generation > 0 || self.files.is_empty() {
            return None;
        }
        let files = self
            .files
            .iter()
            .filter_map(|(rel, f)| Some((rel.clone(), f.good.clone()?)))
            .collect();
        Some(Restored(files))
    }

    /// Whether the last load read exactly the files and bytes of `restored`.
    pub fn loaded_as(&self, restored: &Restored) -> bool {
        self.files.len() == restored.0.len()
            && restored.0.iter().all(|(rel, content)| {
                self.files
                    .get(rel)
                    .and_then(|f| f.current.as_ref())
                    .is_some_and(|c| same_bytes(&c.bytes, &Some(content.bytes.clone())))
            })
    }

    /// Refuses (as a bad file: its last good content stays) a file, or the whole
    /// directory, that others than root could change.
    pub fn with_strict_modes(mut self, on: bool) -> Source {
        self.strict = on.then(StrictModes::new);
        self
    }

    #[cfg(test)]
    pub(super) fn settle_after(&mut self, settle: Duration) {
        self.settle = settle;
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The model of the last load (empty before the first).
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Reads the directory again, trusting what `Reload::Changes` says. `Err` only
    /// when the directory itself cannot be listed; then nothing is forgotten.
    pub fn reload(&mut self) -> std::io::Result<Load> {
        self.reload_with(Reload::Changes)
    }

    pub fn reload_with(&mut self, how: Reload) -> std::io::Result<Load> {
        let dir_id = dir_id(&self.dir);
        let (mut scanned, mut scan_problems) = manifest::scan_dir(&self.dir)?;
        if let Some(strict) = &mut self.strict {
            strict.reset();
            if let Err(e) = strict.path_and_parents(&self.dir) {
                // Every file is held at its last good content.
                scanned.clear();
                scan_problems = vec![Diagnostic::new(".", START, e)];
            }
        }
        let (mut read, mut parsed) = (0, 0);
        let mut current: BTreeMap<String, Current> = BTreeMap::new();
        for file in scanned {
            if let Some(Err(e)) = self
                .strict
                .as_mut()
                .map(|s| s.dirs_below(&self.dir, &file.path))
            {
                let display = display_under(&self.dir, &file.display);
                current.insert(file.display, unreadable(Diagnostic::new(display, START, e)));
                continue;
            }
            let known = self.files.get(&file.display);
            let previous = known.and_then(|k| k.current.as_ref());
            if how == Reload::Changes
                && let Some(previous) = previous.filter(|p| {
                    p.stamp.is_some()
                        && fs::metadata(&file.path).ok().map(|m| Stamp::of(&m)) == p.stamp
                })
            {
                current.insert(file.display, previous.clone());
                continue;
            }
            let display = display_under(&self.dir, &file.display);
            read += 1;
            let started = SystemTime::now();
            let c = match read_bounded(&file.path, self.strict.as_mut()) {
                Ok((bytes, stamp)) => {
                    let stamp = Some(stamp).filter(|s| s.settled(started, self.settle));
                    let same = |b: &Option<Arc<Vec<u8>>>| b.as_deref() == Some(&bytes);
                    if let Some(previous) = previous.filter(|c| same(&c.bytes)) {
                        Current {
                            stamp,
                            ..previous.clone()
                        }
                    } else if let Some(good) = known
                        .and_then(|k| k.good.as_ref())
                        .filter(|g| *g.bytes == bytes)
                    {
                        Current {
                            bytes: Some(good.bytes.clone()),
                            objects: good.objects.clone(),
                            problems: Vec::new(),
                            stamp,
                        }
                    } else {
                        parsed += 1;
                        let mut problems = Vec::new();
                        let objects = manifest::parse_bytes(&display, &bytes, &mut problems);
                        Current {
                            bytes: Some(Arc::new(bytes)),
                            objects: Parsed::new(objects),
                            problems,
                            stamp,
                        }
                    }
                }
                Err(message) => unreadable(Diagnostic::new(display, START, message)),
            };
            current.insert(file.display, c);
        }

        // A dangling link or an unreadable subdirectory hides files that may have
        // good content: they are held, not removed.
        let mut orphans = Vec::new();
        for mut problem in scan_problems {
            let rel = std::mem::take(&mut problem.file);
            problem.file = display_under(&self.dir, &rel);
            let hidden: Vec<String> = self
                .files
                .keys()
                .filter(|k| !current.contains_key(*k) && is_under(k, &rel))
                .cloned()
                .collect();
            if hidden.is_empty() {
                orphans.push(problem);
            } else {
                for k in hidden {
                    current.insert(k, unreadable(problem.clone()));
                }
            }
        }

        let files = current.len();
        let patched = match how {
            Reload::Everything => None,
            _ if !orphans.is_empty() || dir_id.is_none() => None,
            _ => self.patch(&current, dir_id),
        };
        let (before, problems, choices) = match patched {
            Some(changes) => {
                let choices = current
                    .keys()
                    .map(|rel| (rel.clone(), Choice::Current))
                    .collect();
                (Before::Patched(changes), BTreeSet::new(), choices)
            }
            None => {
                let (model, problems, choices) = self.converge(&current, &orphans);
                self.clean = match dir_id {
                    Some(dir) if problems.is_empty() => Some(Clean {
                        claims: Claims::of(&model),
                        dir,
                    }),
                    _ => None,
                };
                let before = std::mem::replace(&mut self.model, model);
                (Before::Model(before), problems, choices)
            }
        };
        let (changed, added, removed) = self.differences(&current);
        let held = self.held(&choices, &problems, &orphans);
        self.commit(current, &choices);
        self.generation += 1;
        Ok(Load {
            before,
            generation: self.generation,
            problems: problems.into_iter().collect(),
            held,
            files,
            read,
            parsed,
            changed,
            added,
            removed,
        })
    }

    /// Patches the model with the files that changed, when the last load had no
    /// problem and neither has the change: what `converge` would build, at the cost of
    /// the change. `None`, with nothing changed, when a full build must decide.
    fn patch(
        &mut self,
        current: &BTreeMap<String, Current>,
        dir_id: Option<(u64, u64)>,
    ) -> Option<Changes> {
        let clean = self.clean.as_mut().filter(|c| Some(c.dir) == dir_id)?;
        let mut removed: Vec<&Identity> = Vec::new();
        let mut added: Vec<Object> = Vec::new();
        // Every object of a clean load converted and has an identity.
        fn identities(c: &Current) -> Option<Vec<&Identity>> {
            c.objects
                .converted()
                .iter()
                .map(|c| c.identity.as_ref())
                .collect()
        }
        for (rel, c) in current {
            let before = self.files.get(rel).and_then(|f| f.current.as_ref());
            if let Some(before) = before {
                if same_bytes(&before.bytes, &c.bytes) {
                    continue;
                }
                removed.extend(identities(before)?);
            }
            if c.bytes.is_none() || !c.problems.is_empty() {
                return None;
            }
            for converted in c.objects.converted() {
                let (Some(identity), Some(object)) = (&converted.identity, &converted.object)
                else {
                    return None;
                };
                if object.identity() != *identity {
                    return None;
                }
                added.push(object.clone());
            }
        }
        for (rel, f) in &self.files {
            if !current.contains_key(rel) {
                removed.extend(identities(f.current.as_ref()?)?);
            }
        }
        self.model.patch(&mut clean.claims, &removed, added)
    }

    /// Builds the model, demoting files until no contributing file has a problem.
    fn converge(
        &self,
        current: &BTreeMap<String, Current>,
        orphans: &[Diagnostic],
    ) -> (Model, BTreeSet<Diagnostic>, BTreeMap<String, Choice>) {
        let good = |rel: &str| self.files.get(rel).and_then(|f| f.good.as_ref());
        let mut problems: BTreeSet<Diagnostic> = orphans.iter().cloned().collect();
        let mut choices = BTreeMap::new();
        let mut rel_of = BTreeMap::new();
        for (rel, c) in current {
            problems.extend(c.problems.iter().cloned());
            let choice = match (c.problems.is_empty(), good(rel)) {
                (true, _) => Choice::Current,
                (false, Some(_)) => Choice::LastGood,
                (false, None) => Choice::Nothing,
            };
            choices.insert(rel.clone(), choice);
            rel_of.insert(display_under(&self.dir, rel), rel.clone());
        }
        // Current content that differs from what was last good: a change to be judged.
        let is_change = |rel: &str, choice: Choice| {
            choice == Choice::Current
                && good(rel).is_none_or(|g| current[rel].bytes.as_ref() != Some(&g.bytes))
        };
        loop {
            let mut converted: Vec<&Converted> = Vec::new();
            for (rel, choice) in &choices {
                match choice {
                    Choice::Current => converted.extend(current[rel].objects.converted()),
                    Choice::LastGood => {
                        converted.extend(good(rel).into_iter().flat_map(|g| g.objects.converted()));
                    }
                    Choice::Nothing => {}
                }
            }
            let (model, found) = Model::assemble(converted.into_iter().map(Cow::Borrowed));
            if found.is_empty() {
                return (model, problems, choices);
            }
            let blamed: BTreeSet<&String> =
                found.iter().filter_map(|d| rel_of.get(&d.file)).collect();
            problems.extend(found);
            let changes_blamed: Vec<String> = blamed
                .iter()
                .filter(|rel| is_change(rel, choices[**rel]))
                .map(|rel| (*rel).clone())
                .collect();
            let demote: Vec<String> = if !changes_blamed.is_empty() {
                changes_blamed
            } else if choices.iter().any(|(rel, c)| is_change(rel, *c)) {
                // The problem is blamed on content already enforced: the change loses.
                choices
                    .iter()
                    .filter(|(rel, c)| is_change(rel, **c))
                    .map(|(rel, _)| rel.clone())
                    .collect()
            } else {
                blamed
                    .iter()
                    .filter(|rel| choices[**rel] != Choice::Nothing)
                    .map(|rel| (*rel).clone())
                    .collect()
            };
            if demote.is_empty() {
                // Every problem is in a file that contributes nothing: cannot happen,
                // since problems come from the objects built; stop rather than spin.
                return (model, problems, choices);
            }
            reclaim::later(model);
            for rel in demote {
                let choice = choices.get_mut(&rel).expect("demoted files are chosen");
                *choice = match *choice {
                    Choice::Current if is_change(&rel, Choice::Current) && good(&rel).is_some() => {
                        Choice::LastGood
                    }
                    _ => Choice::Nothing,
                };
            }
        }
    }

    fn differences(
        &self,
        current: &BTreeMap<String, Current>,
    ) -> (Vec<String>, Vec<String>, Vec<String>) {
        let display = |rel: &String| display_under(&self.dir, rel);
        let mut changed = Vec::new();
        let mut added = Vec::new();
        for (rel, c) in current {
            match self.files.get(rel).and_then(|f| f.current.as_ref()) {
                None => added.push(display(rel)),
                Some(previous) if !same_bytes(&previous.bytes, &c.bytes) => {
                    changed.push(display(rel));
                }
                Some(_) => {}
            }
        }
        let removed = self
            .files
            .keys()
            .filter(|rel| !current.contains_key(*rel))
            .map(display)
            .collect();
        (changed, added, removed)
    }

    fn held(
        &self,
        choices: &BTreeMap<String, Choice>,
        problems: &BTreeSet<Diagnostic>,
        orphans: &[Diagnostic],
    ) -> Vec<Held> {
        let errors_in = |file: &str| problems.iter().filter(|p| p.file == file).count();
        let mut held: Vec<Held> = choices
            .iter()
            .filter(|(_, c)| **c != Choice::Current)
            .map(|(rel, c)| {
                let file = display_under(&self.dir, rel);
                Held {
                    errors: errors_in(&file),
                    file,
                    last_good: *c == Choice::LastGood,
                }
            })
            .collect();
        let orphan_files: BTreeSet<&str> = orphans.iter().map(|p| p.file.as_str()).collect();
        held.extend(orphan_files.into_iter().map(|file| Held {
            file: file.to_owned(),
            errors: errors_in(file),
            last_good: false,
        }));
        held
    }

    /// Remembers this load: current contents, new last good contents (persisted),
    /// and forgets files that are gone.
    fn commit(&mut self, current: BTreeMap<String, Current>, choices: &BTreeMap<String, Choice>) {
        let gone: Vec<String> = self
            .files
            .keys()
            .filter(|rel| !current.contains_key(*rel))
            .cloned()
            .collect();
        // What is replaced may be a large file's objects: freed off the sync's path.
        let mut replaced = (Vec::new(), Vec::new(), Vec::new());
        for rel in gone {
            replaced.0.extend(self.files.remove(&rel));
            if let Some(state) = &mut self.state {
                state.forget(&rel);
            }
        }
        for (rel, c) in current {
            let entry = self.files.entry(rel.clone()).or_default();
            if choices[&rel] == Choice::Current
                && let Some(bytes) = &c.bytes
                && entry
                    .good
                    .as_ref()
                    .is_none_or(|g| !Arc::ptr_eq(&g.bytes, bytes))
            {
                if let Some(state) = &mut self.state
                    && entry.good.as_ref().is_none_or(|g| g.bytes != *bytes)
                {
                    state.save(&rel, bytes);
                }
                let good = Content {
                    bytes: bytes.clone(),
                    objects: c.objects.clone(),
                };
                replaced.1.extend(entry.good.replace(good));
            }
            replaced.2.extend(entry.current.replace(c));
        }
        if let Some(state) = &mut self.state {
            state.flush();
        }
        reclaim::later(replaced);
    }
}

const START: Pos = Pos { line: 1, col: 1 };

fn unreadable(problem: Diagnostic) -> Current {
    Current {
        bytes: None,
        objects: Arc::default(),
        problems: vec![problem],
        stamp: None,
    }
}

/// Contents read again are compared once, when read; after that the same content is
/// the same `Arc`.
fn same_bytes(a: &Option<Arc<Vec<u8>>>, b: &Option<Arc<Vec<u8>>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
        (None, None) => true,
        _ => false,
    }
}

/// Whether `rel` is `dir` or below it (`.` is the manifest directory itself).
fn is_under(rel: &str, dir: &str) -> bool {
    dir == "." || rel == dir || rel.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
}

/// Reads a file of at most `MAX_FILE_BYTES`, refused by StrictModes before anything is read.
fn read_bounded(path: &Path, strict: Option<&mut StrictModes>) -> Result<(Vec<u8>, Stamp), String> {
    let check = |meta: &fs::Metadata| match strict {
        Some(strict) => strict.file(path, meta),
        None => Ok(()),
    };
    manifest::read_bounded(path, check).map(|(bytes, meta)| (bytes, Stamp::of(&meta)))
}
