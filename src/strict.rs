//! StrictModes, as sshd has it: who may write the manifest directory, its files and the
//! configuration decides what the firewall enforces, so netpold refuses any of them
//! that someone other than root (or the daemon's own user) could change.
//!
//! A path is refused when it is writable by group or others, or owned by a user other
//! than root or the process's effective user. Checked are: the manifest directory and
//! every directory above it up to `/` (both along the path as given and along the path
//! it resolves to, since whoever can write a directory holding a symlink can swap the
//! link), every subdirectory between it and a manifest file, the file itself (as
//! opened, so after symlinks) and the configuration file with its directories.
//!
//! One exception: a directory *above* the checked path that is root-owned and sticky
//! (`/tmp`, mode 1777) is accepted. Its sticky bit lets only an entry's owner rename or
//! remove it, so nobody else can replace the root-owned directory inside. The
//! manifest directory itself and anything below it must never be sticky-writable.

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::diag::Diagnostic;
use crate::load::display_under;
use crate::manifest::node::Pos;

const GROUP_WRITE: u32 = 0o020;
const OTHER_WRITE: u32 = 0o002;
const STICKY: u32 = 0o1000;
pub const HOW_TO_RELAX: &str = "set strict_modes = false";

/// Checks paths for one load; directory verdicts are cached, since many files share
/// them.
pub struct StrictModes {
    uid: u32,
    dirs: HashMap<PathBuf, Result<(), String>>,
    /// Directories as given → where they resolve to.
    resolved: HashMap<PathBuf, Option<PathBuf>>,
}

impl Default for StrictModes {
    fn default() -> Self {
        StrictModes::new()
    }
}

impl StrictModes {
    pub fn new() -> StrictModes {
        StrictModes {
            uid: rustix::process::geteuid().as_raw(),
            dirs: HashMap::new(),
            resolved: HashMap::new(),
        }
    }

    /// Forgets cached verdicts: modes may have changed since.
    pub fn reset(&mut self) {
        self.dirs.clear();
        self.resolved.clear();
    }

    /// What is wrong with a file or directory of metadata `meta`, if anything; `as_parent`:
    /// it is above the checked path, where a root-owned sticky directory is fine.
    fn verdict(&self, meta: &Metadata, as_parent: bool) -> Result<(), String> {
        let mode = meta.permissions().mode() & 0o7777;
        let owner = meta.uid();
        if owner != 0 && owner != self.uid {
            let daemon = if self.uid == 0 {
                "root".to_owned()
            } else {
                format!("root or this process's user (uid {})", self.uid)
            };
            return Err(format!(
                "owned by uid {owner}, not {daemon}; fix with chown root or {HOW_TO_RELAX}"
            ));
        }
        if as_parent && owner == 0 && mode & STICKY != 0 && meta.is_dir() {
            return Ok(());
        }
        let who = match (mode & GROUP_WRITE != 0, mode & OTHER_WRITE != 0) {
            (false, false) => return Ok(()),
            (true, false) => "group",
            (false, true) => "others",
            (true, true) => "group and others",
        };
        Err(format!(
            "writable by {who} (mode {mode:04o}); fix with chmod go-w or {HOW_TO_RELAX}"
        ))
    }

    /// One directory, by `stat` (following links), cached.
    fn dir(&mut self, dir: &Path, as_parent: bool) -> Result<(), String> {
        let key = dir.to_path_buf();
        if let Some(v) = self.dirs.get(&key) {
            return v.clone();
        }
        let v = self.dir_uncached(dir, as_parent);
        self.dirs.insert(key, v.clone());
        v
    }

    fn dir_uncached(&self, dir: &Path, as_parent: bool) -> Result<(), String> {
        match std::fs::metadata(dir) {
            Ok(meta) => self
                .verdict(&meta, as_parent)
                .map_err(|e| format!("{}: {e}", dir.display())),
            Err(e) => Err(format!("{}: cannot check: {e}", dir.display())),
        }
    }

