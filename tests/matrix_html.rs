//! `netpold matrix --format html` at 300 endpoints: the page is built in reasonable
//! time and size, needs nothing from the network, and headless Chromium renders it
//! as a matrix with large areas of both the "allowed" and the "denied" colour.
//! Without Chromium the test is skipped, except under `CI=true`, where it fails.

use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

const NETPOLD: &str = env!("CARGO_BIN_EXE_netpold");
const ENDPOINTS: usize = 300;
const NAMESPACES: usize = 10;

/// 300 endpoints in 10 namespaces; the even namespaces admit only web workloads of
/// their own namespace on TCP 80, the odd ones are open. So the matrix has red and
/// green stripes wherever one looks.
fn manifests() -> String {
    let mut yaml = String::new();
    let apps = ["web", "db", "api"];
    for i in 0..ENDPOINTS {
        let ns = i % NAMESPACES;
        let _ = writeln!(
            yaml,
            "---\napiVersion: netpold.io/v1\nkind: WorkloadEndpoint\nmetadata: {{name: w{i:03}, namespace: ns{ns}, labels: {{app: {}}}}}\nspec: {{node: n{}, interfaceName: veth{i}, ips: [10.{}.{}.{}]}}",
            apps[i % 3],
            i % 2,
            ns,
            i / 250,
            i % 250 + 1
        );
    }
    for ns in (0..NAMESPACES).step_by(2) {
        let _ = writeln!(
            yaml,
            "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: web-only, namespace: ns{ns}}}\nspec: {{podSelector: {{}}, ingress: [{{from: [{{podSelector: {{matchLabels: {{app: web}}}}}}], ports: [{{port: 80}}]}}]}}"
        );
    }
    yaml
}

/// Runs headless Chromium on `page` with `extra` flags and returns its stdout. It is
/// killed by its PID if it hangs.
fn chromium(extra: &[String], page: &std::path::Path) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let (stdout, stderr) = (tmp.path().join("stdout"), tmp.path().join("stderr"));
    let started = Instant::now();
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1200,900",
        ])
        .arg(format!(
            "--user-data-dir={}",
            tmp.path().join("profile").display()
        ))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        status.success(),
        "chromium: {status}: {}",
        std::fs::read_to_string(&stderr).unwrap_or_default()
    );
    std::fs::read_to_string(&stdout).unwrap()
}

fn chromium_available() -> bool {
    let found = Command::new("sh")
        .args(["-c", "command -v chromium"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("chromium is missing (scripts/deps.sh installs it)");
        }
        eprintln!("skipped: no chromium (scripts/deps.sh installs it)");
    }
    found
}

/// Counts pixels within a small distance of `rgb` (rendering may shift colours slightly).
fn count_near(pixels: &[u8], channels: usize, rgb: (u8, u8, u8)) -> usize {
    pixels
        .chunks_exact(channels)
        .filter(|p| {
            p[0].abs_diff(rgb.0) <= 16 && p[1].abs_diff(rgb.1) <= 16 && p[2].abs_diff(rgb.2) <= 16
        })
        .count()
}

fn hex(colour: &str) -> (u8, u8, u8) {
    let c = |i: usize| u8::from_str_radix(&colour[i..i + 2], 16).unwrap();
    (c(1), c(3), c(5))
}

#[test]
fn html_matrix_of_300_endpoints_renders_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("all.yaml"), manifests()).unwrap();
    let started = Instant::now();
    let out = Command::new(NETPOLD)
        .args([
            "matrix",
            "--config",
            "/dev/null",
            "--format",
            "html",
            "--manifests",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = String::from_utf8(out.stdout).unwrap();
    eprintln!(
        "matrix html: {ENDPOINTS} endpoints, {} pairs, {} bytes in {took:.1?}",
        ENDPOINTS * (ENDPOINTS - 1),
        page.len()
    );
    assert!(page.len() < 8 << 20, "{} bytes", page.len());
    assert!(took < Duration::from_secs(60), "{took:?}");
    assert_eq!(page.matches("<td class=").count(), ENDPOINTS * ENDPOINTS);
    for external in ["http://", "https://", " src=", " href=", "@import", "url("] {
        assert!(!page.contains(external), "the page refers to {external}");
    }

    if !chromium_available() {
        return;
    }
    let html = dir.path().join("matrix.html");
    std::fs::write(&html, &page).unwrap();
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("matrix-300.png");
    let _ = std::fs::remove_file(&shot);
    let started = Instant::now();
    chromium(&[format!("--screenshot={}", shot.display())], &html);
    assert!(shot.exists(), "chromium wrote no screenshot");
    eprintln!(
        "chromium rendered it in {:.1?}: {}",
        started.elapsed(),
        shot.display()
    );

    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let pixels = &buf[..info.buffer_size()];
    let total = pixels.len() / channels;
    let allowed = count_near(pixels, channels, hex(netpold::matrix::HTML_ALLOWED));
    let denied = count_near(pixels, channels, hex(netpold::matrix::HTML_DENIED));
    eprintln!(
        "screenshot {}x{}: {allowed} allowed-colour pixels, {denied} denied-colour pixels of {total}",
        info.width, info.height
    );
    assert!(allowed * 10 > total, "allowed colour covers too little");
    assert!(denied * 10 > total, "denied colour covers too little");

    // Hover: a pointer over a cell (ns0/w010 -> ns0/w000) gives it its title.
    let hovered = dir.path().join("hovered.html");
    let pointer = "<script>document.getElementById('m').rows[2].cells[1].dispatchEvent(new MouseEvent('mouseover',{bubbles:true}));</script>";
    std::fs::write(
        &hovered,
        page.replace("</body>", &format!("{pointer}</body>")),
    )
    .unwrap();
    let dom = chromium(&["--dump-dom".to_owned()], &hovered);
    let want = "title=\"ns0/w010 → ns0/w000: denied\nTCP 80: denied by ingress: isolated; no rule of ns0/web-only allows this\"";
    assert!(
        dom.contains(want),
        "no hover text {want} in the rendered page"
    );
}
