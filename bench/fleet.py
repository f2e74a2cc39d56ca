#!/usr/bin/env python3
"""Fleet-scale simulation: one manifest tree for many nodes, compiled for one node.

Generates fleet scenarios with the standard generator (bench/gen.py, imported, not
changed), runs `netpold plan --node node-0` on each under GNU time, and prints per
scenario: endpoints (local / remote), policies (all, and those enforced on node-0:
that select one of its endpoints), load and compile time (netpold's own
split), wall time, peak RSS, and the ruleset's sets, set elements, chains and rules.
No root needed: `plan` compiles without touching the kernel. Nothing is asserted.

Two series:
  fleet size  nodes 10, 100, 1,000, each with 50 workloads (500 .. 50,000 endpoints),
              2,000 policies: what grows with the fleet (remote endpoints in sets);
  node size   a fixed fleet of 1,000 nodes and 50,000 endpoints, 2,000 policies, with
              10, 50, 200 or 1,000 of them on node-0: what grows with the node.

Usage (after `cargo build --release`):
  python3 bench/fleet.py [--binary target/release/netpold] [--quick] [--work DIR]
"""
import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
NODE = "node-0"


def load_gen():
    spec = importlib.util.spec_from_file_location("gen", os.path.join(HERE, "gen.py"))
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    return gen


def scenario(gen, endpoints, policies, namespaces, nodes, local):
    """gen.generate's objects with `local` endpoints on node-0 and the rest spread
    round-robin over node-1 .. node-(nodes-1)."""
    objs = gen.generate(endpoints, policies, namespaces, seed=1, nodes=1)
    eps = [o for o in objs if o["kind"] == "WorkloadEndpoint"]
    stride = max(1, len(eps) // local)
    k = 0
    for j, ep in enumerate(eps):
        if j % stride == 0 and k < local:
            ep["spec"]["node"] = NODE
            k += 1
        else:
            ep["spec"]["node"] = "node-%d" % (1 + j % (nodes - 1))
    return objs


def write(gen, objs, out):
    os.makedirs(out, exist_ok=True)
    groups = {"Namespace": "namespaces.yaml", "WorkloadEndpoint": "endpoints.yaml",
              "NetworkPolicy": "policies.yaml"}
    for kind, name in groups.items():
        with open(os.path.join(out, name), "w") as f:
            f.write(gen.to_yaml([o for o in objs if o["kind"] == kind]))


def duration_ms(text):
    """Rust's Debug form of a Duration (`1.5s`, `12.3ms`, `40µs`, `7ns`) in ms."""
    m = re.fullmatch(r"([0-9.]+)(s|ms|µs|ns)", text)
    scale = {"s": 1000.0, "ms": 1.0, "µs": 1e-3, "ns": 1e-6}[m.group(2)]
    return float(m.group(1)) * scale


def plan(binary, manifests, out_path):
    cmd = ["/usr/bin/time", "-v", binary, "plan", "--config", "/dev/null",
           "--manifests", manifests, "--node", NODE]
    env = dict(os.environ, RUST_LOG="info")
    with open(out_path, "w") as out:
        p = subprocess.run(cmd, stdout=out, stderr=subprocess.PIPE, env=env, text=True)
    if p.returncode != 0:
        sys.exit("netpold plan failed:\n" + p.stderr)
    fig = {}
    m = re.search(r"plan: loaded in (\S+), compiled in (\S+), rendered in (\S+)", p.stderr)
    fig["load_ms"], fig["compile_ms"], fig["render_ms"] = (duration_ms(g) for g in m.groups())
    fig["rss_mb"] = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1)) / 1024
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", p.stderr).group(1)
    secs = 0.0
    for part in wall.split(":"):
        secs = secs * 60 + float(part)
    fig["wall_s"] = secs
    fig.update(count(out_path))
    return fig


def count(path):
    """Sets, set elements, chains and rules of a rendered plan."""
    sets = elements = 0
    block = None  # "set", "map", "chain"
    in_elements = False
    with open(path) as f:
        header = f.readline()
        for line in f:
            if line.startswith("\tset "):
                sets += 1
                block = "set"
            elif line.startswith("\tmap "):
                block = "map"
            elif line.startswith("\tchain "):
                block = "chain"
            elif line == "\t\telements = {\n":
                in_elements = True
            elif in_elements and line == "\t\t}\n":
                in_elements = False
            elif in_elements and block == "set":
                elements += 1
    m = re.search(r"(\d+) endpoints \((\d+) local\).*?(\d+) policies \((\d+) enforced here\); "
                  r"(\d+) sets, (\d+) chains, (\d+) rules", header)
    endpoints, local, policies, enforced, sets_h, chains, rules = (int(g) for g in m.groups())
    assert sets == sets_h, (sets, sets_h)
    return {"endpoints": endpoints, "local": local, "policies": policies, "enforced": enforced,
            "sets": sets, "elements": elements, "chains": chains, "rules": rules}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=os.path.join(HERE, "..", "target", "release", "netpold"))
    ap.add_argument("--policies", type=int, default=2000)
    ap.add_argument("--namespaces", type=int, default=100)
    ap.add_argument("--per-node", type=int, default=50, help="workloads per node in the fleet-size series")
    ap.add_argument("--quick", action="store_true", help="smaller series (fleets up to 100 nodes)")
    ap.add_argument("--work", help="where scenarios and plans go (default: a temporary directory, removed)")
    args = ap.parse_args()
    if not os.path.exists(args.binary):
        sys.exit("no %s: cargo build --release first (or --binary)" % args.binary)
    gen = load_gen()
    fleets = [10, 100] if args.quick else [10, 100, 1000]
    big = fleets[-1]
    locals_ = [10, 50, 200] if args.quick else [10, 50, 200, 1000]
    runs = [("fleet size", n, n * args.per_node, args.per_node) for n in fleets]
    runs += [("node size", big, big * args.per_node, k) for k in locals_ if k != args.per_node]
    work = args.work or tempfile.mkdtemp(prefix="netpold-fleet-")
    try:
        cols = ["series", "nodes", "endpoints", "local", "remote", "policies", "enforced", "load ms",
                "compile ms", "wall s", "peak RSS MB", "sets", "elements", "chains", "rules"]
        print("| " + " | ".join(cols) + " |")
        print("|" + "---|" * len(cols))
        for series, nodes, endpoints, local in runs:
            name = "n%d-e%d-l%d" % (nodes, endpoints, local)
            manifests = os.path.join(work, name)
            write(gen, scenario(gen, endpoints, args.policies, args.namespaces, nodes, local), manifests)
            f = plan(args.binary, manifests, os.path.join(work, name + ".nft"))
            row = [series, nodes, f["endpoints"], f["local"], f["endpoints"] - f["local"],
                   f["policies"], f["enforced"], "%.0f" % f["load_ms"], "%.0f" % f["compile_ms"],
                   "%.1f" % f["wall_s"], "%.0f" % f["rss_mb"], f["sets"], f["elements"],
                   f["chains"], f["rules"]]
            print("| " + " | ".join(str(c) for c in row) + " |", flush=True)
            shutil.rmtree(manifests)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
