//! `scripts/netpold-git-sync` for real: a local bare repository as the remote, the real
//! netpold binary checking each revision, the symlink it swaps; and the shipped units
//! (`systemd-analyze verify` and `security`). Without git or systemd-analyze the tests
//! are skipped, except under `CI=true`, where they fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/netpold-git-sync");

const GOOD: &str = "\
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {name: db-1, namespace: shop, labels: {app: db}}
spec: {node: edge-1, interfaceName: veth-db1, ips: [10.1.0.2]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - ports:
    - {protocol: TCP, port: 5432}
";

fn have(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{tool} is missing; CI=true requires it (scripts/deps.sh installs it)"
        );
        eprintln!("skipped: {tool} is not installed");
    }
    found
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=netpold test",
            "-c",
            "user.email=test@netpold.invalid",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
    text(&out.stdout).trim().to_owned()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A remote, a clone to commit from, and the node's side: env file, state, symlink.
struct Fleet {
    _dir: tempfile::TempDir,
    work: PathBuf,
    env: PathBuf,
    state: PathBuf,
    manifests: PathBuf,
}

impl Fleet {
    fn new() -> Fleet {
        let dir = tempfile::Builder::new()
            .prefix("npd-diff-git-sync-")
            .tempdir()
            .unwrap();
        let root = dir.path().to_owned();
        let remote = root.join("remote.git");
        std::fs::create_dir(&remote).unwrap();
        git(&remote, &["init", "--quiet", "--bare"]);
        let work = root.join("work");
        std::fs::create_dir(&work).unwrap();
        git(&work, &["init", "--quiet"]);
        git(&work, &["checkout", "--quiet", "-b", "main"]);
        git(
            &work,
            &["remote", "add", "origin", remote.to_str().unwrap()],
        );
        let node = root.join("node");
        std::fs::create_dir(&node).unwrap();
        let env = node.join("git-sync.env");
        let state = node.join("state");
        let manifests = node.join("manifests.d");
        std::fs::write(
            &env,
            format!(
                "GIT_SYNC_REPO={}\nGIT_SYNC_BRANCH=main\nGIT_SYNC_PATH=manifests\nGIT_SYNC_NODE=edge-1\n\
                 GIT_SYNC_MANIFESTS={}\nGIT_SYNC_STATE_DIR={}\nGIT_SYNC_KEEP=2\nNETPOLD={}\nNETPOLD_CONFIG=/dev/null\n",
                remote.display(),
                manifests.display(),
                state.display(),
                env!("CARGO_BIN_EXE_netpold"),
            ),
        )
        .unwrap();
        Fleet {
            _dir: dir,
            work,
            env,
            state,
            manifests,
        }
    }

