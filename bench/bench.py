#!/usr/bin/env python3
"""netpold benchmark: initial load, edit latency of the running daemon, packet path.

Run as root from anywhere (Python 3 stdlib only; needs nft, ip, iperf3 for the
packet path). It builds nothing: build first with `cargo build --release`.

  sudo python3 bench/bench.py                                # small,medium,large, all parts
  sudo python3 bench/bench.py --sizes large --edits 10 --observer getgen
  sudo python3 bench/bench.py --sizes small --skip-path --binary /path/to/netpold

For every size it prints:
  a. initial load into a fresh network namespace: `netpold apply` vs `nft -f` of
     `netpold plan`'s output (plan made once, untimed), the two alternating;
     median (min-max) wall time and peak RSS (wait4).
  b. edit latency of `netpold run`: time from the rename()/unlink() of an edited
     manifest to the kernel commit, seen from outside by `nft monitor` (or by
     polling the ruleset generation, --observer getgen), for five kinds of edit,
     plus what the daemon's `sync N:` line reports for each edit.
  c. packet path through a host namespace holding the scenario's ruleset vs no
     table: iperf3 TCP throughput, new TCP connections/s, and a denied-port check.

Scenarios come from bench/gen.py (a copy of the project's shared scenario
generator; or --gen / $NETPOLD_BENCH_GEN) and are cached under
--cache (default /tmp/netpold-bench/<size>); raw results go to
<cache>/results-<time>.json.

Safety: every network namespace this script creates is named npd-bench-* or
npd-pp-* and is deleted again (also on Ctrl-C or failure); nothing is changed in
the machine's own network namespace (sysctls are set only inside the benchmark's
host namespace); only processes this script started are signalled, by PID.
"""
import argparse
import collections
import datetime
import ipaddress
import json
import math
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_BINARY = os.path.join(REPO, "target", "release", "netpold")
DEFAULT_GEN = os.environ.get("NETPOLD_BENCH_GEN") or os.path.join(REPO, "bench", "gen.py")
NODE = "node-0"
TABLE = "netpold"
TAG = "%d" % os.getpid()

# ------------------------------------------------------------------ bookkeeping
# Everything this run created, so that `cleanup` can undo it whatever happens.
NAMESPACES = []      # network namespaces created by this process
PROCS = []           # subprocess.Popen objects started by this process


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def make_ns(name):
    assert name.startswith("npd-bench-") or name.startswith("npd-pp-"), name
    subprocess.run(["ip", "netns", "add", name], check=True)
    NAMESPACES.append(name)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    return name


def del_ns(name):
    if name in NAMESPACES:
        NAMESPACES.remove(name)
        subprocess.run(["ip", "netns", "del", name], stderr=subprocess.DEVNULL)


def spawn(cmd, **kw):
    p = subprocess.Popen(cmd, **kw)
    PROCS.append(p)
    return p


def stop(p, sig=signal.SIGTERM, timeout=60):
    """Signals one process this script started (by PID) and reaps it."""
    if p.poll() is None:
        try:
            os.kill(p.pid, sig)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
    if p in PROCS:
        PROCS.remove(p)
    return p.returncode


def cleanup():
    for p in list(PROCS):
        try:
            stop(p, timeout=30)
        except Exception as e:  # keep cleaning
            log("cleanup: %s" % e)
    for ns in list(NAMESPACES):
        del_ns(ns)


def on_term(signum, frame):
    raise KeyboardInterrupt


def cpu_stall():
    """Microseconds in which some task waited for a CPU (PSI), or None without PSI."""
    try:
        with open("/proc/pressure/cpu") as f:
            return int(f.readline().split("total=")[1])
    except (OSError, IndexError, ValueError):
        return None


class Pressure:
    """CPU pressure over an interval: the share of wall time in which at least one
    runnable task (this benchmark's own included) waited for a CPU."""

    def __init__(self):
        self.t, self.s = time.monotonic(), cpu_stall()

    def share(self):
        s = cpu_stall()
        if s is None or self.s is None:
            return None
        return (s - self.s) / 1e6 / max(1e-9, time.monotonic() - self.t)


def fpress(x):
    return "-" if x is None else "%.0f%%" % (100 * x)


def nsexec(ns, *cmd):
    return ["ip", "netns", "exec", ns] + list(cmd)


# ------------------------------------------------------------------ formatting
def med(xs):
    return statistics.median(xs) if xs else None


def pct(xs, p):
    """Nearest-rank percentile (with n <= 100, p99 is the maximum)."""
    if not xs:
        return None
    s = sorted(xs)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def fsec(s):
    if s is None:
        return "-"
    if s < 1:
        return "%.1f ms" % (s * 1000) if s < 0.1 else "%.0f ms" % (s * 1000)
    return "%.2f s" % s


def fms(ms):
    if ms is None:
        return "-"
    return "%.1f" % ms if ms < 100 else "%.0f" % ms


def fmb(mb):
    return "-" if mb is None else ("%.1f MB" % mb if mb < 100 else "%.0f MB" % mb)


def fnum(x):
    return "-" if x is None else "{:,.0f}".format(x)


def rng(xs, f):
    """median (min-max) of xs, formatted with f."""
    if not xs:
        return "-"
    if len(xs) == 1:
        return f(xs[0])
    return "%s (%s-%s)" % (f(med(xs)), f(min(xs)), f(max(xs)))


def table(title, headers, rows, note=None):
    cols = len(headers)
    w = [len(h) for h in headers]
    for r in rows:
        for i in range(cols):
            w[i] = max(w[i], len(str(r[i])))
    out = [title]
    line = "  " + "  ".join(h.ljust(w[i]) if i == 0 else h.rjust(w[i]) for i, h in enumerate(headers))
    out.append(line)
    out.append("  " + "  ".join("-" * w[i] for i in range(cols)))
    for r in rows:
        out.append("  " + "  ".join(str(c).ljust(w[i]) if i == 0 else str(c).rjust(w[i])
                                    for i, c in enumerate(r)))
    if note:
        for n in note if isinstance(note, list) else [note]:
            out.append("  " + n)
    print("\n".join(out) + "\n", flush=True)


# ------------------------------------------------------------------ machine
def machine():
    def sh(*cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True).stdout.strip()
        except OSError:
            return "-"
    mem = "-"
    with open("/proc/meminfo") as f:
        for l in f:
            if l.startswith("MemTotal:"):
                mem = "%.1f GiB" % (int(l.split()[1]) / 1024 / 1024)
    cpu = "-"
    with open("/proc/cpuinfo") as f:
        for l in f:
            if l.startswith("model name"):
                cpu = l.split(":", 1)[1].strip()
                break
    return {"nproc": sh("nproc"), "cpu": cpu, "memory": mem, "kernel": sh("uname", "-r"),
            "nft": sh("nft", "--version"), "iperf3": (sh("iperf3", "--version").splitlines() or ["-"])[0],
            "python": sys.version.split()[0], "loadavg": open("/proc/loadavg").read().split()[:3]}


# ------------------------------------------------------------------ scenarios
def ensure_scenario(args, size):
    d = os.path.join(args.cache, size)
    need = [os.path.join(d, "manifests", f) for f in ("namespaces.yaml", "endpoints.yaml", "policies.yaml")]
    need.append(os.path.join(d, "scenario.json"))
    if not all(os.path.exists(p) for p in need):
        if not os.path.exists(args.gen):
            sys.exit("scenario generator not found at %s (give --gen PATH or $NETPOLD_BENCH_GEN)" % args.gen)
        log("generating %s scenario into %s" % (size, d))
        subprocess.run([sys.executable, args.gen, "--size", size, "--out", d], check=True,
                       stdout=subprocess.DEVNULL)
    with open(os.path.join(d, "scenario.json")) as f:
        objs = json.load(f)
    return d, objs


