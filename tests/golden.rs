//! Golden tests of `netpold plan` over the example manifest trees.
//!
//! For every directory `examples/<name>/`, runs the real binary
//! `netpold check --manifests examples/<name>` (must exit 0) and
//! `netpold plan --manifests examples/<name> --node edge-1` and compares its stdout
//! byte for byte with `tests/golden/<name>.nft`.
//!
//! After an intended change of the output, regenerate the files with
//!
//! ```text
//! NETPOLD_UPDATE_GOLDEN=1 cargo test --test golden
//! ```
//!
//! and read the diff before committing it: the golden files are the reviewed
//! record of what each example compiles to.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const NODE: &str = "edge-1";
const UPDATE_VAR: &str = "NETPOLD_UPDATE_GOLDEN";
const BIN: &str = env!("CARGO_BIN_EXE_netpold");

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn updating() -> bool {
    std::env::var(UPDATE_VAR).is_ok_and(|v| v == "1")
}

/// Every directory directly below `examples/`, sorted by name.
fn examples() -> Vec<String> {
    let dir = root().join("examples");
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display())))
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
        .map(|entry| {
            entry
                .file_name()
                .into_string()
                .unwrap_or_else(|n| panic!("example directory name {n:?} is not UTF-8"))
        })
        .filter(|name| !name.starts_with('.'))
        .collect();
    names.sort();
    names
}

fn golden_path(name: &str) -> PathBuf {
    root().join("tests/golden").join(format!("{name}.nft"))
}

/// Runs the binary from the crate root with an empty configuration file, so a
/// `/etc/netpold/netpold.toml` on the machine cannot change the output.
fn netpold(config: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(root())
        .arg(args[0])
        .arg("--config")
        .arg(config)
        .args(&args[1..])
        .env_remove("RUST_LOG")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {BIN}: {e}"))
}

fn describe(what: &str, out: &Output) -> String {
    format!(
        "{what}: {}\n--- stdout ---\n{}--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The first line where `actual` and `expected` differ, with a little context.
fn first_difference(expected: &str, actual: &str) -> String {
    let exp: Vec<&str> = expected.split_inclusive('\n').collect();
    let act: Vec<&str> = actual.split_inclusive('\n').collect();
    let at = exp
        .iter()
        .zip(&act)
        .position(|(e, a)| e != a)
        .unwrap_or(exp.len().min(act.len()));
    let from = at.saturating_sub(3);
    let show = |lines: &[&str]| -> String {
        let end = (at + 4).min(lines.len());
        lines[from.min(end)..end]
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let mark = if from + i == at { '>' } else { ' ' };
                format!("{mark}{:5} | {}\n", from + i + 1, l.trim_end_matches('\n'))
            })
            .collect()
    };
    format!(
        "first difference at line {} (golden {} lines, actual {} lines)\n--- golden ---\n{}--- actual ---\n{}",
        at + 1,
        exp.len(),
        act.len(),
        show(&exp),
        show(&act)
    )
}

/// Checks (or, when updating, writes) one example; returns the problems found.
fn run_example(name: &str, config: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let dir = format!("examples/{name}");

    let check = netpold(config, &["check", "--manifests", &dir]);
    if check.status.code() != Some(0) {
        problems.push(describe(
            &format!("netpold check --manifests {dir}"),
            &check,
        ));
    }

    let plan = netpold(config, &["plan", "--manifests", &dir, "--node", NODE]);
    if plan.status.code() != Some(0) {
        problems.push(describe(
            &format!("netpold plan --manifests {dir} --node {NODE}"),
            &plan,
        ));
        return problems;
    }
    let actual = String::from_utf8(plan.stdout).expect("plan output is UTF-8");

    let path = golden_path(name);
    let shown = path.strip_prefix(root()).unwrap_or(&path).display();
    if updating() {
        let old = fs::read(&path).ok();
        if old.as_deref() != Some(actual.as_bytes()) {
            fs::create_dir_all(path.parent().expect("golden files have a directory"))
                .expect("create tests/golden");
            fs::write(&path, &actual).unwrap_or_else(|e| panic!("cannot write {shown}: {e}"));
            eprintln!("golden: wrote {shown}");
        }
        return problems;
    }
    match fs::read_to_string(&path) {
        Ok(expected) if expected == actual => {}
        Ok(expected) => problems.push(format!(
            "{shown} differs from `netpold plan --manifests {dir} --node {NODE}`; if the change \
             is intended, run `{UPDATE_VAR}=1 cargo test --test golden` and review the diff\n{}",
            first_difference(&expected, &actual)
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => problems.push(format!(
            "{shown} is missing for example {dir}: create it with \
             `{UPDATE_VAR}=1 cargo test --test golden`, then read it and check that the \
             rules say what {dir}/README.md says"
        )),
        Err(e) => problems.push(format!("cannot read {shown}: {e}")),
    }
    problems
}

#[test]
fn plans_of_examples_match_golden_files() {
    let names = examples();
    assert!(
        !names.is_empty(),
        "no example directories under {}",
        root().join("examples").display()
    );
    let scratch = tempfile::tempdir().expect("temporary directory");
    let config = scratch.path().join("netpold.toml");
    fs::write(&config, "").expect("write empty configuration");

    let mut problems = Vec::new();
    for name in &names {
        for p in run_example(name, &config) {
            problems.push(format!("[{name}] {p}"));
        }
    }

    // A golden file whose example is gone is stale; updating removes it.
    let golden_dir = root().join("tests/golden");
    if let Ok(entries) = fs::read_dir(&golden_dir) {
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            let Some(stem) = file.strip_suffix(".nft") else {
                continue;
            };
            if names.iter().any(|n| n == stem) {
                continue;
            }
            if updating() {
                fs::remove_file(entry.path()).expect("remove stale golden file");
                eprintln!("golden: removed tests/golden/{file} (no examples/{stem})");
            } else {
                problems.push(format!(
                    "tests/golden/{file} has no examples/{stem}/ directory; delete it or run \
                     `{UPDATE_VAR}=1 cargo test --test golden`"
                ));
            }
        }
    }

    assert!(
        problems.is_empty(),
        "{} problem(s) with the examples:\n\n{}",
        problems.len(),
        problems.join("\n\n")
    );
}