    /// `path` (a directory or file) and every directory above it, along the path as
    /// given and along the path it resolves to. The message names the offending path.
    pub fn path_and_parents(&mut self, path: &Path) -> Result<(), String> {
        let absolute = std::path::absolute(path).map_err(|e| format!("cannot check: {e}"))?;
        let resolved = std::fs::canonicalize(path).map_err(|e| format!("cannot check: {e}"))?;
        let meta = std::fs::metadata(&resolved).map_err(|e| format!("cannot check: {e}"))?;
        self.verdict(&meta, false)?;
        for start in [&absolute, &resolved] {
            for parent in start.ancestors().skip(1) {
                // A parent of the path as given may itself be a link: its target's
                // directory is what holds the entries.
                let parent = std::fs::canonicalize(parent).unwrap_or_else(|_| parent.to_owned());
                self.dir(&parent, true)?;
            }
        }
        Ok(())
    }

    /// A manifest file below `root` (already checked with `path_and_parents`): the
    /// directories between them, then the file as opened (`meta`, so after links).
    pub fn file_below(&mut self, root: &Path, file: &Path, meta: &Metadata) -> Result<(), String> {
        self.dirs_below(root, file)?;
        self.file(file, meta)
    }

    /// A file at `path` by its metadata as opened (so after links). When a link (to
    /// the file or to a directory on its way) puts it in another directory, that
    /// directory and those above it are checked too: whoever can write them can
    /// replace the file.
    pub fn file(&mut self, path: &Path, meta: &Metadata) -> Result<(), String> {
        self.verdict(meta, false)?;
        let Some(given) = path.parent().and_then(|p| std::path::absolute(p).ok()) else {
            return Ok(());
        };
        let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
        let real = if is_link {
            std::fs::canonicalize(path)
                .ok()
                .and_then(|t| t.parent().map(Path::to_path_buf))
        } else {
            self.resolved
                .entry(given.clone())
                .or_insert_with(|| std::fs::canonicalize(&given).ok())
                .clone()
        };
        match real {
            Some(real) if real != given => {
                self.dir(&real, false)?;
                real.ancestors().skip(1).try_for_each(|a| self.dir(a, true))
            }
            _ => Ok(()),
        }
    }

    /// The directories between `root` and `file` only (for a file not read again).
    pub fn dirs_below(&mut self, root: &Path, file: &Path) -> Result<(), String> {
        let Ok(below) = file.strip_prefix(root) else {
            return Ok(());
        };
        let mut dir = root.to_path_buf();
        let parts: Vec<_> = below.components().collect();
        for part in parts.iter().take(parts.len().saturating_sub(1)) {
            dir.push(part);
            self.dir(&dir, false)?;
        }
        Ok(())
    }
}