def make_plan(args, sdir, out):
    with open(out, "w") as f:
        subprocess.run([args.binary, "plan", "--config", "/dev/null", "--manifests",
                        os.path.join(sdir, "manifests"), "--node", NODE, "--table", TABLE],
                       stdout=f, check=True)


# ------------------------------------------------------------------ a. initial load
SUMMARY_RE = re.compile(r"(\d[\d,]*) chains?, (\d[\d,]*) rules?, (\d[\d,]*) sets?, (\d[\d,]*) maps?")
TXN_RE = re.compile(r"\((\d+) messages?, (\d+) (bytes|KB|MB)\)")
TIMING_RE = re.compile(r"in (\d+) ms \(([^)]*)\)")


def parse_txn(line):
    """(messages, bytes, {total, load, compile, kernel: ms}) from a netpold summary line."""
    msgs = nbytes = None
    m = TXN_RE.search(line)
    if m:
        msgs = int(m.group(1))
        nbytes = int(m.group(2)) * {"bytes": 1, "KB": 1024, "MB": 1 << 20}[m.group(3)]
    timing = {}
    ms = list(TIMING_RE.finditer(line))
    if ms:
        m = ms[-1]
        timing["total"] = int(m.group(1))
        for k, v in re.findall(r"(\w+) (\d+) ms", m.group(2)):
            timing[k] = int(v)
    return msgs, nbytes, timing


GNU_TIME = "/usr/bin/time"


def timed(cmd, stdin=None, ns=None):
    """Runs cmd (fork/exec/wait4), in network namespace ns if given: (seconds, peak RSS MB,
    output). The peak RSS comes from GNU time wrapped around cmd: wait4's ru_maxrss of a
    child forked from this script would include this script's own RSS (the kernel keeps
    the high-water mark of the pre-exec address space), a floor of about 20 MB."""
    rssf = None
    if ns is not None:
        if os.access(GNU_TIME, os.X_OK):
            rssf = tempfile.NamedTemporaryFile(prefix="rss-", delete=False)
            rssf.close()
            cmd = nsexec(ns, GNU_TIME, "-f", "%M", "-o", rssf.name, *cmd)
        else:
            cmd = nsexec(ns, *cmd)
    out = tempfile.TemporaryFile()
    start = time.perf_counter()
    p = subprocess.Popen(cmd, stdin=stdin, stdout=out, stderr=subprocess.STDOUT)
    PROCS.append(p)
    _, status, usage = os.wait4(p.pid, 0)
    elapsed = time.perf_counter() - start
    p.returncode = os.waitstatus_to_exitcode(status)
    PROCS.remove(p)
    out.seek(0)
    text = out.read().decode(errors="replace")
    out.close()
    rss = None
    if rssf:
        with open(rssf.name) as f:
            lines = f.read().split()
        os.unlink(rssf.name)
        rss = int(lines[-1]) / 1024 if lines and lines[-1].isdigit() else None
    if p.returncode != 0:
        raise RuntimeError("%s failed (exit %d): %s" % (" ".join(cmd), p.returncode, text[-2000:]))
    return elapsed, rss, text


def bench_load(args, size, sdir, workdir):
    plan = os.path.join(workdir, "plan-%s.nft" % size)
    t = time.perf_counter()
    make_plan(args, sdir, plan)
    plan_s = time.perf_counter() - t
    manifests = os.path.join(sdir, "manifests")
    tools = ["netpold apply", "nft -f (plan)"]
    res = {tool: [] for tool in tools}
    summary = None
    for r in range(args.rounds):
        order = tools if r % 2 == 0 else tools[::-1]
        for tool in order:
            ns = make_ns("npd-bench-load-%s-%s" % (TAG, r))
            try:
                if tool == "netpold apply":
                    wall, rss, text = timed([args.binary, "apply", "--config", "/dev/null",
                                             "--manifests", manifests, "--node", NODE, "--table", TABLE], ns=ns)
                    msgs, nbytes, timing = parse_txn(text)
                    m = SUMMARY_RE.search(text)
                    num = lambda i: int(m.group(i).replace(",", "")) if m else None
                    summary = {"line": text.strip().splitlines()[-1] if text.strip() else "",
                               "messages": msgs, "bytes": nbytes,
                               "chains": num(1), "rules": num(2), "sets": num(3), "maps": num(4)}
                    res[tool].append({"wall_s": wall, "rss_mb": rss, "timing_ms": timing})
                else:
                    with open(plan) as f:
                        wall, rss, _ = timed(["nft", "-f", "-"], stdin=f, ns=ns)
                    res[tool].append({"wall_s": wall, "rss_mb": rss})
            finally:
                del_ns(ns)
            log("  load %s round %d %-14s %s" % (size, r + 1, tool, fsec(wall)))
            # The kernel tears a deleted namespace's ruleset down in the background:
            # let it finish before the next round.
            time.sleep(max(0.2, args.settle * wall))
    rows = []
    for tool in tools:
        walls = [x["wall_s"] for x in res[tool]]
        rss = [x["rss_mb"] for x in res[tool] if x["rss_mb"] is not None]
        rows.append([tool, len(walls), rng(walls, fsec), rng(rss, fmb)])
    kern = [x["timing_ms"].get("kernel") for x in res["netpold apply"] if x["timing_ms"].get("kernel") is not None]
    note = []
    if summary:
        note.append("ruleset: %s chains, %s rules, %s sets, %s maps; %s messages, %s KiB in one transaction"
                    % (fnum(summary["chains"]), fnum(summary["rules"]), fnum(summary["sets"]), fnum(summary["maps"]),
                       fnum(summary["messages"]), fnum((summary["bytes"] or 0) / 1024)))
    if kern:
        note.append("netpold apply's own split (median): %s" % ", ".join(
            "%s %s ms" % (k, fms(med([x["timing_ms"][k] for x in res["netpold apply"] if k in x["timing_ms"]])))
            for k in ("load", "compile", "kernel", "total")))
    if not os.access(GNU_TIME, os.X_OK):
        note.append("peak RSS needs GNU time (%s): apt-get install -y time" % GNU_TIME)
    note.append("plan made once, untimed (%s; %.1f MB of nft text); fresh namespace per run, settle %.1fx the run's time after each"
                % (fsec(plan_s), os.path.getsize(plan) / 1e6, args.settle))
    table("[%s] a. initial load into a fresh namespace (median (min-max) of %d rounds)" % (size, args.rounds),
          ["tool", "n", "wall time", "peak RSS"], rows, note)
    os.unlink(plan)
    return {"plan_s": plan_s, "summary": summary, "runs": res}