    /// Commits `policy.yaml` under `manifests/` and pushes; the new revision.
    fn push(&self, content: &str, message: &str) -> String {
        std::fs::create_dir_all(self.work.join("manifests")).unwrap();
        std::fs::write(self.work.join("manifests/policy.yaml"), content).unwrap();
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "--quiet", "-m", message]);
        git(&self.work, &["push", "--quiet", "origin", "main"]);
        git(&self.work, &["rev-parse", "HEAD"])
    }

    fn sync(&self) -> Output {
        let out = Command::new(SCRIPT)
            .env("NETPOLD_GIT_SYNC_ENV", &self.env)
            .output()
            .unwrap();
        eprintln!(
            "sync: {}\nstdout:\n{}stderr:\n{}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
        out
    }

    fn target(&self) -> PathBuf {
        std::fs::read_link(&self.manifests).unwrap()
    }

    fn rev(&self, sha: &str) -> PathBuf {
        self.state.join("revs").join(sha)
    }

    fn revs(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.state.join("revs"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

#[test]
fn a_checked_revision_is_switched_to_a_failing_one_is_not() {
    if !have("git") {
        return;
    }
    let fleet = Fleet::new();
    let first = fleet.push(GOOD, "db: allow 5432");
    let out = fleet.sync();
    assert!(out.status.success());
    assert_eq!(fleet.target(), fleet.rev(&first).join("manifests"));
    assert!(text(&out.stderr).contains(&format!("switched {}", fleet.manifests.display())));
    // `check --node edge-1` ran: its summary names the node's endpoint and policy.
    assert!(
        text(&out.stdout).contains("node edge-1: 1 endpoints")
            && text(&out.stdout).contains("shop/db-1  ingress: shop/db"),
        "{}",
        text(&out.stdout)
    );
    // What strict_modes asks: no file or directory writable by group or others.
    use std::os::unix::fs::PermissionsExt;
    for path in [
        fleet.rev(&first),
        fleet.target(),
        fleet.target().join("policy.yaml"),
    ] {
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o022, 0, "{} has mode {mode:o}", path.display());
    }
    // The daemon reads the tree through the symlink.
    assert_eq!(
        std::fs::read_to_string(fleet.manifests.join("policy.yaml")).unwrap(),
        GOOD
    );

    // Nothing new: nothing done.
    let out = fleet.sync();
    assert!(out.status.success());
    assert!(text(&out.stderr).contains(&format!(
        "up to date: {} is {first}",
        fleet.manifests.display()
    )));
    assert_eq!(fleet.target(), fleet.rev(&first).join("manifests"));
    assert_eq!(fleet.revs(), vec![first.clone()]);

    // A revision netpold refuses: the old tree stays, the error is reported where it is.
    let bad = fleet.push(
        &GOOD.replace("port: 5432", "port: 70000"),
        "db: a port out of range",
    );
    let out = fleet.sync();
    assert_eq!(out.status.code(), Some(1));
    let errors = text(&out.stdout);
    let at = format!("{}/manifests/policy.yaml:13:", fleet.rev(&bad).display());
    assert!(errors.contains(&at), "no {at} in:\n{errors}");
    assert!(text(&out.stderr).contains(&format!("{bad} fails netpold check: not switched")));
    assert_eq!(fleet.target(), fleet.rev(&first).join("manifests"));
    assert_eq!(
        fleet.revs(),
        vec![first.clone()],
        "the refused revision is removed"
    );
    assert_eq!(
        std::fs::read_to_string(fleet.manifests.join("policy.yaml")).unwrap(),
        GOOD
    );

    // Fixed, twice: each switches; two revisions are kept (GIT_SYNC_KEEP=2).
    let second = fleet.push(&GOOD.replace("5432", "5433"), "db: move to 5433");
    assert!(fleet.sync().status.success());
    assert_eq!(fleet.target(), fleet.rev(&second).join("manifests"));
    // Switch times are compared to the second.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let third = fleet.push(&GOOD.replace("5432", "5434"), "db: move to 5434");
    let out = fleet.sync();
    assert!(out.status.success());
    assert_eq!(fleet.target(), fleet.rev(&third).join("manifests"));
    assert!(text(&out.stderr).contains(&format!("pruned {first}")));
    let mut kept = vec![second, third];
    kept.sort();
    assert_eq!(fleet.revs(), kept);
}

#[test]
fn a_real_directory_is_not_replaced() {
    if !have("git") {
        return;
    }
    let fleet = Fleet::new();
    fleet.push(GOOD, "db");
    std::fs::create_dir(&fleet.manifests).unwrap();
    let out = fleet.sync();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("is a real directory: move it aside"));
    assert!(fleet.manifests.is_dir() && !fleet.manifests.is_symlink());
}

#[test]
fn units_verify_and_the_service_is_hardened() {
    if !have("systemd-analyze") {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("npd-diff-units-")
        .tempdir()
        .unwrap();
    let unit = include_str!("../systemd/netpold-git-sync.service");
    let exec = "ExecStart=/usr/local/sbin/netpold-git-sync";
    assert!(unit.contains(exec));
    // verify needs the executable to exist.
    let service = dir.path().join("netpold-git-sync.service");
    std::fs::write(&service, unit.replace(exec, &format!("ExecStart={SCRIPT}"))).unwrap();
    let timer = dir.path().join("netpold-git-sync.timer");
    std::fs::write(&timer, include_str!("../systemd/netpold-git-sync.timer")).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args([&service, &timer])
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("netpold-git-sync"))
        .collect();
    assert!(out.status.success() && ours.is_empty(), "verify:\n{stderr}");
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&service)
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    let exposure: f64 = stdout
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for netpold-git-sync.service: "))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{stdout}"));
    eprintln!("exposure {exposure}");
    // It needs the network and root's file ownership; 1.6 with systemd 252.
    assert!(exposure <= 2.0, "exposure {exposure}:\n{stdout}");
}
