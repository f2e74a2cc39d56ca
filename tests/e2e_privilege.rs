//! Least privilege end to end: the running daemon keeps CAP_NET_ADMIN and nothing
//! else (and still programs and repairs its table), opens no network socket unless
//! `metrics_listen` asks for one, and refuses manifests others than root could change
//! (StrictModes) without changing what is enforced. Root only; fails instead of
//! skipping under `CI=true`.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

mod common;
use common::netns::can_run;
use common::topology::*;

const SYNC: Duration = Duration::from_secs(20);
const SHOW: Duration = Duration::from_secs(10);
const CONFIG: &str = "debounce_ms = 100\nresync_interval_s = 3600\n";
const CAP_NET_ADMIN: u64 = 1 << 12;

fn np(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: a}}\nspec:\n{spec}"
    )
}

/// db accepts TCP 5432 from web only.
fn db_from_web() -> String {
    np(
        "db-from-web",
        "  podSelector: {matchLabels: {app: db}}\n  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: 5432}]}]\n",
    )
}

fn workloads() -> Vec<Wl> {
    vec![
        wl("a/web", "app: web", &["10.0.0.1", "fd00::1"]),
        wl("a/db", "app: db", &["10.0.0.2", "fd00::2"]),
    ]
}

fn start(tag: &str, config: &str) -> Option<(Topology, Daemon)> {
    if !can_run(&TOOLS) {
        return None;
    }
    let t = Topology::new(tag, workloads(), &[]);
    t.write("policy.yaml", &db_from_web());
    let d = Daemon::start(&t, config);
    let line = d.wait_sync(1, SYNC);
    assert!(line.contains("programmed"), "first sync: {line}");
    Some((t, d))
}

/// `Key:` of a /proc status file, as a number (hexadecimal for the capability sets).
fn status_field(status: &str, key: &str) -> u64 {
    let value = status
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
        .unwrap_or_else(|| panic!("no {key} in:\n{status}"))
        .trim();
    if key.starts_with("Cap") {
        u64::from_str_radix(value, 16).unwrap()
    } else {
        value.parse().unwrap()
    }
}

/// Asserts that every thread of `pid` holds CAP_NET_ADMIN only (effective, permitted,
/// bounding; nothing inheritable or ambient) under no_new_privs; returns the count.
fn only_net_admin(pid: u32) -> usize {
    let tasks: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    for task in &tasks {
        let status = std::fs::read_to_string(task.join("status")).unwrap();
        for (key, want) in [
            ("CapEff", CAP_NET_ADMIN),
            ("CapPrm", CAP_NET_ADMIN),
            ("CapBnd", CAP_NET_ADMIN),
            ("CapInh", 0),
            ("CapAmb", 0),
            ("NoNewPrivs", 1),
        ] {
            assert_eq!(
                status_field(&status, key),
                want,
                "{key} of {}",
                task.display()
            );
        }
    }
    tasks.len()
}

#[test]
fn only_cap_net_admin_is_left_and_the_table_is_still_programmed_and_repaired() {
    let Some((t, d)) = start("priv-caps", CONFIG) else {
        return;
    };
    // The main loop, inotify, signals, table events, the status socket at least.
    assert!(only_net_admin(d.pid()) >= 4, "threads");
    // Still programs: the policy holds, and an edit goes in.
    t.check(&[
        ("web", "db", "tcp", 5432, Both, PASS),
        ("web", "db", "tcp", 80, Both, DROP),
    ]);
    d.after(|| t.remove("policy.yaml"), SYNC);
    t.eventually(&[("web", "db", "tcp", 80, Both, PASS)], SHOW);
    d.after(|| t.write("policy.yaml", &db_from_web()), SYNC);
    t.eventually(&[("web", "db", "tcp", 80, Both, DROP)], SHOW);
    // Still repairs: a table deleted behind its back comes back by itself.
    let (ok, _, err) = t.host.nft(&["delete", "table", "inet", "netpold"], None);
    assert!(ok, "nft delete table: {err}");
    t.eventually(
        &[
            ("web", "db", "tcp", 80, Both, DROP),
            ("web", "db", "tcp", 5432, Both, PASS),
        ],
        SHOW,
    );
}

