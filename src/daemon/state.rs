//! Last good contents kept on disk, so that a daemon restarted while a file is broken
//! still enforces what that file last said correctly. One state file per manifest file,
//! named by a hash of its relative path and holding the path and the bytes; each is
//! written to a temporary name and renamed, so a crash leaves the old or the new copy.
//! The state directory is a convenience: when it cannot be used (read-only, full) the
//! daemon logs one error and goes on, enforcing exactly as it would without it; the
//! copies it could not write or remove are kept in memory and written at every later
//! sync until the directory takes them, so freeing the disk needs no restart.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

const MAGIC: &[u8] = b"netpold last-good v1\n";
const SUFFIX: &str = ".lastgood";
/// Up to this many copies in one flush are synced one by one, more with one `syncfs`.
const SYNC_EACH_UP_TO: usize = 8;

fn failure(rel: &str, writing: bool, e: &std::io::Error) -> String {
    if writing {
        format!(
            "cannot write the last good copy of {rel}: {e}; a restart while {rel} is broken would enforce an older copy or none (retried at every sync)"
        )
    } else {
        format!("cannot remove the last good copy of {rel}: {e} (retried at every sync)")
    }
}

pub struct StateDir {
    dir: PathBuf,
    /// Set after a failure was logged, so a read-only state directory logs once,
    /// not once per file and sync.
    warned: bool,
    /// Writes (`Some`) and removals (`None`) that failed, by relative path, retried by
    /// `flush`.
    pending: BTreeMap<String, Option<Vec<u8>>>,
}

impl StateDir {
    /// Last good contents of the files below `manifests` live in
    /// `<state_dir>/last-good/<hash of the manifest directory's path>`: a daemon pointed
    /// at another directory, or a second one sharing the state directory, never takes
    /// another's content for its own. The path is taken as configured (made absolute,
    /// not resolved), so a symlink swapped to a new checkout keeps its state.
    pub fn new(state_dir: &Path, manifests: &Path) -> StateDir {
        let manifests = std::path::absolute(manifests).unwrap_or_else(|_| manifests.to_owned());
        let scope = fnv1a(manifests.as_os_str().as_encoded_bytes());
        StateDir {
            dir: state_dir.join("last-good").join(format!("{scope:016x}")),
            warned: false,
            pending: BTreeMap::new(),
        }
    }

    /// Every stored file: relative path → bytes. Unreadable or foreign entries are skipped.
    pub fn load(&mut self) -> BTreeMap<String, Vec<u8>> {
        let mut stored = BTreeMap::new();
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return stored,
            Err(e) => {
                self.fail(&format!("cannot read it: {e}"));
                return stored;
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some(&SUFFIX[1..]) {
                continue;
            }
            match fs::read(&path).map(|bytes| decode(&bytes)) {
                Ok(Some((rel, content))) if path == self.path_of(&rel) => {
                    stored.insert(rel, content);
                }
                Ok(_) => log::warn!("{}: not a netpold state file; ignored", path.display()),
                Err(e) => self.fail(&format!("cannot read {}: {e}", path.display())),
            }
        }
        stored
    }

    /// Queues `content` as `rel`'s last good copy; `flush` writes it.
    pub fn save(&mut self, rel: &str, content: &[u8]) {
        self.pending.insert(rel.to_owned(), Some(content.to_vec()));
    }

    /// Queues the removal of `rel`'s copy; `flush` does it.
    pub fn forget(&mut self, rel: &str) {
        self.pending.insert(rel.to_owned(), None);
    }

