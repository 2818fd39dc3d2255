#!/usr/bin/env bash
# Protected sign-ins per second through authward with the risk engine on, next to pass-through, in one run.
# One nginx worker answers as the login service; authward runs with the json-login profile and risk in
# enforce mode (memory store), every sign-in from another client address and user so that no per-address
# or per-user limit decides the figure. Prints one line per workload: requests/s and latency percentiles.
#
#   bash benches/load/signin.sh [seconds]        # default 10 s per workload after a 2 s warm-up
set -euo pipefail
cd "$(dirname "$0")/../.."
secs="${1:-10}"
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx-light)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -q && apt-get install -y -q "${need[@]}"
fi
cargo build --release -q
work="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
up=$(port); front=$(port); admin=$(port)
cat > "$work/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  server {
    listen 127.0.0.1:$up;
    location = /api/login { default_type application/json; return 200 '{"token":"t0k3n","username":"u"}'; }
    location / { default_type text/plain; return 200 'hello'; }
  }
}
NGINX
cat > "$work/authward.yaml" <<YAML
listen: {http: [127.0.0.1:$front], access_log: false}
admin: {listen: 127.0.0.1:$admin}
upstream: {url: http://127.0.0.1:$up}
trusted_proxies: [127.0.0.1/32]
store: {kind: memory}
geoip:
  city: $PWD/data/geoip/GeoIP2-City-Test.mmdb
  asn: $PWD/data/geoip/GeoLite2-ASN-Test.mmdb
  anonymous_ip: $PWD/data/geoip/GeoIP2-Anonymous-IP-Test.mmdb
include: [$PWD/rules/profiles/json-login.yaml]
risk:
  mode: enforce
  compromised_credentials: {filter: "builtin:demo"}
YAML
cat > "$work/signin.lua" <<'LUA'
local n = 0
request = function()
  n = n + 1
  local body = string.format('{"username":"user%d","password":"correct-horse-battery-%d"}', n % 100000, n)
  local ip = string.format("198.%d.%d.%d", (n // 65536) % 256, (n // 256) % 256, n % 256)
  return wrk.format("POST", "/api/login", {["Content-Type"] = "application/json",
    ["X-Forwarded-For"] = ip, ["User-Agent"] = "Mozilla/5.0 (load test) Firefox/130.0"}, body)
end
LUA
taskset -c 1 nginx -c "$work/nginx.conf" &
taskset -c 1 ./target/release/authward --log warn serve --no-watch --config "$work/authward.yaml" &
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$admin/healthz" >/dev/null && break; sleep 0.1; done
run() { # name, url, extra wrk args
  taskset -c 0 wrk -t1 -c64 -d2s "${@:2}" >/dev/null
  taskset -c 0 wrk -t1 -c64 -d"${secs}s" --latency "${@:2}" |
    awk -v name="$1" '/Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2} /Non-2xx/ {bad=$NF}
      END {printf "%-28s %10s req/s  p50 %8s  p99 %8s  non-2xx %s\n", name, rps, p50, p99, bad ? bad : 0}'
}
run "direct GET /" "http://127.0.0.1:$up/"
run "authward pass-through GET /" "http://127.0.0.1:$front/"
run "direct POST /api/login" -s "$work/signin.lua" "http://127.0.0.1:$up/api/login"
run "authward sign-in, risk on" -s "$work/signin.lua" "http://127.0.0.1:$front/api/login"
echo "authward peak RSS: $(grep VmHWM /proc/$(pgrep -f "serve --no-watch --config $work")/status | awk '{print $2, $3}')"