/// The inodes of the sockets `pid` holds open.
fn socket_inodes(pid: u32) -> BTreeSet<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|target| {
            let t = target.to_string_lossy();
            t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// The daemon's own TCP and UDP sockets in its network namespace, as
/// `(table, local address, state)` from /proc/PID/net/{tcp,tcp6,udp,udp6}.
fn inet_sockets(pid: u32) -> Vec<(String, String, String)> {
    let mine = socket_inodes(pid);
    let mut found = Vec::new();
    for table in ["tcp", "tcp6", "udp", "udp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && f[9].parse::<u64>().is_ok_and(|i| mine.contains(&i)) {
                found.push((table.to_owned(), f[1].to_owned(), f[3].to_owned()));
            }
        }
    }
    found
}

#[test]
fn no_network_socket_unless_metrics_are_configured() {
    let Some((t, mut d)) = start("priv-sock", CONFIG) else {
        return;
    };
    assert!(
        !socket_inodes(d.pid()).is_empty(),
        "the daemon holds netlink and Unix sockets"
    );
    assert_eq!(inet_sockets(d.pid()), Vec::new());
    d.stop();
    drop(d);
    // With metrics: exactly the one listener (state 0A: LISTEN) on the port asked for.
    let d = Daemon::start(
        &t,
        &format!("{CONFIG}metrics_listen = \"127.0.0.1:9763\"\n"),
    );
    d.wait_sync(1, SYNC);
    let sockets = inet_sockets(d.pid());
    assert_eq!(
        sockets,
        vec![(
            "tcp".to_owned(),
            "0100007F:2623".to_owned(),
            "0A".to_owned()
        )]
    );
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Writes `file` with `mode` and renames it into place, as a deploy tool would.
fn drop_in(t: &Topology, file: &str, yaml: &str, mode: u32) {
    let tmp = t.manifests().join(format!(".{file}.tmp"));
    std::fs::write(&tmp, yaml).unwrap();
    chmod(&tmp, mode);
    std::fs::rename(&tmp, t.manifests().join(file)).unwrap();
}

#[test]
fn a_group_writable_file_changes_nothing_until_fixed() {
    let Some((t, d)) = start("priv-mode", CONFIG) else {
        return;
    };
    let before = [
        ("web", "db", "tcp", 5432, Both, PASS),
        ("web", "db", "tcp", 80, Both, DROP),
    ];
    t.check(&before);
    // A new file that would open port 80, group-writable: refused.
    let open_80 = np(
        "db-80",
        "  podSelector: {matchLabels: {app: db}}\n  ingress: [{ports: [{port: 80}]}]\n",
    );
    d.after(|| drop_in(&t, "open.yaml", &open_80, 0o664), SYNC);
    let refused = d
        .wait_line(
            |l| l.contains("open.yaml:1:1") && l.contains("writable by group (mode 0664)"),
            SHOW,
        )
        .unwrap_or_else(|| panic!("no strict-modes error:\n{}", d.dump()));
    assert!(
        refused.contains("fix with chmod go-w or set strict_modes = false"),
        "{refused}"
    );
    t.check(&before);
    // The existing policy file made writable by others: its last good content stays.
    d.after(|| chmod(&t.manifests().join("policy.yaml"), 0o646), SYNC);
    d.after(|| t.write("endpoints.yaml", &t.endpoints_yaml()), SYNC);
    t.check(&before);
    // Fixed: both take effect.
    d.after(|| chmod(&t.manifests().join("policy.yaml"), 0o644), SYNC);
    d.after(|| chmod(&t.manifests().join("open.yaml"), 0o644), SYNC);
    t.eventually(
        &[
            ("web", "db", "tcp", 5432, Both, PASS),
            ("web", "db", "tcp", 80, Both, PASS),
            ("web", "db", "tcp", 443, Both, DROP),
        ],
        SHOW,
    );
    // The directory itself writable by others: every file is held, a new one ignored.
    d.after(|| chmod(t.manifests(), 0o777), SYNC);
    d.after(|| t.remove("open.yaml"), SYNC);
    t.check(&[("web", "db", "tcp", 80, Both, PASS)]);
    assert!(
        d.wait_line(
            |l| l.contains("writable by group and others (mode 0777)"),
            SHOW
        )
        .is_some(),
        "{}",
        d.dump()
    );
    d.after(|| chmod(t.manifests(), 0o755), SYNC);
    t.eventually(&[("web", "db", "tcp", 80, Both, DROP)], SHOW);
}

/// `netpold ARGS` inside `ns`: were `apply` to go through, it programs that namespace.
fn netpold(ns: &common::netns::Netns, args: &[&str]) -> (i32, String, String) {
    let out = in_ns(&ns.name, NETPOLD).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn apply_refuses_and_check_warns_about_unsafe_modes() {
    if !can_run(&["ip"]) {
        return;
    }
    let ns = common::netns::Netns::new("priv-apply");
    let dir = tempfile::tempdir().unwrap();
    chmod(dir.path(), 0o755);
    let file = dir.path().join("policy.yaml");
    std::fs::write(&file, db_from_web()).unwrap();
    chmod(&file, 0o666);
    let config = dir.path().join("netpold.toml");
    std::fs::write(&config, "node = \"n1\"\n").unwrap();
    chmod(&config, 0o644);
    let m = dir.path().to_str().unwrap();
    let c = config.to_str().unwrap();
    let want = format!(
        "{}:1:1: error: writable by group and others (mode 0666); fix with chmod go-w or set strict_modes = false",
        file.display()
    );
    // `apply` stops before touching the kernel.
    let (code, _, err) = netpold(&ns, &["apply", "--config", c, "--manifests", m]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&want), "{err}");
    assert!(err.contains("nothing programmed"), "{err}");
    let (_, tables, _) = ns.nft(&["list", "tables"], None);
    assert!(!tables.contains("netpold"), "{tables}");
    // `check` warns and judges the content only.
    let (code, _, err) = netpold(&ns, &["check", "--config", c, "--manifests", m]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(&want.replace(": error: ", ": warning: ")),
        "{err}"
    );
    // The configuration file too, and strict_modes = false relaxes all of it.
    chmod(&config, 0o664);
    let (code, _, err) = netpold(&ns, &["apply", "--config", c, "--manifests", m]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "{}:1:1: error: writable by group (mode 0664)",
            config.display()
        )),
        "{err}"
    );
    // Whoever may write the file cannot turn the check off from inside it: its modes
    // are checked before it is read, whatever it says.
    std::fs::write(&config, "node = \"n1\"\nstrict_modes = false\n").unwrap();
    let refused = format!(
        "{}:1:1: error: writable by group (mode 0664); fix with chmod go-w or run with --no-strict-modes",
        config.display()
    );
    let (code, _, err) = netpold(&ns, &["apply", "--config", c, "--manifests", m]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&refused), "{err}");
    let (_, tables, _) = ns.nft(&["list", "tables"], None);
    assert!(!tables.contains("netpold"), "{tables}");
    // `run` stops at start (were it to run, `timeout` would end it with 124).
    let out = in_ns(&ns.name, "timeout")
        .args(["10", NETPOLD, "run", "--config", c, "--manifests", m])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&refused), "{err}");
    let (code, _, err) = netpold(&ns, &["check", "--config", c, "--manifests", m]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(&refused.replace(": error: ", ": warning: ")),
        "{err}"
    );
    // The command line relaxes it all.
    let (code, _, err) = netpold(
        &ns,
        &[
            "check",
            "--no-strict-modes",
            "--config",
            c,
            "--manifests",
            m,
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("warning"), "{err}");
    // A file only root may write relaxes the manifests' check.
    chmod(&config, 0o644);
    let (code, _, err) = netpold(&ns, &["check", "--config", c, "--manifests", m]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("warning"), "{err}");
}

