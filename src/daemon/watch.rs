//! Watching the manifest directory with inotify.
//!
//! Watches cover the directory and every subdirectory the scan would read, plus the
//! parent directory for the directory's own name: that is how a directory removed and
//! re-created, replaced by `mv new dir`, or a symlink swapped atomically
//! (`ln -s new tmp && mv -T tmp dir`, as GitOps tools do) is noticed. The root is
//! watched through its symlink, subdirectories are not followed, as the scan does not
//! follow them. Watches are re-established before every reload (so a change made
//! while reading is seen again) and the stale ones dropped. A reader thread turns
//! inotify's events into `Event::Files` on the daemon's channel; whether they matter
//! is decided here, by the main loop.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};

use super::Event;
use crate::manifest::{has_manifest_extension, is_ignored_name};

/// One inotify event, owned.
#[derive(Clone, Debug)]
pub struct FsEvent {
    wd: WatchDescriptor,
    mask: EventMask,
    name: Option<OsString>,
}

pub struct Watcher {
    dir: PathBuf,
    /// The directory holding `dir`, and `dir`'s name in it.
    parent: Option<(PathBuf, OsString)>,
    watches: Watches,
    parent_wd: Option<WatchDescriptor>,
    tree: BTreeSet<WatchDescriptor>,
    limit_warned: bool,
}

fn tree_mask() -> WatchMask {
    WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::MODIFY
        | WatchMask::CLOSE_WRITE
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::ATTRIB
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF
        | WatchMask::ONLYDIR
}

fn parent_mask() -> WatchMask {
    WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::ONLYDIR
}

impl Watcher {
    /// Starts the reader thread; call `rearm` to place the watches.
    pub fn start(dir: &Path, events: Sender<Event>) -> std::io::Result<Watcher> {
        let mut inotify = Inotify::init()?;
        let watches = inotify.watches();
        std::thread::Builder::new()
            .name("inotify".to_owned())
            .spawn(move || {
                let mut buffer = vec![0u8; 64 * 1024];
                loop {
                    let batch: Vec<FsEvent> = match inotify.read_events_blocking(&mut buffer) {
                        Ok(read) => read
                            .map(|e| FsEvent {
                                wd: e.wd,
                                mask: e.mask,
                                name: e.name.map(OsStr::to_os_string),
                            })
                            .collect(),
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            log::error!(
                                "reading inotify events: {e}; changes are now seen only by the periodic rescan"
                            );
                            return;
                        }
                    };
                    // The daemon has stopped listening: this thread is done.
                    if events.send(Event::Files(batch)).is_err() {
                        return;
                    }
                }
            })?;
        let parent = dir.file_name().map(|name| {
            let parent = match dir.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            (parent, name.to_os_string())
        });
        Ok(Watcher {
            dir: dir.to_path_buf(),
            parent,
            watches,
            parent_wd: None,
            tree: BTreeSet::new(),
            limit_warned: false,
        })
    }

    /// Watches the parent, the directory and its subdirectories as they are now, and
    /// drops watches on directories no longer in the tree. Failures are not fatal: a
    /// directory that is missing is noticed by its parent's watch or the rescan.
    pub fn rearm(&mut self) {
        self.parent_wd = match &self.parent {
            Some((parent, _)) => match self.watches.add(parent, parent_mask()) {
                Ok(wd) => Some(wd),
                Err(e) => {
                    log::debug!("cannot watch {}: {e}", parent.display());
                    None
                }
            },
            None => None,
        };
        let mut fresh = BTreeSet::new();
        let mut pending = vec![self.dir.clone()];
        while let Some(dir) = pending.pop() {
            // Only the root is followed if it is a symlink.
            let mask = if dir == self.dir {
                tree_mask()
            } else {
                tree_mask() | WatchMask::DONT_FOLLOW
            };
            match self.watches.add(&dir, mask) {
                Ok(wd) => {
                    fresh.insert(wd);
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                    if !self.limit_warned {
                        log::warn!(
                            "cannot watch {}: the inotify watch limit is reached (sysctl fs.inotify.max_user_watches); changes there are seen only by the periodic rescan",
                            dir.display()
                        );
                        self.limit_warned = true;
                    }
                    continue;
                }
                Err(e) => {
                    log::debug!("cannot watch {}: {e}", dir.display());
                    continue;
                }
            }
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir())
                    && !is_ignored_name(entry.file_name().as_bytes())
                {
                    pending.push(entry.path());
                }
            }
        }
        for stale in self.tree.difference(&fresh) {
            if Some(stale) != self.parent_wd.as_ref() {
                // Already gone when its directory was deleted; nothing to do then.
                let _ = self.watches.remove(stale.clone());
            }
        }
        self.tree = fresh;
    }

    /// Whether a batch of events may change what the directory loads.
    pub fn is_relevant(&self, events: &[FsEvent]) -> bool {
        events.iter().any(|e| self.relevant(e))
    }

    fn relevant(&self, e: &FsEvent) -> bool {
        if e.mask.contains(EventMask::Q_OVERFLOW) {
            return true;
        }
        // A watch removed (by us, or with its directory, whose deletion is reported too).
        if e.mask.contains(EventMask::IGNORED) {
            return false;
        }
        if self.parent_wd.as_ref() == Some(&e.wd) {
            return match (&e.name, &self.parent) {
                (Some(name), Some((_, ours))) => name == ours,
                _ => false,
            };
        }
        // Editor swap files, backups, hidden entries and files that are not manifests
        // (a log written next to them, say) are never loaded, so they never delay a
        // sync either. Directories count whatever their name.
        e.name.as_ref().is_none_or(|name| {
            let name = name.as_bytes();
            !is_ignored_name(name)
                && (e.mask.contains(EventMask::ISDIR) || has_manifest_extension(name))
        })
    }
}

impl Drop for Watcher {
    /// Removing the watches wakes the reader thread, which then finds the channel
    /// closed and ends.
    fn drop(&mut self) {
        for wd in std::mem::take(&mut self.tree)
            .into_iter()
            .chain(self.parent_wd.take())
        {
            let _ = self.watches.remove(wd);
        }
    }
}
