//! Network namespaces for end-to-end tests: created per test, deleted on drop (also
//! when the test panics). Nothing here touches the machine's own namespace.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Whether the test can run: root and the tools. Without them the test is skipped,
/// except under `CI=true`, where an end-to-end test that cannot run must fail.
pub fn can_run(tools: &[&str]) -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| {
            Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .output()
                .map_or(true, |o| !o.status.success())
        })
        .collect();
    if root && missing.is_empty() {
        return true;
    }
    let why = format!("needs root and {tools:?} (root: {root}, missing: {missing:?})");
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("end-to-end test cannot run under CI: {why}");
    }
    eprintln!("skipped: {why}");
    false
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("npd-{tag}-{}-{n}", std::process::id());
        let status = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap();
        assert!(status.success(), "ip netns add {name}");
        let ns = Netns { name };
        ns.sh("ip link set lo up");
        ns
    }

    /// Runs a shell command inside the namespace; it must succeed.
    pub fn sh(&self, cmd: &str) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, "sh", "-c", cmd])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {cmd}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A veth pair: `local` here, `remote` in `other`.
    pub fn link_to(&self, other: &Netns, local: &str, remote: &str) {
        let status = Command::new("ip")
            .args([
                "-n",
                &self.name,
                "link",
                "add",
                local,
                "type",
                "veth",
                "peer",
                "name",
                remote,
                "netns",
                &other.name,
            ])
            .status()
            .unwrap();
        assert!(status.success(), "veth {local} <-> {remote}");
    }

    /// Runs `nft` inside the namespace: (success, stdout, stderr).
    pub fn nft(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name, "nft"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
        drop(input);
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Runs `f` on a thread that has entered `ns`, as the daemon would run inside it.
pub fn in_netns<T: Send + 'static>(ns: &Netns, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{}", ns.name);
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap();
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
    .join()
    .unwrap()
}
