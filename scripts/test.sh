#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, unit, golden, CLI and
# (as root) network-namespace tests. End-to-end tests fail instead of skipping
# when CI=true.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ]; then
  ./scripts/deps.sh
else
  echo "not root: packages are not installed and namespace tests skip (or fail under CI=true)" >&2
fi
if cargo fmt --version >/dev/null 2>&1; then
  cargo fmt --all -- --check
else
  echo "warning: rustfmt is not installed: formatting not checked (rustup component add rustfmt)" >&2
fi
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy --all-targets --locked -- -D warnings
  cargo clippy --all-targets --locked --features fault-injection -- -D warnings
else
  echo "warning: clippy is not installed: lints not checked (rustup component add clippy)" >&2
fi
# fault-injection: the end-to-end fault tests make the kernel refuse a transaction.
NETPOLD_AGREEMENT_SCENARIOS="${NETPOLD_AGREEMENT_SCENARIOS:-300}" cargo test --locked --all-targets --features fault-injection
cargo test --locked --doc

# Each fuzz target (fuzz/, libFuzzer through cargo-fuzz) for a short time from its
# committed seeds; any crash, hang (-timeout) or memory blow-up (-rss_limit_mb) fails.
# The stable toolchain builds them with RUSTC_BOOTSTRAP=1 (cargo-fuzz passes -Z flags).
# CI builds them unoptimised (--dev): the build costs minutes less than a release
# build, and a short run needs coverage more than speed; the long runs use release.
if cargo fuzz --version >/dev/null 2>&1; then
  fuzz_secs="${NETPOLD_FUZZ_SECONDS:-30}"
  fuzz_scratch="$(mktemp -d /tmp/npd-fuzz-corpus.XXXXXX)"
  trap 'rm -rf "$fuzz_scratch"' EXIT
  export RUSTC_BOOTSTRAP=1
  cargo fuzz build -s none --dev
  for target in $(cargo fuzz list); do
    mkdir -p "$fuzz_scratch/$target"
    # New inputs go to the scratch directory (the first); the seeds stay as committed.
    if ! cargo fuzz run -s none --dev "$target" "$fuzz_scratch/$target" "$PWD/fuzz/corpus/$target" -- \
      -max_total_time="$fuzz_secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
      >"$fuzz_scratch/$target.log" 2>&1; then
      tail -n 60 "$fuzz_scratch/$target.log" >&2
      echo "fuzz target $target failed; the input is in fuzz/artifacts/$target" >&2
      exit 1
    fi
    grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "$fuzz_scratch/$target.log" | sed "s/^/fuzz $target: /"
  done
  unset RUSTC_BOOTSTRAP
elif [ "${CI:-}" = true ]; then
  echo "cargo-fuzz is missing (scripts/deps.sh installs it)" >&2
  exit 1
else
  echo "warning: cargo-fuzz is not installed: fuzz targets not run (cargo install cargo-fuzz --locked)" >&2
fi
