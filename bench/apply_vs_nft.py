#!/usr/bin/env python3
"""netpold apply vs nft -f of netpold plan's output, on ../shared/bench/gen.py
scenarios. Each round programs a fresh network namespace (created and deleted
here; the machine's own namespace is never touched). Prints medians of N rounds
of wall time and peak RSS (from wait4), the two tools alternating.

usage: bench/apply_vs_nft.py NETPOLD_BINARY SCENARIO_DIR [SCENARIO_DIR...] [--rounds 5]
(each SCENARIO_DIR is gen.py's --out, holding manifests/)"""
import os
import statistics
import subprocess
import sys
import time


def run(cmd, stdin=None):
    """Runs cmd; returns (seconds, peak RSS in MB of the process tree's largest child)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    err = proc.stderr.read().decode()
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{cmd} failed: {err}")
    return elapsed, usage.ru_maxrss / 1024


def fresh_ns(tag):
    name = f"npd-bench-{tag}-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    return name


def main():
    args = sys.argv[1:]
    rounds = 5
    if "--rounds" in args:
        i = args.index("--rounds")
        rounds = int(args[i + 1])
        del args[i : i + 2]
    binary, dirs = os.path.abspath(args[0]), args[1:]
    print(f"{'scenario':<10} {'tool':<28} {'wall median':>12} {'min':>8} {'max':>8} {'peak RSS':>10}")
    for d in dirs:
        manifests = os.path.join(d, "manifests")
        plan = os.path.join(d, "plan.nft")
        with open(plan, "w") as f:
            subprocess.run([binary, "plan", "--config", "/dev/null", "--manifests", manifests,
                            "--node", "node-0"], stdout=f, check=True)
        results = {"netpold apply": [], "nft -f (netpold plan)": []}
        for _ in range(rounds):
            for tool in results:
                ns = fresh_ns("a" if tool.startswith("netpold") else "n")
                try:
                    if tool.startswith("netpold"):
                        cmd = ["ip", "netns", "exec", ns, binary, "apply", "--config", "/dev/null",
                               "--manifests", manifests, "--node", "node-0"]
                        results[tool].append(run(cmd))
                    else:
                        with open(plan) as f:
                            results[tool].append(run(["ip", "netns", "exec", ns, "nft", "-f", "-"], stdin=f))
                finally:
                    subprocess.run(["ip", "netns", "del", ns], check=True)
        name = os.path.basename(os.path.normpath(d))
        for tool, rs in results.items():
            walls = [r[0] for r in rs]
            rss = statistics.median(r[1] for r in rs)
            print(f"{name:<10} {tool:<28} {statistics.median(walls):>11.3f}s {min(walls):>7.3f}s {max(walls):>7.3f}s {rss:>8.0f} MB")


if __name__ == "__main__":
    main()