/// Every problem `strict_modes` finds in a manifest directory, as `apply` and `check`
/// report them: the directory (and those above it), then each file.
pub fn check_dir(dir: &Path) -> Vec<Diagnostic> {
    let start = Pos { line: 1, col: 1 };
    let mut strict = StrictModes::new();
    if let Err(e) = strict.path_and_parents(dir) {
        return vec![Diagnostic::new(dir.display().to_string(), start, e)];
    }
    let Ok((files, _)) = crate::manifest::scan_dir(dir) else {
        // `load_dir` reports an unreadable directory.
        return Vec::new();
    };
    files
        .iter()
        .filter_map(|f| {
            let checked = std::fs::metadata(&f.path)
                .map_err(|e| format!("cannot check: {e}"))
                .and_then(|meta| strict.file_below(dir, &f.path, &meta));
            checked
                .err()
                .map(|e| Diagnostic::new(display_under(dir, &f.display), start, e))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn chmod(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    /// A directory with one file, both safe.
    fn tree() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        chmod(dir.path(), 0o755);
        let file = dir.path().join("a.yaml");
        fs::write(&file, "x").unwrap();
        chmod(&file, 0o644);
        (dir, file)
    }

    fn check_file(root: &Path, file: &Path) -> Result<(), String> {
        let mut s = StrictModes::new();
        s.path_and_parents(root)?;
        s.file_below(root, file, &fs::metadata(file).unwrap())
    }

    #[test]
    fn safe_modes_pass_and_a_sticky_parent_like_tmp_is_accepted() {
        let (dir, file) = tree();
        // The temporary directory lives in /tmp (1777): accepted as a parent.
        check_file(dir.path(), &file).unwrap();
        chmod(&file, 0o600);
        check_file(dir.path(), &file).unwrap();
    }

    #[test]
    fn a_file_writable_by_group_or_others_is_refused_with_its_mode() {
        let (dir, file) = tree();
        chmod(&file, 0o666);
        assert_eq!(
            check_file(dir.path(), &file).unwrap_err(),
            "writable by group and others (mode 0666); fix with chmod go-w or set strict_modes = false"
        );
        chmod(&file, 0o664);
        assert!(
            check_file(dir.path(), &file)
                .unwrap_err()
                .starts_with("writable by group (mode 0664)")
        );
        chmod(&file, 0o646);
        assert!(
            check_file(dir.path(), &file)
                .unwrap_err()
                .starts_with("writable by others (mode 0646)")
        );
    }

    #[test]
    fn the_directory_and_subdirectories_are_checked_and_may_not_be_sticky() {
        let (dir, _) = tree();
        let sub = dir.path().join("team");
        fs::create_dir(&sub).unwrap();
        let file = sub.join("b.yaml");
        fs::write(&file, "x").unwrap();
        chmod(&file, 0o644);
        chmod(&sub, 0o775);
        let e = check_file(dir.path(), &file).unwrap_err();
        assert_eq!(
            e,
            format!(
                "{}: writable by group (mode 0775); fix with chmod go-w or set strict_modes = false",
                sub.display()
            )
        );
        chmod(&sub, 0o755);
        check_file(dir.path(), &file).unwrap();
        // The manifest directory itself: sticky does not help.
        chmod(dir.path(), 0o1777);
        let e = StrictModes::new().path_and_parents(dir.path()).unwrap_err();
        assert!(
            e.contains("writable by group and others (mode 1777)"),
            "{e}"
        );
    }

    #[test]
    fn a_writable_parent_is_named() {
        let (dir, _) = tree();
        let inner = dir.path().join("manifests.d");
        fs::create_dir(&inner).unwrap();
        chmod(&inner, 0o755);
        chmod(dir.path(), 0o777);
        let e = StrictModes::new().path_and_parents(&inner).unwrap_err();
        assert_eq!(
            e,
            format!(
                "{}: writable by group and others (mode 0777); fix with chmod go-w or set strict_modes = false",
                dir.path().display()
            )
        );
    }

    #[test]
    fn a_symlinked_directory_is_checked_where_it_points_and_where_the_link_is() {
        let (dir, _) = tree();
        let real = dir.path().join("rev-1");
        fs::create_dir(&real).unwrap();
        chmod(&real, 0o755);
        let link = dir.path().join("current");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        StrictModes::new().path_and_parents(&link).unwrap();
        chmod(&real, 0o757);
        let e = StrictModes::new().path_and_parents(&link).unwrap_err();
        assert!(e.contains("writable by others (mode 0757)"), "{e}");
    }

    #[test]
    fn a_symlinked_file_is_checked_where_its_target_lives() {
        let (dir, _) = tree();
        let elsewhere = tempfile::tempdir().unwrap();
        chmod(elsewhere.path(), 0o755);
        let target = elsewhere.path().join("t.yaml");
        fs::write(&target, "x").unwrap();
        chmod(&target, 0o644);
        let link = dir.path().join("l.yaml");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        check_file(dir.path(), &link).unwrap();
        // Whoever may write the target's directory can replace the file.
        chmod(elsewhere.path(), 0o777);
        let e = check_file(dir.path(), &link).unwrap_err();
        assert_eq!(
            e,
            format!(
                "{}: writable by group and others (mode 0777); fix with chmod go-w or set strict_modes = false",
                elsewhere.path().display()
            )
        );
    }

    #[test]
    fn another_users_file_is_refused() {
        if rustix::process::geteuid().as_raw() != 0 {
            eprintln!("skipped: chown needs root");
            return;
        }
        let (dir, file) = tree();
        std::os::unix::fs::chown(&file, Some(65534), None).unwrap();
        let e = check_file(dir.path(), &file).unwrap_err();
        assert_eq!(
            e,
            "owned by uid 65534, not root; fix with chown root or set strict_modes = false"
        );
    }
}