# ------------------------------------------------------------------ selectors (for picking edits)
def sel_match(sel, labels):
    for k, v in (sel.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in sel.get("matchExpressions") or []:
        op, k, vals = e["operator"], e["key"], e.get("values") or []
        if op == "In":
            ok = k in labels and labels[k] in vals
        elif op == "NotIn":
            ok = not (k in labels and labels[k] in vals)
        elif op == "Exists":
            ok = k in labels
        elif op == "DoesNotExist":
            ok = k not in labels
        else:
            ok = False
        if not ok:
            return False
    return True


class Scenario:
    def __init__(self, objs):
        self.objs = objs
        self.namespaces = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Namespace"}
        self.endpoints = [o for o in objs if o["kind"] == "WorkloadEndpoint"]
        self.policies = [o for o in objs if o["kind"] == "NetworkPolicy"]
        self.by_ns = collections.defaultdict(list)
        for p in self.policies:
            self.by_ns[p["metadata"]["namespace"]].append(p)
        self.ep = {(e["metadata"]["namespace"], e["metadata"]["name"]): e for e in self.endpoints}
        self.eps_by_ns = collections.defaultdict(list)
        for e in self.endpoints:
            self.eps_by_ns[e["metadata"]["namespace"]].append(e)

    def ns_labels(self, ns):
        return self.namespaces[ns]["metadata"].get("labels") or {}

    def selecting(self, ns, labels):
        return {p["metadata"]["name"] for p in self.by_ns[ns]
                if sel_match(p["spec"].get("podSelector") or {}, labels)}

    # --- a small, independent evaluator of NetworkPolicy for one pair of endpoints
    def _peer(self, peer, pol_ns, ep):
        if "ipBlock" in peer:
            ip = ipaddress.ip_address(ep["spec"]["ips"][0])
            blk = peer["ipBlock"]
            if ip not in ipaddress.ip_network(blk["cidr"]):
                return False
            return not any(ip in ipaddress.ip_network(x) for x in blk.get("except") or [])
        ns = ep["metadata"]["namespace"]
        if "namespaceSelector" in peer:
            if not sel_match(peer["namespaceSelector"] or {}, self.ns_labels(ns)):
                return False
        elif ns != pol_ns:
            return False
        return sel_match(peer.get("podSelector") or {}, ep["metadata"].get("labels") or {})

    @staticmethod
    def _port(ports, proto, port, dst):
        if not ports:
            return True
        for p in ports:
            if p.get("protocol", "TCP") != proto:
                continue
            pp = p.get("port")
            if pp is None:
                return True
            if isinstance(pp, str):
                nums = [x["port"] for x in dst["spec"].get("ports") or []
                        if x.get("name") == pp and x.get("protocol", "TCP") == proto]
                if port in nums:
                    return True
                continue
            if pp <= port <= p.get("endPort", pp):
                return True
        return False

    def _direction(self, ep, other, dst, proto, port, kind):
        ns = ep["metadata"]["namespace"]
        labels = ep["metadata"].get("labels") or {}
        pols = [p for p in self.by_ns[ns] if sel_match(p["spec"].get("podSelector") or {}, labels)
                and kind.capitalize() in (p["spec"].get("policyTypes")
                                          or (["Ingress", "Egress"] if p["spec"].get("egress") else ["Ingress"]))]
        if not pols:
            return True, "not isolated"
        key = "to" if kind == "egress" else "from"
        for p in pols:
            for i, r in enumerate(p["spec"].get(kind) or []):
                peers = r.get(key)
                if (not peers or any(self._peer(x, ns, other) for x in peers)) and \
                        self._port(r.get("ports"), proto, port, dst):
                    return True, "%s %s[%d]" % (p["metadata"]["name"], kind, i)
        return False, "isolated by %s" % ", ".join(sorted(p["metadata"]["name"] for p in pols))

    def verdict(self, src, dst, proto, port):
        eg, why_e = self._direction(src, dst, dst, proto, port, "egress")
        ing, why_i = self._direction(dst, src, dst, proto, port, "ingress")
        return eg and ing, "egress: %s; ingress: %s" % (why_e, why_i)


def pick_edits(sc):
    """The objects the edit test changes, chosen so that every edit changes the ruleset."""
    tier_of = {}
    for e in sc.endpoints:
        lb = e["metadata"].get("labels") or {}
        if "app" in lb and "tier" in lb:
            tier_of.setdefault(lb["app"], lb["tier"])
    apps = sorted(tier_of)
    cands = []
    for idx, e in enumerate(sc.endpoints[:1500]):
        if e["metadata"]["name"].startswith("bench-"):
            continue
        ns = e["metadata"]["namespace"]
        lb = dict(e["metadata"].get("labels") or {})
        before = sc.selecting(ns, lb)
        best = None
        for app in apps:
            if app == lb.get("app"):
                continue
            alt = dict(lb, app=app, tier=tier_of[app])
            after = sc.selecting(ns, alt)
            score = (bool(before) and bool(after), len(before ^ after), len(before), -idx)
            if best is None or score > best[0]:
                best = (score, alt)
        if best:
            cands.append((best[0], e, best[1]))
    cands.sort(key=lambda c: c[0], reverse=True)
    relabel_ep, relabel_alt = cands[0][1], cands[0][2]
    # add/remove: the most-selected other endpoint
    rest = sorted((c for c in cands[1:]), key=lambda c: (c[0][2], c[0][3]), reverse=True)
    addrm_ep = rest[0][1]

    # policy: the ingress policy with ports on its first rule that selects most endpoints
    best = None
    for idx, p in enumerate(sc.policies):
        if p["metadata"]["name"].startswith("zz-bench"):
            continue
        rules = p["spec"].get("ingress") or []
        if "Ingress" not in (p["spec"].get("policyTypes") or []) or not rules or not rules[0].get("ports"):
            continue
        ns = p["metadata"]["namespace"]
        n = sum(1 for e in sc.eps_by_ns[ns]
                if sel_match(p["spec"].get("podSelector") or {}, e["metadata"].get("labels") or {}))
        if best is None or (n, -idx) > best[0]:
            best = ((n, -idx), p)
    policy, pol_selects = best[1], best[0][0]
    used = {x.get("port") for x in policy["spec"]["ingress"][0]["ports"]}
    extra = next(x for x in range(12345, 13000) if x not in used)
    pol_alt = json.loads(json.dumps(policy))
    pol_alt["spec"]["ingress"][0]["ports"].append({"protocol": "TCP", "port": extra})

    # namespace: the label change that flips the most namespace selectors
    nssels = {}
    for p in sc.policies:
        for kind, key in (("ingress", "from"), ("egress", "to")):
            for r in p["spec"].get(kind) or []:
                for peer in r.get(key) or []:
                    if "namespaceSelector" in peer:
                        s = peer["namespaceSelector"] or {}
                        nssels[json.dumps(s, sort_keys=True)] = s
    values = collections.defaultdict(set)
    for o in sc.namespaces.values():
        for k, v in (o["metadata"].get("labels") or {}).items():
            if k != "kubernetes.io/metadata.name":
                values[k].add(v)
    eps_in = collections.Counter(e["metadata"]["namespace"] for e in sc.endpoints)
    best = None
    for idx, (name, o) in enumerate(sorted(sc.namespaces.items())[:200]):
        lb = o["metadata"].get("labels") or {}
        before = {k for k, s in nssels.items() if sel_match(s, lb)}
        for key in sorted(values):
            for v in sorted(values[key]):
                if v == lb.get(key):
                    continue
                alt = dict(lb)
                alt[key] = v
                after = {k for k, s in nssels.items() if sel_match(s, alt)}
                score = (len(before ^ after), eps_in[name], -idx)
                if best is None or score > best[0]:
                    best = (score, o, alt)
    ns_obj, ns_alt_labels = best[1], best[2]
    ns_alt = json.loads(json.dumps(ns_obj))
    ns_alt["metadata"]["labels"] = ns_alt_labels
    ep_alt = json.loads(json.dumps(relabel_ep))
    ep_alt["metadata"]["labels"] = relabel_alt
    return {
        "relabel": (relabel_ep, ep_alt, cands[0][0]),
        "addrm": addrm_ep,
        "policy": (policy, pol_alt, pol_selects),
        "namespace": (ns_obj, ns_alt, best[0][0]),
    }


def split_docs(path):
    """The documents of one of gen.py's files, as text, in order."""
    with open(path) as f:
        text = f.read()
    docs, cur = [], None
    for line in text.splitlines(keepends=True):
        if line.rstrip("\n") == "---":
            if cur is not None:
                docs.append("".join(cur))
            cur = []
        elif cur is not None:
            cur.append(line)
    if cur:
        docs.append("".join(cur))
    return docs


def build_edit_tree(sdir, sc, picks, dst):
    """Copies the scenario's manifests to dst, with the edited objects moved out into
    their own small files. Returns {object key: original YAML text}."""
    os.makedirs(dst)
    moved = {}
    targets = {
        "namespaces.yaml": ("Namespace", {("", picks["namespace"][0]["metadata"]["name"])}),
        "endpoints.yaml": ("WorkloadEndpoint", {
            (picks["relabel"][0]["metadata"]["namespace"], picks["relabel"][0]["metadata"]["name"]),
            (picks["addrm"]["metadata"]["namespace"], picks["addrm"]["metadata"]["name"])}),
        "policies.yaml": ("NetworkPolicy", {
            (picks["policy"][0]["metadata"]["namespace"], picks["policy"][0]["metadata"]["name"])}),
    }
    for fname, (kind, keys) in targets.items():
        objs = [o for o in sc.objs if o["kind"] == kind]
        docs = split_docs(os.path.join(sdir, "manifests", fname))
        if len(docs) != len(objs):
            raise RuntimeError("%s: %d documents, scenario.json has %d %s objects" % (fname, len(docs), len(objs), kind))
        keep = []
        for o, d in zip(objs, docs):
            k = (o["metadata"].get("namespace", ""), o["metadata"]["name"])
            if "name: %s\n" % k[1] not in d:
                raise RuntimeError("%s: document order differs from scenario.json at %s" % (fname, k))
            if k in keys:
                moved[k] = "---\n" + d
            else:
                keep.append("---\n" + d)
        with open(os.path.join(dst, fname), "w") as f:
            f.write("".join(keep))
    return moved


# ------------------------------------------------------------------ b. edit latency
GEN_RE = re.compile(r"# new generation (\d+) by process (\d+) \(([^)]*)\)")
SYNC_RE = re.compile(r"\bsync (\d+): (.*)$")

# Polls the kernel's ruleset generation id (NFT_MSG_GETGEN) and prints
# "GEN CLOCK_MONOTONIC" on every change. Unlike a monitor it subscribes to no
# event group, so the kernel builds no notifications for the daemon's transactions.
GETGEN_POLLER = r"""
import socket, struct, sys, time
interval = float(sys.argv[1])
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)
s.bind((0, 0))
seq, last = 0, None
while True:
    seq += 1
    s.send(struct.pack("=IHHII", 20, (10 << 8) | 16, 1, seq, 0) + bytes(4))
    data = s.recv(65536)
    t = time.monotonic()
    ln, typ = struct.unpack_from("=IH", data, 0)
    gen, off = None, 20
    while typ != 2 and off + 4 <= ln:
        alen, atype = struct.unpack_from("=HH", data, off)
        if atype & 0x3fff == 1:
            gen = struct.unpack_from(">I", data, off + 4)[0]
        off += (alen + 3) & ~3
    if gen is not None and gen != last:
        print(gen, "%.6f" % t, flush=True)
        last = gen
    time.sleep(interval)
"""


class Lines:
    """Reads a process's output lines in a thread, stamping each with CLOCK_MONOTONIC."""

    def __init__(self, stream, keep=None, logfile=None):
        self.cond = threading.Condition()
        self.lines = []
        self.keep = keep
        self.logfile = logfile
        self.th = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self.th.start()

    def _run(self, stream):
        for raw in iter(stream.readline, b""):
            t = time.monotonic()
            line = raw.decode(errors="replace").rstrip("\n")
            if self.keep and not self.keep(line):
                continue
            if self.logfile:
                self.logfile.write("%.6f %s\n" % (t, line))
            with self.cond:
                self.lines.append((t, line))
                self.cond.notify_all()
        with self.cond:
            self.lines.append((time.monotonic(), None))  # EOF
            self.cond.notify_all()

    def wait_for(self, pred, start, timeout):
        """First (index, t, line, match) at or after index `start` for which pred(line) is
        truthy; None on timeout or EOF."""
        deadline = time.monotonic() + timeout
        i = start
        with self.cond:
            while True:
                while i < len(self.lines):
                    t, line = self.lines[i]
                    if line is None:
                        return None
                    m = pred(line)
                    if m:
                        return i, t, line, m
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)

    def __len__(self):
        with self.cond:
            return len(self.lines)