/// As the shipped unit starts it: an unprivileged user whose only capability is an
/// ambient CAP_NET_ADMIN. It reads root's manifests (StrictModes accepts root as
/// owner), programs the table and ends with CAP_NET_ADMIN only, inheritable and
/// ambient cleared.
#[test]
fn as_an_unprivileged_user_with_ambient_cap_net_admin() {
    if !can_run(&["ip", "nft", "setpriv"]) {
        return;
    }
    let ns = common::netns::Netns::new("priv-user");
    let dir = tempfile::tempdir().unwrap();
    chmod(dir.path(), 0o755);
    // A copy: the checkout may sit where this user cannot read (/root).
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    chmod(&manifests, 0o755);
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/default-deny-web");
    for entry in std::fs::read_dir(example).unwrap() {
        let from = entry.unwrap().path();
        let to = manifests.join(from.file_name().unwrap());
        std::fs::copy(&from, &to).unwrap();
        chmod(&to, 0o644);
    }
    let (state, run) = (dir.path().join("state"), dir.path().join("run"));
    for d in [&state, &run] {
        std::fs::create_dir(d).unwrap();
        std::os::unix::fs::chown(d, Some(65534), Some(65534)).unwrap();
    }
    let config = dir.path().join("netpold.toml");
    std::fs::write(
        &config,
        format!(
            "manifests = \"{}\"\nnode = \"edge-1\"\nstate_dir = \"{}\"\nruntime_dir = \"{}\"\n{CONFIG}",
            manifests.display(),
            state.display(),
            run.display()
        ),
    )
    .unwrap();
    chmod(&config, 0o644);
    let mut child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.name,
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
        ])
        .args([
            "--clear-groups",
            "--inh-caps=-all,+net_admin",
            "--ambient-caps=+net_admin",
            "--bounding-set=-all,+net_admin",
            NETPOLD,
            "run",
            "--config",
        ])
        .arg(&config)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let stderr = child.stderr.take().unwrap();
    let _child = Started(child);
    let mut first = String::new();
    for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
        let line = line.unwrap();
        eprintln!("netpold: {line}");
        if line.contains("sync 1:") {
            first = line;
            break;
        }
    }
    assert!(first.contains("programmed"), "first sync: {first}");
    only_net_admin(pid);
    let (ok, table, _) = ns.nft(&["list", "table", "inet", "netpold"], None);
    assert!(ok && table.contains("chain"), "{table}");
}

/// A state directory others may write could plant the content enforced while a file is
/// broken: it is not used, and the daemon enforces the manifests all the same.
#[test]
fn a_state_directory_others_may_write_is_not_used() {
    if !can_run(&TOOLS) {
        return;
    }
    let t = Topology::new("priv-state", workloads(), &[]);
    t.write("policy.yaml", &db_from_web());
    let state = t.manifests().with_extension("state");
    std::fs::create_dir(&state).unwrap();
    chmod(&state, 0o777);
    let d = Daemon::start(&t, CONFIG);
    d.wait_sync(1, SYNC);
    let line = d
        .wait_line(|l| l.contains("state_dir"), SHOW)
        .unwrap_or_else(|| panic!("no state_dir error:\n{}", d.dump()));
    assert!(
        line.contains("writable by group and others (mode 0777)")
            && line.contains("last good contents are kept in memory only"),
        "{line}"
    );
    t.check(&[
        ("web", "db", "tcp", 5432, Both, PASS),
        ("web", "db", "tcp", 80, Both, DROP),
    ]);
    assert_eq!(
        std::fs::read_dir(&state).unwrap().count(),
        0,
        "nothing saved"
    );
}