    /// Writes and removes what is queued, including what failed before. Each copy goes
    /// to a temporary name, is made durable, and is then renamed over the old one, so
    /// a crash leaves the old or the new copy. A few copies are synced one by one; many
    /// (a checkout of thousands of files) with one `syncfs`, as a sync per file would
    /// cost milliseconds each.
    pub fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        let many = pending.values().flatten().count() > SYNC_EACH_UP_TO;
        let mut first_error = None;
        let mut written = Vec::new();
        for (rel, content) in &pending {
            let done = match content {
                Some(bytes) => self
                    .write_temporary(rel, bytes, !many)
                    .map(|tmp| written.push((rel, tmp))),
                None => self.remove(rel),
            };
            if let Err(e) = done {
                self.pending.insert(rel.clone(), content.clone());
                first_error.get_or_insert_with(|| failure(rel, content.is_some(), &e));
            }
        }
        let synced = if many && !written.is_empty() {
            fs::File::open(&self.dir).and_then(|dir| rustix::fs::syncfs(&dir).map_err(Into::into))
        } else {
            Ok(())
        };
        for (rel, tmp) in written {
            let done = synced
                .as_ref()
                .map_err(|e| std::io::Error::new(e.kind(), e.to_string()))
                .and_then(|()| fs::rename(&tmp, self.path_of(rel)));
            if let Err(e) = done {
                // The old copy, if any, is untouched: only the temporary file goes.
                let _ = fs::remove_file(&tmp);
                self.pending.insert(rel.clone(), pending[rel].clone());
                first_error.get_or_insert_with(|| failure(rel, true, &e));
            }
        }
        match first_error {
            Some(message) => self.fail(&message),
            None => self.recovered(),
        }
    }

    /// Writes `rel`'s copy to its temporary name (synced if `sync`); returns that name.
    fn write_temporary(&self, rel: &str, content: &[u8], sync: bool) -> std::io::Result<PathBuf> {
        let tmp = self.path_of(rel).with_extension("tmp");
        // Manifests may say more about the network than others should read.
        let written = fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .and_then(|()| {
                let mut file = fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&tmp)?;
                file.write_all(&encode(rel, content))?;
                if sync {
                    file.sync_all()?;
                }
                Ok(())
            });
        match written {
            Ok(()) => Ok(tmp),
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    fn remove(&self, rel: &str) -> std::io::Result<()> {
        match fs::remove_file(self.path_of(rel)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Logs once per outage, as an error: the daemon goes on enforcing.
    fn fail(&mut self, message: &str) {
        if !self.warned {
            log::error!(
                "state directory {}: {message}; enforcement goes on; further failures are not logged until it works again",
                self.dir.display()
            );
            self.warned = true;
        }
    }

    fn recovered(&mut self) {
        if self.warned && self.pending.is_empty() {
            log::info!(
                "state directory {}: writable again; every last good copy is up to date",
                self.dir.display()
            );
            self.warned = false;
        }
    }

    fn path_of(&self, rel: &str) -> PathBuf {
        self.dir
            .join(format!("{:016x}{SUFFIX}", fnv1a(rel.as_bytes())))
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// `MAGIC`, the lengths of the path and of the content in decimal and a newline, the
/// path, then the content. The content's length catches a file cut short by a crash:
/// a truncated manifest could still parse, as fewer objects.
fn encode(rel: &str, content: &[u8]) -> Vec<u8> {
    let header = format!("{} {}\n", rel.len(), content.len());
    let mut out = Vec::with_capacity(MAGIC.len() + header.len() + rel.len() + content.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(rel.as_bytes());
    out.extend_from_slice(content);
    out
}

fn decode(bytes: &[u8]) -> Option<(String, Vec<u8>)> {
    let rest = bytes.strip_prefix(MAGIC)?;
    let newline = rest.iter().position(|&b| b == b'\n')?;
    let (path_len, content_len) = std::str::from_utf8(&rest[..newline])
        .ok()?
        .split_once(' ')?;
    let (path_len, content_len): (usize, usize) =
        (path_len.parse().ok()?, content_len.parse().ok()?);
    let rest = &rest[newline + 1..];
    let rel = std::str::from_utf8(rest.get(..path_len)?).ok()?;
    let content = &rest[path_len..];
    (content.len() == content_len).then(|| (rel.to_owned(), content.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_manifest_directory_has_its_own_state() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = StateDir::new(dir.path(), Path::new("/srv/a"));
        state.save("p.yaml", b"kind: a\n");
        state.flush();
        assert!(
            StateDir::new(dir.path(), Path::new("/srv/b"))
                .load()
                .is_empty()
        );
        assert_eq!(
            StateDir::new(dir.path(), Path::new("/srv/a")).load().len(),
            1
        );
    }

    #[test]
    fn saved_files_load_back_and_forgotten_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = StateDir::new(dir.path(), Path::new("/etc/netpold/manifests.d"));
        state.save("a.yaml", b"kind: x\n");
        state.save("sub/b\nodd.yaml", b"");
        state.save("a.yaml", b"kind: y\n");
        state.flush();
        let loaded = StateDir::new(dir.path(), Path::new("/etc/netpold/manifests.d")).load();
        assert_eq!(
            loaded,
            BTreeMap::from([
                ("a.yaml".to_owned(), b"kind: y\n".to_vec()),
                ("sub/b\nodd.yaml".to_owned(), Vec::new()),
            ])
        );
        state.forget("a.yaml");
        state.flush();
        assert_eq!(
            StateDir::new(dir.path(), Path::new("/etc/netpold/manifests.d"))
                .load()
                .len(),
            1
        );
    }

    #[test]
    fn an_unwritable_state_directory_is_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        fs::write(&blocker, "").unwrap();
        let mut state = StateDir::new(&blocker, Path::new("/m"));
        state.save("a.yaml", b"x");
        state.flush();
        state.forget("a.yaml");
        state.flush();
        assert!(state.load().is_empty());
    }

    #[test]
    fn copies_that_could_not_be_written_are_written_once_the_directory_works() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("state");
        fs::write(&blocker, "").unwrap();
        let mut state = StateDir::new(&blocker, Path::new("/m"));
        state.save("a.yaml", b"old");
        state.save("a.yaml", b"new");
        state.flush();
        state.save("b.yaml", b"b");
        state.forget("b.yaml");
        state.flush();
        assert!(state.warned);
        fs::remove_file(&blocker).unwrap();
        state.flush();
        assert!(!state.warned && state.pending.is_empty());
        assert_eq!(
            StateDir::new(&blocker, Path::new("/m")).load(),
            BTreeMap::from([("a.yaml".to_owned(), b"new".to_vec())])
        );
    }

    #[test]
    fn many_copies_are_written_with_one_sync() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = StateDir::new(dir.path(), Path::new("/m"));
        for i in 0..=SYNC_EACH_UP_TO * 2 {
            state.save(&format!("{i}.yaml"), b"x");
        }
        state.flush();
        assert!(state.pending.is_empty());
        let loaded = StateDir::new(dir.path(), Path::new("/m")).load();
        assert_eq!(loaded.len(), SYNC_EACH_UP_TO * 2 + 1);
    }

    #[test]
    fn foreign_files_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = StateDir::new(dir.path(), Path::new("/etc/netpold/manifests.d"));
        state.save("a.yaml", b"x");
        state.flush();
        fs::write(state.dir.join("0000000000000000.lastgood"), b"junk").unwrap();
        // Cut short, as by a crash between write and rename.
        let mut cut = encode("c.yaml", b"kind: Namespace\n");
        cut.truncate(cut.len() - 3);
        fs::write(state.path_of("c.yaml"), cut).unwrap();
        fs::write(
            state.dir.join("1111111111111111.lastgood"),
            encode("b.yaml", b"y"),
        )
        .unwrap();
        assert_eq!(state.load().keys().collect::<Vec<_>>(), ["a.yaml"]);
    }
}