class Observer:
    """Sees kernel commits in one namespace from outside the daemon.

    monitor: `nft monitor`; its `# new generation N by process P (netpold)` line marks a
    commit, timestamped on arrival. While it listens, the kernel builds an event for
    every object of every transaction, and the monitor prints them all before the
    generation line, so with large transactions it lags (and can lose events).
    getgen: polls the ruleset generation id (NFT_MSG_GETGEN) every poll_ms; the id
    changes when a commit makes the new rules live. It subscribes to nothing.
    both: both at once; the latency is the poller's, the monitor's is shown beside it."""

    def __init__(self, kind, ns, daemon_pid, poll_ms, logdir, size):
        self.kinds = ["getgen", "monitor"] if kind == "both" else [kind]
        self.daemon_pid = daemon_pid
        self.lost = 0
        self.src = {}
        self.logs = []
        for k in self.kinds:
            logf = open(os.path.join(logdir, "%s-%s.log" % (size, k)), "w")
            self.logs.append(logf)
            if k == "monitor":
                cmd = nsexec(ns, "stdbuf", "-oL", "nft", "monitor")
                keep = lambda l: l.startswith("# ")  # generation lines and "# ERROR: ..."
            else:
                cmd = nsexec(ns, sys.executable, "-c", GETGEN_POLLER, str(poll_ms / 1000))
                keep = None
            proc = spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            self.src[k] = {"proc": proc, "out": Lines(proc.stdout, keep=keep, logfile=logf), "pos": 0,
                           "next": None}

    def ready(self, ns):
        if "getgen" in self.src:
            s = self.src["getgen"]
            r = s["out"].wait_for(lambda l: l[:1].isdigit(), 0, 10)
            if not r:
                raise RuntimeError("generation poller did not start: %s" % s["out"].lines[-3:])
            s["pos"] = r[0] + 1
            s["next"] = int(r[2].split()[0]) + 1
        if "monitor" in self.src:
            # A throw-away table, committed by `nft`, proves the monitor is listening.
            s = self.src["monitor"]
            probe = "npdbenchready"
            for _ in range(50):
                subprocess.run(nsexec(ns, "nft", "add table inet %s; delete table inet %s" % (probe, probe)),
                               check=True)
                r = s["out"].wait_for(lambda l: "(nft)" in l and GEN_RE.search(l), 0, 0.2)
                if r:
                    break
            else:
                raise RuntimeError("nft monitor did not start")
            s["pos"] = len(s["out"])
            s["next"] = int(r[3].group(1)) + 1
            if "getgen" in self.src:  # the probe's commit, seen by the poller too
                g = self.src["getgen"]
                r = g["out"].wait_for(lambda l: l[:1].isdigit() and int(l.split()[0]) >= s["next"] - 1,
                                      g["pos"], 10)
                g["pos"] = r[0] + 1
                g["next"] = int(r[2].split()[0]) + 1

    def _parse(self, kind, line):
        if kind == "monitor":
            if line.startswith("# ERROR"):
                return ("lost",)
            m = GEN_RE.search(line)
            if m and int(m.group(2)) == self.daemon_pid:
                return (int(m.group(1)),)
            return None
        gen, t = line.split()
        return (int(gen), float(t))

    def next_commit(self, timeout):
        """{observer: monotonic time} of the daemon's next commit (None: not seen in time).
        Generations count the daemon's commits, so a late line of an earlier commit is
        never taken for this one."""
        seen = {}
        deadline = time.monotonic() + timeout
        for k, s in self.src.items():
            want = s["next"]
            s["next"] += 1
            seen[k] = None
            while True:
                r = s["out"].wait_for(lambda l: self._parse(k, l), s["pos"], max(0, deadline - time.monotonic()))
                if not r:
                    break
                i, t, line, m = r
                s["pos"] = i + 1
                if m[0] == "lost":
                    self.lost += 1
                    continue
                if m[0] < want:
                    continue
                s["next"] = m[0] + 1
                seen[k] = m[1] if len(m) > 1 else t
                break
        return seen

    def close(self):
        for s in self.src.values():
            stop(s["proc"], timeout=10)
        for f in self.logs:
            f.close()


