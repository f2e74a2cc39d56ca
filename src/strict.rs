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
/// The configuration file's own check is relaxed from the command line only.
pub const HOW_TO_RELAX_CONFIG: &str = "run with --no-strict-modes";

/// Links followed in one path before giving up, as the kernel's ELOOP.
const MAX_LINKS: usize = 40;

/// Checks paths for one load; directory verdicts and resolved directories are cached,
/// since many files share them.
pub struct StrictModes {
    uid: u32,
    how_to_relax: &'static str,
    /// Keyed by directory and whether it is checked as a parent.
    dirs: HashMap<(PathBuf, bool), Result<(), String>>,
    /// Directories as given → where they resolve to.
    resolved: HashMap<PathBuf, Result<PathBuf, String>>,
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
            how_to_relax: HOW_TO_RELAX,
            dirs: HashMap::new(),
            resolved: HashMap::new(),
        }
    }

    /// For the configuration file: what it says cannot relax its own check.
    pub fn for_config() -> StrictModes {
        StrictModes {
            how_to_relax: HOW_TO_RELAX_CONFIG,
            ..StrictModes::new()
        }
    }

    /// Forgets cached verdicts: modes may have changed since.
    pub fn reset(&mut self) {
        self.dirs.clear();
        self.resolved.clear();
    }

    /// Whether `owner` is root or the daemon's own user; the error otherwise.
    fn owner(&self, owner: u32) -> Result<(), String> {
        if owner == 0 || owner == self.uid {
            return Ok(());
        }
        let daemon = if self.uid == 0 {
            "root".to_owned()
        } else {
            format!("root or this process's user (uid {})", self.uid)
        };
        Err(format!(
            "owned by uid {owner}, not {daemon}; fix with chown root or {}",
            self.how_to_relax
        ))
    }

    /// What is wrong with a file or directory of metadata `meta`, if anything; `as_parent`:
    /// it is above the checked path, where a root-owned sticky directory is fine.
    fn verdict(&self, meta: &Metadata, as_parent: bool) -> Result<(), String> {
        let mode = meta.permissions().mode() & 0o7777;
        let owner = meta.uid();
        self.owner(owner)?;
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
            "writable by {who} (mode {mode:04o}); fix with chmod go-w or {}",
            self.how_to_relax
        ))
    }

    /// One directory, by `stat` (following links), cached.
    fn dir(&mut self, dir: &Path, as_parent: bool) -> Result<(), String> {
        let key = (dir.to_path_buf(), as_parent);
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

    /// `path` (a directory or file) and every directory met while resolving it, one
    /// component at a time as OpenSSH's `safe_path` does: each directory above it,
    /// the directory holding every link on the way (whoever can write it can repoint
    /// the link) and, in a sticky directory, the link's owner. The message names the
    /// offending path.
    pub fn path_and_parents(&mut self, path: &Path) -> Result<(), String> {
        let resolved = self.resolve(path)?;
        let meta = std::fs::metadata(&resolved).map_err(|e| format!("cannot check: {e}"))?;
        self.verdict(&meta, false)
    }

    /// Where `path` leads, checking as `path_and_parents` does everything above it.
    fn resolve(&mut self, path: &Path) -> Result<PathBuf, String> {
        let absolute = std::path::absolute(path).map_err(|e| format!("cannot check: {e}"))?;
        self.dir(Path::new("/"), true)?;
        self.walk(PathBuf::from("/"), &absolute)
    }

    /// Resolves `rest` from the real, checked directory `dir`.
    fn walk(&mut self, mut dir: PathBuf, rest: &Path) -> Result<PathBuf, String> {
        use std::path::Component;
        let mut todo: Vec<std::ffi::OsString> = Vec::new();
        let push = |todo: &mut Vec<std::ffi::OsString>, p: &Path| {
            let parts: Vec<_> = p
                .components()
                .filter_map(|c| match c {
                    Component::Normal(n) => Some(n.to_owned()),
                    Component::ParentDir => Some("..".into()),
                    _ => None,
                })
                .collect();
            todo.extend(parts.into_iter().rev());
        };
        push(&mut todo, rest);
        let mut links = 0;
        while let Some(part) = todo.pop() {
            if part == ".." {
                dir.pop();
                continue;
            }
            let here = dir.join(&part);
            let meta = std::fs::symlink_metadata(&here)
                .map_err(|e| format!("{}: cannot check: {e}", here.display()))?;
            if meta.file_type().is_symlink() {
                links += 1;
                if links > MAX_LINKS {
                    return Err(format!("{}: too many levels of links", here.display()));
                }
                let sticky =
                    std::fs::metadata(&dir).is_ok_and(|d| d.permissions().mode() & STICKY != 0);
                if sticky {
                    self.owner(meta.uid()).map_err(|e| {
                        format!("{} (a link in a sticky directory): {e}", here.display())
                    })?;
                }
                let target = std::fs::read_link(&here)
                    .map_err(|e| format!("{}: cannot check: {e}", here.display()))?;
                if target.is_absolute() {
                    dir = PathBuf::from("/");
                }
                push(&mut todo, &target);
                continue;
            }
            if !todo.is_empty() {
                self.dir(&here, true)?;
            }
            dir = here;
        }
        Ok(dir)
    }

    /// A manifest file below `root` (already checked with `path_and_parents`): the
    /// directories between them, then the file as opened (`meta`, so after links).
    pub fn file_below(&mut self, root: &Path, file: &Path, meta: &Metadata) -> Result<(), String> {
        self.dirs_below(root, file)?;
        self.file(file, meta)
    }

    /// A file at `path` by its metadata as opened (so after links), and every directory
    /// met while resolving it (see `path_and_parents`): whoever can write one of them
    /// can replace the file.
    pub fn file(&mut self, path: &Path, meta: &Metadata) -> Result<(), String> {
        self.verdict(meta, false)?;
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Ok(());
        };
        let parent = parent.to_path_buf();
        let real = match self.resolved.get(&parent) {
            Some(r) => r.clone(),
            None => {
                let r = self.resolve(&parent);
                self.resolved.insert(parent, r.clone());
                r
            }
        }?;
        self.walk(real, Path::new(name)).map(drop)
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

    /// Whether chown works here; under `CI=true` it must (CI runs as root).
    fn can_chown() -> bool {
        if rustix::process::geteuid().as_raw() == 0 {
            return true;
        }
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "this test needs root (chown) under CI"
        );
        eprintln!("skipped: chown needs root");
        false
    }

    /// `root/home/evil` owned by uid 1000 and `root/srv` (root's), both 0755, in a
    /// fresh root-owned 0755 directory.
    fn evil_home() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        chmod(root.path(), 0o755);
        let evil = root.path().join("home/evil");
        let srv = root.path().join("srv");
        for d in [&evil, &srv] {
            fs::create_dir_all(d).unwrap();
            chmod(d, 0o755);
        }
        chmod(&root.path().join("home"), 0o755);
        std::os::unix::fs::chown(&evil, Some(1000), Some(1000)).unwrap();
        (root, evil, srv)
    }

    fn owned_by_1000(path: &Path) -> String {
        format!(
            "{}: owned by uid 1000, not root; fix with chown root or set strict_modes = false",
            path.display()
        )
    }

    #[test]
    fn a_directory_holding_a_link_in_the_middle_of_a_chain_is_checked() {
        if !can_chown() {
            return;
        }
        // etc/manifests.d -> home/evil/current -> srv/rev2: uid 1000 can repoint the
        // middle link although neither end is in its directory.
        let (root, evil, srv) = evil_home();
        let rev2 = srv.join("rev2");
        fs::create_dir(&rev2).unwrap();
        chmod(&rev2, 0o755);
        let etc = root.path().join("etc");
        fs::create_dir(&etc).unwrap();
        chmod(&etc, 0o755);
        std::os::unix::fs::symlink(&rev2, evil.join("current")).unwrap();
        let manifests = etc.join("manifests.d");
        std::os::unix::fs::symlink(evil.join("current"), &manifests).unwrap();
        let e = StrictModes::new().path_and_parents(&manifests).unwrap_err();
        assert_eq!(e, owned_by_1000(&evil));
        // The same chain with the middle directory root's passes.
        std::os::unix::fs::chown(&evil, Some(0), Some(0)).unwrap();
        StrictModes::new().path_and_parents(&manifests).unwrap();
        // A relative middle link resolves the same way.
        fs::remove_file(evil.join("current")).unwrap();
        std::os::unix::fs::symlink("../../srv/rev2", evil.join("current")).unwrap();
        StrictModes::new().path_and_parents(&manifests).unwrap();
        std::os::unix::fs::chown(&evil, Some(1000), Some(1000)).unwrap();
        let e = StrictModes::new().path_and_parents(&manifests).unwrap_err();
        assert_eq!(e, owned_by_1000(&evil));
    }

    #[test]
    fn a_file_reached_through_a_link_in_another_users_directory_is_refused() {
        if !can_chown() {
            return;
        }
        // m/l.yaml -> home/evil/f.yaml -> srv/p.yaml
        let (root, evil, srv) = evil_home();
        let target = srv.join("p.yaml");
        fs::write(&target, "x").unwrap();
        chmod(&target, 0o644);
        std::os::unix::fs::symlink(&target, evil.join("f.yaml")).unwrap();
        let m = root.path().join("m");
        fs::create_dir(&m).unwrap();
        chmod(&m, 0o755);
        let link = m.join("l.yaml");
        std::os::unix::fs::symlink(evil.join("f.yaml"), &link).unwrap();
        assert_eq!(check_file(&m, &link).unwrap_err(), owned_by_1000(&evil));
        std::os::unix::fs::chown(&evil, Some(0), Some(0)).unwrap();
        check_file(&m, &link).unwrap();
    }

    #[test]
    fn a_link_another_user_owns_in_a_sticky_directory_is_refused() {
        if !can_chown() {
            return;
        }
        // As in /tmp: the sticky directory itself is fine, but only the link's owner
        // may replace the link, so its owner counts.
        let (root, _, srv) = evil_home();
        let sticky = root.path().join("tmp");
        fs::create_dir(&sticky).unwrap();
        chmod(&sticky, 0o1777);
        let link = sticky.join("manifests.d");
        std::os::unix::fs::symlink(&srv, &link).unwrap();
        StrictModes::new().path_and_parents(&link).unwrap();
        std::os::unix::fs::lchown(&link, Some(1000), Some(1000)).unwrap();
        let e = StrictModes::new().path_and_parents(&link).unwrap_err();
        assert_eq!(
            e,
            format!(
                "{} (a link in a sticky directory): owned by uid 1000, not root; fix with chown root or set strict_modes = false",
                link.display()
            )
        );
    }

    #[test]
    fn another_users_file_is_refused() {
        if !can_chown() {
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
