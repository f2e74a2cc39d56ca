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

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::state::StateDir;
use crate::diag::Diagnostic;
use crate::load::display_under;
use crate::manifest::node::Pos;
use crate::manifest::{self, MAX_FILE_BYTES, RawObject};
use crate::model::Model;

/// One load of the directory.
#[derive(Debug)]
pub struct Load {
    pub model: Model,
    /// Every problem found, by file and position: the order a user fixes them in.
    pub problems: Vec<Diagnostic>,
    /// Files whose current content is not what is loaded.
    pub held: Vec<Held>,
    /// Manifest files found.
    pub files: usize,
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

/// Bytes and the objects parsed from them, shared between loads.
#[derive(Clone, Debug)]
struct Content {
    bytes: Arc<Vec<u8>>,
    objects: Arc<Vec<RawObject>>,
}

#[derive(Clone, Debug)]
struct Current {
    /// `None`: the file could not be read.
    bytes: Option<Arc<Vec<u8>>>,
    objects: Arc<Vec<RawObject>>,
    /// Reading and parsing problems; validation problems are found per load.
    problems: Vec<Diagnostic>,
}

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
                        objects: Arc::new(objects),
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
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads the directory again. `Err` only when the directory itself cannot be
    /// listed; then nothing is forgotten.
    pub fn reload(&mut self) -> std::io::Result<Load> {
        let (scanned, scan_problems) = manifest::scan_dir(&self.dir)?;
        let mut parsed = 0;
        let mut current: BTreeMap<String, Current> = BTreeMap::new();
        for file in scanned {
            let display = display_under(&self.dir, &file.display);
            let known = self.files.get(&file.display);
            let read = match read_bounded(&file.path) {
                Ok(bytes) => {
                    let same = |b: &Option<Arc<Vec<u8>>>| b.as_deref() == Some(&bytes);
                    if let Some(previous) = known
                        .and_then(|k| k.current.as_ref())
                        .filter(|c| same(&c.bytes))
                    {
                        previous.clone()
                    } else if let Some(good) = known
                        .and_then(|k| k.good.as_ref())
                        .filter(|g| *g.bytes == bytes)
                    {
                        Current {
                            bytes: Some(good.bytes.clone()),
                            objects: good.objects.clone(),
                            problems: Vec::new(),
                        }
                    } else {
                        parsed += 1;
                        let mut problems = Vec::new();
                        let objects = manifest::parse_bytes(&display, &bytes, &mut problems);
                        Current {
                            bytes: Some(Arc::new(bytes)),
                            objects: Arc::new(objects),
                            problems,
                        }
                    }
                }
                Err(message) => unreadable(Diagnostic::new(display, START, message)),
            };
            current.insert(file.display, read);
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
        let (model, problems, choices) = self.converge(&current, &orphans);
        let (changed, added, removed) = self.differences(&current);
        let held = self.held(&choices, &problems, &orphans);
        self.commit(current, &choices);
        Ok(Load {
            model,
            problems: problems.into_iter().collect(),
            held,
            files,
            parsed,
            changed,
            added,
            removed,
        })
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
            let mut raw: Vec<&RawObject> = Vec::new();
            for (rel, choice) in &choices {
                match choice {
                    Choice::Current => raw.extend(current[rel].objects.iter()),
                    Choice::LastGood => {
                        raw.extend(good(rel).into_iter().flat_map(|g| g.objects.iter()));
                    }
                    Choice::Nothing => {}
                }
            }
            let (model, found) = Model::build(raw);
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
                Some(previous) if previous.bytes != c.bytes => changed.push(display(rel)),
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
        for rel in gone {
            self.files.remove(&rel);
            if let Some(state) = &mut self.state {
                state.forget(&rel);
            }
        }
        for (rel, c) in current {
            let entry = self.files.entry(rel.clone()).or_default();
            if choices[&rel] == Choice::Current
                && let Some(bytes) = &c.bytes
                && entry.good.as_ref().is_none_or(|g| g.bytes != *bytes)
            {
                if let Some(state) = &mut self.state {
                    state.save(&rel, bytes);
                }
                entry.good = Some(Content {
                    bytes: bytes.clone(),
                    objects: c.objects.clone(),
                });
            }
            entry.current = Some(c);
        }
    }
}

const START: Pos = Pos { line: 1, col: 1 };

fn unreadable(problem: Diagnostic) -> Current {
    Current {
        bytes: None,
        objects: Arc::new(Vec::new()),
        problems: vec![problem],
    }
}

/// Whether `rel` is `dir` or below it (`.` is the manifest directory itself).
fn is_under(rel: &str, dir: &str) -> bool {
    dir == "." || rel == dir || rel.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
}

/// Reads a file of at most `MAX_FILE_BYTES`. Opened non-blocking so that a FIFO
/// named like a manifest cannot stall the daemon; anything but a regular file is refused.
fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    let cannot = |e: std::io::Error| format!("cannot read: {e}");
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(cannot)?;
    let meta = file.metadata().map_err(cannot)?;
    if !meta.is_file() {
        return Err("not a regular file".to_owned());
    }
    let too_big = |len: u64| format!("file is {len} bytes; the limit is {MAX_FILE_BYTES}");
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_big(meta.len()));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(bytes)
}
