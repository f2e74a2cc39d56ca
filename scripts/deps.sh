#!/usr/bin/env bash
# Installs the Debian packages netpold's build, tests and demo need (as root).
set -euo pipefail
# systemd for systemd-analyze (unit checks), util-linux for setpriv (a test runs netpold unprivileged).
# chromium renders the html matrix in its test, tcpdump reads NFLOG drop logs in theirs,
# python3-prometheus-client parses the metrics page in its; g++ builds libFuzzer for the fuzz
# targets; git serves scripts/netpold-git-sync's test.
packages=(gcc libc6-dev pkg-config libnftnl-dev libmnl-dev nftables iproute2 python3 systemd util-linux chromium tcpdump python3-prometheus-client g++ git)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# cargo-fuzz drives the libFuzzer targets in fuzz/ (scripts/test.sh runs each briefly).
CARGO_FUZZ_VERSION=0.13.1
if ! cargo fuzz --version 2>/dev/null | grep -qF "$CARGO_FUZZ_VERSION"; then
  echo "installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --quiet
fi
