#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs what is missing, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(gcc libc6-dev)
[ -e /etc/ssl/certs/ca-certificates.crt ] || need_apt+=(ca-certificates)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
# The MFA page is tested in headless Chromium through chromedriver.
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
[ -x /usr/bin/chromedriver ] || need_apt+=(chromium-driver)
# The policy tests drive real clients: boto3 against moto's Cognito server, and authlib.
if ! command -v python3 >/dev/null 2>&1; then
  need_apt+=(python3 python3-pip)
elif ! python3 -m pip --version >/dev/null 2>&1; then
  need_apt+=(python3-pip)
fi
# The Redis store's tests start their own redis-server.
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
# A one-second smoke run of the load harness (benches/load/run.sh) needs wrk and nginx; HAProxy is one of
# its fronts. (ModSecurity and the CRS are only installed by a real benchmark run.)
command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
command -v nginx >/dev/null 2>&1 || need_apt+=(nginx-light)
command -v haproxy >/dev/null 2>&1 || need_apt+=(haproxy)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${need_apt[@]}"
fi
if ! python3 -c 'import moto, boto3, authlib, requests' 2>/dev/null; then
  # Debian's own Python refuses system-wide installs (PEP 668); a toolchain Python does not.
  python3 -m pip install --quiet 'moto[server]' boto3 authlib requests \
    || python3 -m pip install --quiet --break-system-packages 'moto[server]' boto3 authlib requests
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is missing: install Rust (https://rustup.rs) first" >&2
  exit 1
fi

threads="${AUTHWARD_TEST_THREADS:-2}"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set -o pipefail
# Every unit and integration test once; the corpus measurement on its own so that its figures print.
cargo test --lib --bins --tests -- --test-threads="$threads" --skip corpus:: 2>&1 | tee -a "$log"
cargo test --test integration corpus:: -- --nocapture 2>&1 | tee -a "$log"
# Each criterion benchmark once, as a smoke test (figures come from `cargo bench`, see BENCHMARKS.md).
cargo test --bench hot_paths --bench waf --bench injection --bench transform --bench risk --bench breach --bench sms --bench store 2>&1 | tee -a "$log"
# The load harness end to end on the debug build, one second per measurement: every front starts, authward
# and ModSecurity (when installed) block an SQL injection, every front serves both workloads, and every
# ablation front (full protection less one part) differs from full protection and serves sign-ins.
bash benches/load/run.sh --smoke --debug --ablation --out target/load-smoke 2>&1 | tail -n 25 | tee -a "$log"

# One closing line for the whole suite.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;?$/) p += $i; if ($(i+1) ~ /^failed;?$/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f; exit (f > 0) }' "$log"
