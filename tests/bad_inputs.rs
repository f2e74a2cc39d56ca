//! The bad-input corpus: broken manifests of every sort (syntax, types, semantics, edge
//! values, encodings, limits, file-system oddities), each next to a valid set of files.
//! `netpold check` must name the exact `path:line:col` and exit 1, and report nothing
//! against the valid files, which therefore still load. Then the running daemon gets
//! every case dropped into its watched directory and must keep enforcing exactly what
//! it did, stay alive and log each error (root only; fails instead of skipping under
//! `CI=true`).
//!
//! Committed cases are in `tests/bad_inputs/cases/`, their expected first error in
//! `tests/bad_inputs/expected.tsv`; large or file-system cases are made here at run time.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

mod common;
use common::netns::can_run;
use common::topology::*;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/bad_inputs");
/// Valid files next to every case; named to sort before the cases, so that a case
/// that redefines one of their objects is the later, refused, definition.
const VALID: [(&str, &str); 2] = [
    ("0-endpoints.yaml", "endpoints.yaml"),
    ("0-policy.yaml", "policy.yaml"),
];

/// What a case puts in the directory.
#[derive(Clone, Debug)]
enum Entry {
    Bytes(Vec<u8>),
    /// A sparse file of this length.
    Sized(u64),
    Symlink(&'static str),
    Fifo,
    Dir,
}

#[derive(Clone, Debug)]
struct Case {
    /// Name (relative path bytes) → content; the first is the file the error names.
    entries: Vec<(Vec<u8>, Entry)>,
    line: u32,
    col: u32,
    words: String,
    /// Checked as `netpold check FILE…`, as it is no manifest in a directory scan.
    explicit: bool,
    /// Needs a reader that is not root (chmod 000 does not stop root).
    unprivileged: bool,
}

impl Case {
    fn one(name: &str, entry: Entry, at: (u32, u32), words: &str) -> Case {
        Case {
            entries: vec![(name.as_bytes().to_vec(), entry)],
            line: at.0,
            col: at.1,
            words: words.to_owned(),
            explicit: false,
            unprivileged: false,
        }
    }

    /// How messages name the file of the first error.
    fn display(&self) -> String {
        String::from_utf8_lossy(&self.entries[0].0).into_owned()
    }

    fn write(&self, dir: &Path) {
        for (name, entry) in &self.entries {
            let path = dir.join(OsStr::from_bytes(name));
            match entry {
                Entry::Bytes(b) => std::fs::write(&path, b).unwrap(),
                Entry::Sized(len) => std::fs::File::create(&path).unwrap().set_len(*len).unwrap(),
                Entry::Symlink(target) => symlink(target, &path).unwrap(),
                Entry::Fifo => nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).unwrap(),
                Entry::Dir => std::fs::create_dir(&path).unwrap(),
            }
        }
        if self.unprivileged {
            let path = dir.join(OsStr::from_bytes(&self.entries[0].0));
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o000)).unwrap();
        }
    }
}

fn committed() -> Vec<Case> {
    let table = std::fs::read_to_string(format!("{CORPUS}/expected.tsv")).unwrap();
    table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let mut fields = l.splitn(3, '\t');
            let (file, at, words) = (
                fields.next().unwrap(),
                fields.next().unwrap(),
                fields
                    .next()
                    .expect("file, line:col and words, tab-separated"),
            );
            let (line, col) = at.split_once(':').unwrap();
            let bytes = std::fs::read(format!("{CORPUS}/cases/{file}")).unwrap();
            Case::one(
                file,
                Entry::Bytes(bytes),
                (line.parse().unwrap(), col.parse().unwrap()),
                words,
            )
        })
        .collect()
}

const NS_HEAD: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n";