def bench_edits(args, size, sdir, sc, workdir):
    picks = pick_edits(sc)
    work = tempfile.mkdtemp(prefix="edit-%s-" % size, dir=workdir)
    mdir = os.path.join(work, "tree", "manifests")
    state = os.path.join(work, "state")
    os.makedirs(state)
    moved = build_edit_tree(sdir, sc, picks, mdir)

    def key(o):
        return (o["metadata"].get("namespace", ""), o["metadata"]["name"])

    rel_ep, rel_alt, rel_score = picks["relabel"]
    pol, pol_alt, pol_selects = picks["policy"]
    ns_obj, ns_alt, ns_score = picks["namespace"]
    addrm = picks["addrm"]
    files = {
        "relabel": os.path.join(mdir, "edit-endpoint-relabel.yaml"),
        "addrm": os.path.join(mdir, "edit-endpoint-addrm.yaml"),
        "policy": os.path.join(mdir, "edit-policy.yaml"),
        "namespace": os.path.join(mdir, "edit-namespace.yaml"),
    }
    # Each edit alternates between the object's original text and an edited version
    # (JSON is YAML), so every edit really changes the ruleset.
    states = {
        "relabel": [moved[key(rel_ep)], json.dumps(rel_alt, indent=1) + "\n"],
        "addrm": [moved[key(addrm)], None],  # None: file removed
        "policy": [moved[key(pol)], json.dumps(pol_alt, indent=1) + "\n"],
        "namespace": [moved[key(ns_obj)], json.dumps(ns_alt, indent=1) + "\n"],
    }
    for k, path in files.items():
        with open(path, "w") as f:
            f.write(states[k][0])
    desc = {
        "endpoint added": "%s/%s (re-created: %d policies select it)" % (
            addrm["metadata"]["namespace"], addrm["metadata"]["name"],
            len(sc.selecting(addrm["metadata"]["namespace"], addrm["metadata"]["labels"]))),
        "endpoint removed": "%s/%s" % (addrm["metadata"]["namespace"], addrm["metadata"]["name"]),
        "endpoint relabelled": "%s/%s app=%s <-> app=%s (%d / %d policies select it)" % (
            rel_ep["metadata"]["namespace"], rel_ep["metadata"]["name"], rel_ep["metadata"]["labels"]["app"],
            rel_alt["metadata"]["labels"]["app"],
            len(sc.selecting(rel_ep["metadata"]["namespace"], rel_ep["metadata"]["labels"])),
            len(sc.selecting(rel_ep["metadata"]["namespace"], rel_alt["metadata"]["labels"]))),
        "policy changed": "%s/%s (selects %d endpoints): ingress[0] gets TCP %s, and back" % (
            pol["metadata"]["namespace"], pol["metadata"]["name"], pol_selects,
            pol_alt["spec"]["ingress"][0]["ports"][-1]["port"]),
        "namespace relabelled": "%s %s (flips %d namespace selectors)" % (
            ns_obj["metadata"]["name"],
            ", ".join("%s=%s <-> %s" % (k, v, ns_alt["metadata"]["labels"][k])
                      for k, v in ns_obj["metadata"]["labels"].items() if ns_alt["metadata"]["labels"][k] != v),
            ns_score),
    }
    config = os.path.join(work, "netpold.toml")
    with open(config, "w") as f:
        f.write('manifests = "%s"\nnode = "%s"\ntable = "%s"\nstate_dir = "%s"\n'
                'runtime_dir = "%s"\ndebounce_ms = %d\nresync_interval_s = %d\nlog_level = "info"\n'
                % (mdir, NODE, TABLE, state, os.path.join(work, "run"), args.debounce_ms, args.resync_s))
    env = {k: v for k, v in os.environ.items() if k not in ("RUST_LOG", "NOTIFY_SOCKET", "JOURNAL_STREAM",
                                                           "WATCHDOG_USEC", "WATCHDOG_PID")}
    logdir = os.path.join(args.cache, "logs")
    os.makedirs(logdir, exist_ok=True)
    dlog = open(os.path.join(logdir, "%s-daemon.log" % size), "w")
    ns = make_ns("npd-bench-run-%s" % TAG)
    daemon = obs = None
    results = collections.defaultdict(list)
    try:
        t_start = time.monotonic()
        daemon = spawn(nsexec(ns, args.binary, "run", "--config", config),
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        dout = Lines(daemon.stderr, logfile=dlog)
        first = dout.wait_for(lambda l: SYNC_RE.search(l), 0, args.timeout)
        if not first or "programmed" not in first[2]:
            raise RuntimeError("the daemon's first sync did not program the ruleset: %s" % (first and first[2]))
        startup_s = first[1] - t_start
        log("  edits %s: daemon up, first sync after %s" % (size, fsec(startup_s)))
        dpos = first[0] + 1
        nsync = int(first[3].group(1))
        obs = Observer(args.observer, ns, daemon.pid, args.poll_ms, logdir, size)
        obs.ready(ns)
        cur = {k: 0 for k in states}
        plan = []
        for _ in range(args.edits):
            plan += ["endpoint removed", "endpoint added", "endpoint relabelled", "policy changed",
                     "namespace relabelled"]
        which = {"endpoint removed": "addrm", "endpoint added": "addrm", "endpoint relabelled": "relabel",
                 "policy changed": "policy", "namespace relabelled": "namespace"}
        for n, kind in enumerate(plan):
            k = which[kind]
            nxt = 1 - cur[k]
            text = states[k][nxt]
            path = files[k]
            if text is not None:
                tmp = os.path.join(os.path.dirname(path), ".tmp-" + os.path.basename(path))
                with open(tmp, "w") as f:
                    f.write(text)
                t0 = time.monotonic()
                os.rename(tmp, path)
            else:
                t0 = time.monotonic()
                os.unlink(path)
            cur[k] = nxt
            want = nsync + 1
            s = dout.wait_for(lambda l: (m := SYNC_RE.search(l)) and int(m.group(1)) >= want and m, dpos, args.timeout)
            if not s:
                raise RuntimeError("no sync line within %d s after edit %d (%s)" % (args.timeout, n, kind))
            dpos = s[0] + 1
            nsync = int(s[3].group(1))
            sync_line = s[3].group(2)
            rec = {"t_sync_s": s[1] - t0, "sync": sync_line, "commit_s": None}
            if "no change to the ruleset" in sync_line or "programmed" not in sync_line:
                rec["noop"] = True
            else:
                c = obs.next_commit(args.commit_grace)
                for k, t in c.items():
                    rec["%s_s" % k] = None if t is None else t - t0
                rec["commit_s"] = rec[obs.kinds[0] + "_s"]
            msgs, nbytes, timing = parse_txn(sync_line)
            rec.update(messages=msgs, bytes=nbytes, timing_ms=timing)
            results[kind].append(rec)
            if n % 25 == 0 or n == len(plan) - 1:
                log("  edits %s: %d/%d %s commit %s sync %s" % (size, n + 1, len(plan), kind,
                                                              fsec(rec["commit_s"]), fsec(rec["t_sync_s"])))
            time.sleep(args.gap)
        hwm = rss = None
        with open("/proc/%d/status" % daemon.pid) as f:
            for l in f:
                if l.startswith("VmHWM:"):
                    hwm = int(l.split()[1]) / 1024
                if l.startswith("VmRSS:"):
                    rss = int(l.split()[1]) / 1024
        obs.close()
        lost = obs.lost
        obs = None
        t = time.monotonic()
        rc = stop(daemon, signal.SIGTERM, timeout=args.timeout)
        stop_s = time.monotonic() - t
        daemon = None
    finally:
        if obs:
            obs.close()
        if daemon:
            stop(daemon, signal.SIGTERM, timeout=args.timeout)
        del_ns(ns)
        dlog.close()
        shutil.rmtree(work, ignore_errors=True)

    order = ["endpoint added", "endpoint relabelled", "endpoint removed", "policy changed", "namespace relabelled"]
    rows = []
    for kind in order:
        rs = results[kind]
        lat = [r["commit_s"] * 1000 for r in rs if r["commit_s"] is not None]
        mon = [r["monitor_s"] * 1000 for r in rs if r.get("monitor_s") is not None]
        syn = [r["t_sync_s"] * 1000 for r in rs]
        msgs = [r["messages"] for r in rs if r["messages"] is not None]
        kb = [r["bytes"] / 1024 for r in rs if r["bytes"] is not None]
        tim = lambda f: med([r["timing_ms"][f] for r in rs if f in r["timing_ms"]])
        missing = sum(1 for r in rs if r["commit_s"] is None and not r.get("noop"))
        noop = sum(1 for r in rs if r.get("noop"))
        rows.append([kind, "%d%s%s" % (len(lat), "" if not missing else " (%d unseen)" % missing,
                                       "" if not noop else " (%d no-op!)" % noop),
                     fms(pct(lat, 50)), fms(pct(lat, 99)), fms(max(lat) if lat else None)]
                    + ([fms(pct(mon, 50)), fms(pct(mon, 99))] if args.observer == "both" else [])
                    + [fms(pct(syn, 50)),
                     fnum(med(msgs)), fnum(med(kb)),
                     "%s / %s / %s / %s" % tuple(fms(tim(f)) for f in ("total", "load", "compile", "kernel"))])
    note = ["latency = rename()/unlink() of the file -> commit seen by %s; includes the debounce of %d ms"
            % ("`nft monitor` (line arrival)" if args.observer == "monitor"
               else "polling the generation id every %g ms" % args.poll_ms, args.debounce_ms)]
    if args.observer == "both":
        note.append("monitor = the same commits as `nft monitor` reports them (arrival of its generation line)")
    note += [
            "sync line = the daemon's `sync N:` line read from its stderr; messages/KiB and the daemon's "
            "own times are medians over the edits"]
    if args.observer != "getgen" and lost:
        note.append("WARNING: nft monitor lost netlink events %d times (ENOBUFS; the ruleset's transactions are "
                    "too large for it): unseen commits are left out; --observer getgen does not lose them" % lost)
    note.append("daemon: first sync %s after start; peak RSS %s (RSS at the end %s); SIGTERM -> exit %s in %s"
                % (fsec(startup_s), fmb(hwm), fmb(rss), rc, fsec(stop_s)))
    for kname in order:
        note.append("%-21s %s" % (kname + ":", desc[kname]))
    table("[%s] b. edit latency of `netpold run` (debounce_ms=%d, %d edits of each kind; p99 is nearest-rank)"
          % (size, args.debounce_ms, args.edits),
          ["edit", "n", "p50 ms", "p99 ms", "max ms"]
          + (["monitor p50", "monitor p99"] if args.observer == "both" else [])
          + ["sync line p50", "messages", "KiB", "daemon total / load / compile / kernel ms (p50)"], rows, note)
    return {"observer": args.observer, "debounce_ms": args.debounce_ms, "startup_s": startup_s,
            "daemon_hwm_mb": hwm, "daemon_rss_mb": rss, "monitor_lost": lost, "stop_s": stop_s, "exit": rc,
            "objects": desc, "edits": results}


# ------------------------------------------------------------------ c. packet path
CONNRATE = r"""
import json, socket, struct, sys, time
host, port, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
linger = struct.pack("ii", 1, 0)
lat, n, errs = [], 0, 0
end = time.perf_counter() + secs
while True:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
    t = time.perf_counter()
    try:
        s.connect((host, port))
        t2 = time.perf_counter()
        lat.append(t2 - t)
        n += 1
    except OSError:
        errs += 1
        t2 = time.perf_counter()
    s.close()
    if t2 >= end:
        break
elapsed = secs + (t2 - end)
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1e6 if lat else None
print(json.dumps({"conns": n, "errors": errs, "rate": n / elapsed, "p50_us": q(0.5), "p99_us": q(0.99)}))
"""

ACCEPTOR = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(4096)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.close()
"""

PROBE = r"""
import socket, sys
host, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.settimeout(timeout)
try:
    s.connect((host, port))
    print("connected")
except ConnectionRefusedError:
    print("refused")
except socket.timeout:
    print("dropped")
except OSError as e:
    print("error:" + e.__class__.__name__)
"""


CT_TABLE = "npdbench_ct"
CT_ONLY = """table inet %s {
	chain forward {
		type filter hook forward priority filter; policy accept;
		ct state established,related accept
		ct state invalid drop
	}
}
""" % CT_TABLE


def sh(*cmd):
    subprocess.run(cmd, check=True)


def probe(ns, host, port, timeout=1.5):
    return subprocess.run(nsexec(ns, sys.executable, "-c", PROBE, host, str(port), str(timeout)),
                          capture_output=True, text=True).stdout.strip()


def bench_path(args, size, sdir, sc):
    if not shutil.which("iperf3"):
        sys.exit("iperf3 not found: apt-get install -y iperf3 (or give --skip-path)")
    cli_ep = sc.ep[("ns-000", "bench-client")]
    srv_ep = sc.ep[("ns-000", "bench-server")]
    cli_ip, srv_ip = cli_ep["spec"]["ips"][0], srv_ep["spec"]["ips"][0]
    cli_if, srv_if = cli_ep["spec"]["interfaceName"], srv_ep["spec"]["interfaceName"]
    host = make_ns("npd-pp-host-%s" % TAG)
    cli = make_ns("npd-pp-cli-%s" % TAG)
    srv = make_ns("npd-pp-srv-%s" % TAG)
    procs = []
    res = {"configs": {"none": [], "ct-only": [], "netpold": []}, "loads": [], "deletes": [], "checks": []}
    try:
        # Workload namespaces: one veth each, the host-side end named as the scenario says.
        for ns, ifname, ip in ((cli, cli_if, cli_ip), (srv, srv_if, srv_ip)):
            sh("ip", "-n", host, "link", "add", ifname, "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("ip", "-n", ns, "addr", "add", ip + "/32", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "route", "add", "default", "dev", "eth0", "scope", "link")
            sh("ip", "-n", host, "link", "set", ifname, "up")
            sh("ip", "-n", host, "route", "add", ip + "/32", "dev", ifname)
            sh(*nsexec(host, "sysctl", "-qw", "net.ipv4.conf.%s.proxy_arp=1" % ifname))
            sh(*nsexec(host, "sysctl", "-qw", "net.ipv4.neigh.%s.proxy_delay=0" % ifname))
        sh(*nsexec(host, "sysctl", "-qw", "net.ipv4.ip_forward=1"))
        iperf = spawn(nsexec(srv, "iperf3", "-s", "-p", "5201"), stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL)
        procs.append(iperf)
        acc = spawn(nsexec(srv, sys.executable, "-c", ACCEPTOR, "7000"), stdout=subprocess.PIPE)
        procs.append(acc)
        if acc.stdout.readline().strip() != b"ready":
            raise RuntimeError("acceptor did not start")
        for _ in range(50):
            if probe(cli, srv_ip, 7000, 0.5) == "connected":
                break
            time.sleep(0.2)
        else:
            raise RuntimeError("no connectivity client -> server through the host namespace")
        for _ in range(50):  # iperf3's server needs a moment
            r = subprocess.run(nsexec(cli, "iperf3", "-c", srv_ip, "-p", "5201", "-n", "1M", "-J"),
                               capture_output=True, text=True, timeout=30)
            if r.returncode == 0:
                break
            time.sleep(0.2)

        # The ports the policies deny between the pair (the model's verdict), for the check.
        checks = [("client", "server", 7000)]
        for port in (7001, 7002, 12345, 2222):
            if not sc.verdict(cli_ep, srv_ep, "TCP", port)[0]:
                checks.append(("client", "server", port))
                break
        else:
            checks.append(("client", "server", 7001))
        for port in (7001, 12345):
            if not sc.verdict(srv_ep, cli_ep, "TCP", port)[0]:
                checks.append(("server", "client", port))
                break
        else:
            checks.append(("server", "client", 7001))
        ends = {"client": (cli, cli_ip, cli_ep), "server": (srv, srv_ip, srv_ep)}

        def run_checks(config):
            for a, b, port in checks:
                allowed, why = sc.verdict(ends[a][2], ends[b][2], "TCP", port)
                listening = b == "server" and port == 7000
                if config == "none":
                    expect = "connected" if listening else "refused"
                else:
                    expect = ("connected" if listening else "refused") if allowed else "dropped"
                got = probe(ends[a][0], ends[b][1], port)
                res["checks"].append({"config": config, "from": a, "to": b, "port": port, "model_allows": allowed,
                                      "why": why, "expected": expect, "observed": got})

        loaded = "none"

        def set_config(config):
            nonlocal loaded
            if loaded == config:
                return
            if loaded == "netpold":
                wall, _, _ = timed(["nft", "delete", "table", "inet", TABLE], ns=host)
                res["deletes"].append(wall)
            elif loaded == "ct-only":
                sh(*nsexec(host, "nft", "delete", "table", "inet", CT_TABLE))
            loaded = "none"
            if config == "netpold":
                wall, rss, text = timed([args.binary, "apply", "--config", "/dev/null", "--manifests",
                                         os.path.join(sdir, "manifests"), "--node", NODE, "--table", TABLE], ns=host)
                res["loads"].append(wall)
            elif config == "ct-only":
                p = subprocess.run(nsexec(host, "nft", "-f", "-"), input=CT_ONLY, text=True)
                if p.returncode:
                    raise RuntimeError("loading the ct-only table failed")
            loaded = config
            time.sleep(0.5)

        configs = ["none", "ct-only", "netpold"]
        for rep in range(args.path_reps):
            for config in (configs if rep % 2 == 0 else configs[::-1]):
                set_config(config)
                if rep == 0 and config != "ct-only":
                    run_checks(config)
                pr = Pressure()
                r = subprocess.run(nsexec(cli, "iperf3", "-c", srv_ip, "-p", "5201", "-t", str(args.path_secs),
                                          "-J"), capture_output=True, text=True, timeout=args.path_secs + 60)
                if r.returncode != 0:
                    raise RuntimeError("iperf3 failed (%s): %s" % (config, r.stdout[-500:] + r.stderr[-500:]))
                j = json.loads(r.stdout)
                gbps = j["end"]["sum_received"]["bits_per_second"] / 1e9
                time.sleep(0.5)
                r = subprocess.run(nsexec(cli, sys.executable, "-c", CONNRATE, srv_ip, "7000", str(args.path_secs)),
                                   capture_output=True, text=True, check=True, timeout=args.path_secs + 60)
                c = json.loads(r.stdout)
                res["configs"][config].append({"tcp_gbps": gbps, **c, "cpu_pressure": pr.share()})
                log("  path %s rep %d %-8s %.1f Gbit/s, %.0f conn/s (%d errors), CPU pressure %s"
                    % (size, rep + 1, config, gbps, c["rate"], c["errors"], fpress(pr.share())))
                time.sleep(0.5)
        if not any(c["config"] == "netpold" for c in res["checks"]):
            set_config("netpold")
            run_checks("netpold")
    finally:
        for p in procs:
            stop(p, timeout=10)
        for ns in (cli, srv, host):
            del_ns(ns)

    rows = []
    base = res["configs"]["none"]
    for config in ("none", "ct-only", "netpold"):
        rs = res["configs"][config]
        g = [r["tcp_gbps"] for r in rs]
        c = [r["rate"] for r in rs]
        p50 = [r["p50_us"] for r in rs if r["p50_us"]]
        p99 = [r["p99_us"] for r in rs if r["p99_us"]]
        ratio = lambda xs, key: ("%.2f" % (med(xs) / med([r[key] for r in base]))) if config != "none" else "1"
        rows.append([config if config != "netpold" else "netpold apply (%s)" % size,
                     fsec(med(res["loads"])) if config == "netpold" else "-",
                     rng(g, lambda x: "%.1f" % x), ratio(g, "tcp_gbps"),
                     rng(c, lambda x: "{:,.0f}".format(x)), ratio(c, "rate"),
                     "%s / %s" % (fnum(med(p50)), fnum(med(p99))),
                     sum(r["errors"] for r in rs),
                     fpress(med([r["cpu_pressure"] for r in rs if r["cpu_pressure"] is not None]))])
    note = ["%d interleaved reps of %g s each; TCP = iperf3, 1 stream; conns/s = single-threaded Python client, "
            "connect to TCP 7000 then close with RST (SO_LINGER 0)" % (args.path_reps, args.path_secs),
            "bench-client %s (%s) -> host namespace -> bench-server %s (%s); table deleted for `none`"
            " (%s per delete)" % (cli_ip, cli_if, srv_ip, srv_if, fsec(med(res["deletes"]))),
            "ct-only: one forward chain, `ct state established,related accept; ct state invalid drop` (the cost of"
            " conntrack alone)"]
    ct = res["configs"]["ct-only"]
    nd = res["configs"]["netpold"]
    if ct and nd:
        note.append("netpold / ct-only: TCP %.2f, new conns/s %.2f"
                    % (med([r["tcp_gbps"] for r in nd]) / med([r["tcp_gbps"] for r in ct]),
                       med([r["rate"] for r in nd]) / med([r["rate"] for r in ct])))
    table("[%s] c. packet path: forwarded bench-client -> bench-server, ruleset vs conntrack only vs no table"
          " (medians (min-max))"
          % size, ["config", "load", "TCP Gbit/s", "ratio", "new conns/s", "ratio", "connect p50/p99 us", "errors",
           "CPU pressure"],
          rows, note)
    crow = []
    for c in res["checks"]:
        crow.append(["%s -> %s TCP %d" % (c["from"], c["to"], c["port"]), c["config"],
                     "allow" if c["model_allows"] else "deny", c["expected"], c["observed"],
                     "ok" if c["expected"] == c["observed"] else "WRONG"])
    table("[%s] c. enforcement check (model = this script's own NetworkPolicy evaluator; nothing listens but TCP 7000)"
          % size, ["probe", "config", "model", "expected", "observed", ""], crow,
          ["%s -> %s TCP %d: %s" % (c["from"], c["to"], c["port"], c["why"]) for c in res["checks"]
           if c["config"] == "netpold"])
    return res


# ------------------------------------------------------------------ main
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="small,medium,large", help="comma-separated: small,medium,large,xl")
    ap.add_argument("--rounds", type=int, help="initial-load rounds per tool (default 5; 1 for xl)")
    ap.add_argument("--edits", type=int, default=50, help="edits of each kind (default 50)")
    ap.add_argument("--binary", default=DEFAULT_BINARY, help="netpold binary (default target/release/netpold)")
    ap.add_argument("--skip-load", action="store_true")
    ap.add_argument("--skip-edits", action="store_true")
    ap.add_argument("--skip-path", action="store_true")
    ap.add_argument("--path-sizes", help="sizes for the packet path (default: those of --sizes)")
    ap.add_argument("--cache", default="/tmp/netpold-bench", help="scenario cache and results (default %(default)s)")
    ap.add_argument("--gen", default=DEFAULT_GEN, help="gen.py (default %(default)s)")
    ap.add_argument("--debounce-ms", type=int, default=100)
    ap.add_argument("--resync-s", type=int, default=3600, help="the daemon's resync_interval_s during the edit test")
    ap.add_argument("--observer", choices=["both", "monitor", "getgen"], default="both",
                    help="how commits are seen: polling the generation id (NFT_MSG_GETGEN) and `nft monitor` side by "
                    "side (default), or only one of them; getgen alone keeps the kernel from building events "
                    "for every object of large transactions")
    ap.add_argument("--poll-ms", type=float, default=1.0, help="getgen poll interval")
    ap.add_argument("--gap", type=float, default=0.05, help="pause between edits, s")
    ap.add_argument("--commit-grace", type=float, default=5.0,
                    help="how long after the sync line the commit may still show up, s")
    ap.add_argument("--timeout", type=int, default=600, help="per-step timeout, s")
    ap.add_argument("--settle", type=float, default=1.0, help="pause after each load, as a multiple of its time")
    ap.add_argument("--path-reps", type=int, default=3)
    ap.add_argument("--path-secs", type=int, default=4, help="seconds per packet-path measurement")
    ap.add_argument("--json", help="raw results file (default <cache>/results-<time>.json)")
    args = ap.parse_args()

    if os.geteuid() != 0:
        sys.exit("run as root: the benchmark creates network namespaces (npd-bench-*, npd-pp-*)")
    args.binary = os.path.abspath(args.binary)
    if not os.access(args.binary, os.X_OK):
        sys.exit("netpold binary not found at %s\nbuild it first: (cd %s && cargo build --release)"
                 " or give --binary PATH" % (args.binary, REPO))
    for tool in ("ip", "nft", "stdbuf"):
        if not shutil.which(tool):
            sys.exit("%s not found" % tool)
    sizes = [s for s in args.sizes.split(",") if s]
    path_sizes = [s for s in (args.path_sizes.split(",") if args.path_sizes else sizes) if s]
    for s in sizes + path_sizes:
        if s not in ("small", "medium", "large", "xl"):
            sys.exit("unknown size %r" % s)
    os.makedirs(args.cache, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    args.json = args.json or os.path.join(args.cache, "results-%s.json" % stamp)

    signal.signal(signal.SIGINT, on_term)  # also when started with SIGINT ignored (a background job)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    m = machine()
    bin_ver = subprocess.run([args.binary, "--version"], capture_output=True, text=True).stdout.strip()
    bin_time = datetime.datetime.fromtimestamp(os.path.getmtime(args.binary)).strftime("%Y-%m-%d %H:%M")
    git = subprocess.run(["git", "-C", REPO, "log", "-1", "--format=%h %s"], capture_output=True, text=True).stdout.strip()
    print("netpold benchmark  %s" % datetime.datetime.now().strftime("%Y-%m-%d %H:%M"))
    print("  machine: %s CPUs (%s), %s RAM, kernel %s, %s, %s, Python %s, load avg %s"
          % (m["nproc"], m["cpu"], m["memory"], m["kernel"], m["nft"], m["iperf3"], m["python"],
             " ".join(m["loadavg"])))
    print("  binary:  %s (%s, built %s; repository at %s)" % (args.binary, bin_ver, bin_time, git or "?"))
    print("  sizes %s; packet path %s; edits %d of each kind; observer %s\n"
          % (",".join(sizes), "skipped" if args.skip_path else ",".join(path_sizes), args.edits, args.observer),
          flush=True)

    out = {"machine": m, "binary": args.binary, "binary_version": bin_ver, "repo_commit": git,
           "args": vars(args), "sizes": {}, "durations_s": {}}
    workdir = tempfile.mkdtemp(prefix="work-", dir=args.cache)
    t_all = time.monotonic()
    try:
        for size in dict.fromkeys(sizes + ([] if args.skip_path else path_sizes)):
            sdir, objs = ensure_scenario(args, size)
            sc = Scenario(objs)
            r = out["sizes"].setdefault(size, {})
            dur = out["durations_s"].setdefault(size, {})
            if float(open("/proc/loadavg").read().split()[0]) > 1.0:
                log("WARNING: load average %s: something else is running; results will be noisy"
                    % open("/proc/loadavg").read().split()[0])
            dur["loadavg_before"] = open("/proc/loadavg").read().split()[:3]
            press = dur.setdefault("cpu_pressure", {})
            if size in sizes and not args.skip_load:
                saved = args.rounds
                args.rounds = args.rounds or (1 if size == "xl" else 5)
                t, pr = time.monotonic(), Pressure()
                r["load"] = bench_load(args, size, sdir, workdir)
                dur["load"], press["load"] = time.monotonic() - t, pr.share()
                args.rounds = saved
            if size in sizes and not args.skip_edits:
                t, pr = time.monotonic(), Pressure()
                r["edits"] = bench_edits(args, size, sdir, sc, workdir)
                dur["edits"], press["edits"] = time.monotonic() - t, pr.share()
            if size in path_sizes and not args.skip_path:
                t, pr = time.monotonic(), Pressure()
                r["path"] = bench_path(args, size, sdir, sc)
                dur["path"], press["path"] = time.monotonic() - t, pr.share()
            with open(args.json, "w") as f:
                json.dump(out, f, indent=1)
    finally:
        cleanup()
        shutil.rmtree(workdir, ignore_errors=True)
    out["durations_s"]["total"] = time.monotonic() - t_all
    with open(args.json, "w") as f:
        json.dump(out, f, indent=1)
    rows = [[s] + ["%s (%s)" % (fsec(d.get(k)), fpress(d["cpu_pressure"].get(k))) if k in d else "-"
                   for k in ("load", "edits", "path")] + [" ".join(d["loadavg_before"])]
            for s, d in out["durations_s"].items() if s != "total"]
    table("run time of each part (total %s), with CPU pressure during it" % fsec(out["durations_s"]["total"]),
          ["size", "a. load", "b. edits", "c. packet path", "load avg before"], rows,
          ["CPU pressure: share of the time in which some runnable task waited for a CPU (/proc/pressure/cpu);"
           " the benchmark's own processes count too, so compare runs rather than read it as interference",
           "raw results: %s; daemon and observer logs: %s/logs/" % (args.json, args.cache)])


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        cleanup()
        sys.exit("interrupted; namespaces and processes cleaned up")
