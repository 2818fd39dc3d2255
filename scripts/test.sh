#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs what is missing, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(gcc libc6-dev)
[ -e /etc/ssl/certs/ca-certificates.crt ] || need_apt+=(ca-certificates)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${need_apt[@]}"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is missing: install Rust (https://rustup.rs) first" >&2
  exit 1
fi

threads="${AUTHWARD_TEST_THREADS:-2}"
# Everything once; the corpus measurement runs on its own so that its figures are printed.
cargo test --lib --bins --tests -- --test-threads="$threads" --skip corpus::
cargo test --test integration corpus:: -- --nocapture
# Each criterion benchmark once, as a smoke test (figures come from `cargo bench`, see BENCHMARKS.md).
cargo test --benches
cargo test --doc