/// Cases too large to commit, or that are file-system objects rather than content.
fn generated() -> Vec<Case> {
    let bytes = |s: String| Entry::Bytes(s.into_bytes());
    let deep = format!("{NS_HEAD}x: {}{}\n", "[".repeat(40), "]".repeat(40));
    let mut aliased = format!("{NS_HEAD}a0: &a0 x\n");
    for i in 1..=10 {
        let (open, close) = ("[".repeat(10), "]".repeat(10));
        aliased.push_str(&format!("a{i}: &a{i} {open}*a{}{close}\n", i - 1));
    }
    let long_string = format!(
        "{NS_HEAD}  annotations: {{note: {}}}\n",
        "x".repeat(300_000)
    );
    let long_list = format!(
        "apiVersion: netpold.io/v1\nkind: WorkloadEndpoint\nmetadata: {{name: many, namespace: a}}\nspec:\n  interfaceName: v-a-many\n  ips: [{}]\n",
        (0..10_001)
            .map(|i| format!("10.9.{}.{}", i / 250, i % 250 + 1))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut cases = vec![
        Case::one(
            "limit-huge.yaml",
            Entry::Sized(32 * 1024 * 1024 + 1),
            (1, 1),
            "file is 33554433 bytes; the limit is 33554432",
        ),
        Case::one(
            "limit-deep.yaml",
            bytes(deep),
            (5, 35),
            "nested deeper than 32 levels",
        ),
        Case::one(
            "limit-deep-through-aliases.yaml",
            bytes(aliased),
            (9, 19),
            "nested deeper than 32 levels",
        ),
        Case::one(
            "limit-long-string.yaml",
            bytes(long_string),
            (5, 23),
            "string is 300000 bytes long; the limit is 262144",
        ),
        Case::one(
            "limit-long-list.yaml",
            bytes(long_list),
            (6, 8),
            "list has 10001 items; the limit is 10000",
        ),
        Case::one(
            "limit-documents.yaml",
            bytes(format!("{NS_HEAD}{}", "---\n".repeat(250_001))),
            // Where the document over the limit starts.
            (250_004, 1),
            "limit on documents",
        ),
        Case::one(
            "fs-dangling-link.yaml",
            Entry::Symlink("no-such-file.yaml"),
            (1, 1),
            "cannot read: No such file or directory",
        ),
        Case::one("fs-fifo.yaml", Entry::Fifo, (1, 1), "not a regular file"),
        Case::one(
            "fs-device-link.yaml",
            Entry::Symlink("/dev/zero"),
            (1, 1),
            "not a regular file",
        ),
        Case::one(
            "fs-name-\u{FFFD}.yaml",
            bytes(NS_HEAD.to_owned()),
            (1, 1),
            "the file name is not valid UTF-8; rename the file",
        ),
        Case::one(
            "fs-unreadable.yaml",
            bytes(NS_HEAD.to_owned()),
            (1, 1),
            "cannot read: Permission denied",
        ),
        Case::one(
            "fs-directory.yaml",
            Entry::Dir,
            (1, 1),
            "not a regular file",
        ),
    ];
    let mut looped = Case::one(
        "fs-loop-a.yaml",
        Entry::Symlink("fs-loop-b.yaml"),
        (1, 1),
        "cannot read: Too many levels of symbolic links",
    );
    looped
        .entries
        .push((b"fs-loop-b.yaml".to_vec(), Entry::Symlink("fs-loop-a.yaml")));
    cases.push(looped);
    // A name that is not UTF-8: written with a raw byte, named with U+FFFD.
    let name = cases
        .iter_mut()
        .find(|c| c.display().contains('\u{FFFD}'))
        .unwrap();
    name.entries[0].0 = b"fs-name-\xff.yaml".to_vec();
    let unreadable = cases
        .iter_mut()
        .find(|c| c.display() == "fs-unreadable.yaml")
        .unwrap();
    unreadable.unprivileged = true;
    let directory = cases
        .iter_mut()
        .find(|c| c.display() == "fs-directory.yaml")
        .unwrap();
    directory.explicit = true;
    cases
}

fn all_cases() -> Vec<Case> {
    let mut cases = committed();
    cases.extend(generated());
    cases
}

fn write_valid(dir: &Path) {
    for (name, source) in VALID {
        std::fs::copy(format!("{CORPUS}/valid/{source}"), dir.join(name)).unwrap();
    }
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the process's effective user.
    std::fs::metadata("/proc/self").unwrap().uid() == 0
}

/// Runs `netpold check` on the valid files and the case; returns (exit code, stdout).
fn check(case: &Case) -> (Option<i32>, String) {
    let tmp = tempfile::Builder::new()
        .prefix("npd-fuzz-bad-")
        .tempdir()
        .unwrap();
    let dir = tmp.path();
    write_valid(dir);
    case.write(dir);
    let mut command = if case.unprivileged && is_root() {
        // Root reads a mode-000 file anyway; an ordinary user cannot.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]);
        c.arg(env!("CARGO_BIN_EXE_netpold"));
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_netpold"))
    };
    command
        .current_dir(dir)
        .args(["check", "--config", "/dev/null"]);
    if case.explicit {
        command.arg(case.display());
        command.args(VALID.map(|(name, _)| name));
    } else {
        command.args(["--manifests", "."]);
    }
    let out = command.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn corpus_is_large_enough() {
    let cases = all_cases();
    assert!(cases.len() >= 60, "{} cases", cases.len());
    let committed = std::fs::read_dir(format!("{CORPUS}/cases"))
        .unwrap()
        .count();
    assert_eq!(
        committed,
        self::committed().len(),
        "every committed case has its expectation"
    );
}

#[test]
fn check_names_each_error_and_keeps_the_valid_files() {
    let mut failures = Vec::new();
    let cases = all_cases();
    for case in &cases {
        let (code, out) = check(case);
        let file = case.display();
        let names: Vec<String> = case
            .entries
            .iter()
            .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
            .collect();
        let expected = format!("{file}:{}:{}: error: ", case.line, case.col);
        let first = out.lines().find(|l| l.starts_with(&format!("{file}:")));
        let problem = if code != Some(1) {
            Some(format!("exit code {code:?}"))
        } else if !first.is_some_and(|l| l.starts_with(&expected) && l.contains(&case.words)) {
            Some(format!("expected `{expected}… {}…`", case.words))
        } else {
            out.lines()
                .find(|l| !names.iter().any(|n| l.starts_with(&format!("{n}:"))))
                .map(|other| format!("an error outside the case: {other}"))
        };
        if let Some(problem) = problem {
            failures.push(format!("{file}: {problem}; output:\n{out}"));
        }
    }
    eprintln!("{} bad inputs checked", cases.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The daemon on a valid set, then every case dropped into its directory in batches:
/// after each batch the same verdicts, the daemon alive, every error logged.
#[test]
fn daemon_keeps_enforcing_through_bad_inputs() {
    if !can_run(&TOOLS) {
        return;
    }
    let wls = vec![
        wl("a/web", "app: web", &["10.0.0.1", "fd00::1"]),
        wl("a/db", "app: db", &["10.0.0.2", "fd00::2"]),
    ];
    let policy = std::fs::read_to_string(format!("{CORPUS}/valid/policy.yaml")).unwrap();
    let Some(topo) = setup("bad-in", wls, &[], &policy) else {
        return;
    };
    let rows: &[Row] = &[
        ("web", "db", "tcp", 5432, Both, PASS),
        ("web", "db", "tcp", 80, V4, DROP),
        ("outside", "db", "tcp", 5432, V6, DROP),
        ("db", "web", "tcp", 80, V4, PASS),
    ];
    topo.check(rows);
    let mut daemon = Daemon::start(&topo, "debounce_ms = 100\nresync_interval_s = 3600\n");
    let first = daemon.wait_sync(1, Duration::from_secs(30));
    assert!(!first.contains("not programmed"), "{first}");
    topo.check(rows);

    // Root reads a mode-000 file, and a directory named x.yaml is a directory to a
    // scan: neither is an error to a daemon running as root.
    let cases: Vec<Case> = all_cases()
        .into_iter()
        .filter(|c| !c.unprivileged && !c.explicit)
        .collect();
    let dir = topo.manifests().to_path_buf();
    for batch in cases.chunks(15) {
        let line = daemon.after(
            || {
                for case in batch {
                    case.write(&dir);
                }
            },
            Duration::from_secs(60),
        );
        assert!(
            line.contains("error"),
            "a sync that loaded bad files says so: {line}"
        );
        for case in batch {
            let expected = format!(
                "{}:{}:{}: error: ",
                dir.join(case.display()).display(),
                case.line,
                case.col
            );
            let logged = daemon.wait_line(
                |l| l.contains(&expected) && l.contains(&case.words),
                Duration::from_secs(5),
            );
            assert!(
                logged.is_some(),
                "no `{expected}… {}` in the log:\n{}",
                case.words,
                daemon.dump()
            );
        }
        let child = daemon.child.as_mut().unwrap();
        assert!(child.try_wait().unwrap().is_none(), "netpold exited");
        topo.check(rows);
    }
    eprintln!(
        "{} bad inputs dropped into the daemon's directory",
        cases.len()
    );
    assert_eq!(daemon.stop(), Some(0));
}
