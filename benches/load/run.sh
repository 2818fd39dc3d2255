#!/usr/bin/env bash
# The load harness (issue 7): authward next to nginx, HAProxy and nginx + ModSecurity v3 with the OWASP
# CRS, in one run, on loopback, each front with one worker, all in front of the same fixed upstream.
#
#   bash benches/load/run.sh                      # 3 interleaved rounds, 10 s per measurement
#   bash benches/load/run.sh --duration 5 --rounds 5
#   bash benches/load/run.sh --smoke              # 1 s, one round, no scaling, skips missing fronts
#   bash benches/load/run.sh --smoke --debug      # the same on the debug build (the test suite runs this)
#   bash benches/load/run.sh --ablation --fronts "authward-full nginx" --no-scaling   # what each part costs
#
# Options: --duration S (default 10), --warmup S (2), --rounds N (3), --out DIR (target/load),
# --no-scaling (skip the rule-count, connection-count and store-size curves), --no-install (never call
# apt-get: fronts whose packages are missing are skipped), --smoke (= --duration 1 --warmup 1 --rounds 1
# --no-scaling --no-install), --fronts "F ..." (measure only these of the main fronts: direct
# authward-pass authward-full authward-redis nginx haproxy nginx-modsec; for quick A/B runs while working), --debug
# (measure the debug build: checks that the harness works, its figures mean nothing), --ablation (also
# measure sign-ins on full protection with one part taken away at a time: the web ACL, the risk engine,
# the SMS guard, all three (the route profile and the event history remain), and the store's cap (lifted,
# so nothing is evicted: that front grows by every sign-in, ~470 MiB over 3 rounds of 8 s); the summary's
# ablation table gives what each part costs a sign-in).
#
# Layout: wrk (one thread) is pinned to core 0; the front under test and the upstream nginx to core 1,
# for every front alike. Every front runs for the whole harness; a round measures each (front, workload)
# once, in the same order, so slow drifts of the shared machine hit every front in every round; the
# figures are medians over rounds, and the ratios are taken within a round before the median.
#
# Latency: at 64 busy connections every front is saturated, so its latency is mostly queueing (64 / its
# requests/s) and "p99 added over direct" mostly restates the throughput gap. Each round therefore also
# measures both workloads paced: 16 connections that each pause a random 0–6 ms (3.2 ms on average)
# between requests, about 4 500 requests/s for every front (a rate all but ModSecurity serve far from
# saturation), where the added latency is the cost of the hop itself. The pauses are random because
# wrk's timers tick in whole milliseconds: equal pauses put the 16 connections' next requests into the
# same tick, and the hop's latency then measured its queue behind up to 15 others of the same burst
# (the figures in BENCHMARKS.md's session 11 section).
#
# Workloads: `GET /` and `POST /api/login` with a JSON body; the sign-in Lua script gives every request
# its own username and X-Forwarded-For address (a 2^32 space walked from a random start per wrk run), so
# no per-address or per-username limit of the shipped rule sets decides a figure: each rate key is hit
# once. Requests carry `Host: login.bench.test` (the CRS flags a numeric Host).
#
# Output in --out: results.csv (every measurement), summary.md (medians and ratios, scaling tables),
# scaling.png (when matplotlib is there), and the configs and logs of every front.
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$PWD"

duration=10 warmup=2 rounds=3 out="$root/target/load" scaling=1 install=1 smoke=0 only= profile=release ablation=0
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration="$2"; shift 2 ;;
    --warmup) warmup="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --no-scaling) scaling=0; shift ;;
    --no-install) install=0; shift ;;
    --fronts) only="$2"; shift 2 ;;
    --debug) profile=debug; shift ;;
    --ablation) ablation=1; shift ;;
    --smoke) smoke=1 duration=1 warmup=1 rounds=1 scaling=0 install=0; shift ;;
    -h|--help) sed -n '2,35p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
out="$(cd "$out" && pwd)"

# --- packages ------------------------------------------------------------------------------------
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
modsec_so=/usr/lib/nginx/modules/ngx_http_modsecurity_module.so
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx-light)
command -v haproxy >/dev/null || need+=(haproxy)
[ -f "$modsec_so" ] || need+=(libnginx-mod-http-modsecurity)
have_pkg modsecurity-crs || need+=(modsecurity-crs)
/usr/bin/python3 -c 'import matplotlib' 2>/dev/null || need+=(python3-matplotlib)
command -v redis-server >/dev/null || need+=(redis-server)
if [ ${#need[@]} -gt 0 ] && [ "$install" = 1 ]; then
  echo "installing: ${need[*]}" >&2
  apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >&2
fi
for tool in wrk nginx taskset curl; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool is required" >&2; exit 1; }
done

echo "building $profile" >&2
build=(cargo build -q); [ "$profile" = release ] && build+=(--release)
"${build[@]}" --bin authward
[ "$scaling" = 1 ] && "${build[@]}" --bin store-rss
bin="$root/target/$profile/authward"

work="$(mktemp -d)"
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  [ -n "${KEEP_WORK:-}" ] && echo "kept $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Free loopback ports, all reserved up front so two fronts never race for one.
ports=($(python3 - <<'PY'
import socket
socks = []
for _ in range(24):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
))
next_port=0
alloc() { printf -v "$1" '%s' "${ports[$next_port]}"; next_port=$((next_port + 1)); }

wait_http() { # url, what
  local i
  for i in $(seq 300); do
    curl -s -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "run.sh: $2 did not come up ($1)" >&2
  return 1
}

# CPU accounting: the process that serves a front (nginx's one worker, not its master), and its user and
# system CPU time so far in clock ticks (fields 14 and 15 of /proc/PID/stat, after the parenthesized name).
worker_of() { # master pid -> its first child (nginx runs one worker under its master)
  local i c
  for i in $(seq 100); do
    c=$(awk -v p="$1" '{ sub(/^.*\) /, ""); if ($2 == p) { split(FILENAME, f, "/"); print f[3]; exit } }' \
      /proc/[0-9]*/stat 2>/dev/null)
    [ -n "$c" ] && { echo "$c"; return 0; }
    sleep 0.05
  done
  echo "run.sh: no worker process under $1" >&2
  return 1
}
cpu_ticks() { # pid -> "user system"
  sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12, $13}'
}
clk_tck=$(getconf CLK_TCK)

# --- the fixed upstream: one nginx worker, fixed small bodies --------------------------------------
alloc up
cat > "$work/upstream.conf" <<NGINX
worker_processes 1;
daemon off;
pid $work/upstream.pid;
error_log $work/upstream-error.log;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$up backlog=4096;
    location = /api/login { default_type application/json; return 200 '{"token":"t0k3n","username":"u"}'; }
    location / { default_type text/plain; return 200 'hello'; }
  }
}
NGINX
taskset -c 1 nginx -c "$work/upstream.conf" -p "$work" 2>>"$work/upstream-error.log" &
pids+=($!)
wait_http "http://127.0.0.1:$up/" "upstream nginx"
up_worker=$(worker_of $!)

declare -A url   # front -> base URL
declare -A pidof # front -> pid (authward fronts, for VmHWM)
declare -A cpupid # front -> the pid whose CPU time serves it (none for direct)
fronts=(direct)
url[direct]="http://127.0.0.1:$up"

# --- authward fronts ---------------------------------------------------------------------------------
geo="$root/data/geoip"
memory_store="store: {kind: memory, max_keys: 200000, max_memory: 32MiB}"
authward_conf() { # name port admin-port extra-yaml... ($store_yaml, when set, replaces the memory store)
  local name="$1" p="$2" a="$3"; shift 3
  {
    cat <<YAML
listen: {http: [127.0.0.1:$p], access_log: false}
admin: {listen: 127.0.0.1:$a}
upstream: {url: http://127.0.0.1:$up}
trusted_proxies: [127.0.0.1/32]
${store_yaml:-$memory_store}
YAML
    printf '%s\n' "$@"
  } > "$work/$name.yaml"
}
full_yaml=(
  "geoip: {city: $geo/GeoIP2-City-Test.mmdb, asn: $geo/GeoLite2-ASN-Test.mmdb, anonymous_ip: $geo/GeoIP2-Anonymous-IP-Test.mmdb}"
  "risk: {mode: enforce, compromised_credentials: {filter: 'builtin:demo'}}"
  "sms: {mode: enforce, blocked_prefixes: {lists: [$root/rules/sms/premium-prefixes.txt]}}"
  "web_acl:"
  "  rules:"
  "    - {name: common, priority: 10, group: common}"
  "    - {name: login, priority: 20, group: login-protection}"
)
full_include="include: [$root/rules/profiles/json-login.yaml, $root/rules/common.yaml, $root/rules/login-protection.yaml]"

start_authward() { # front-name port admin-port
  local name="$1"
  taskset -c 1 "$bin" --log warn serve --no-watch --worker-threads 1 --config "$work/$name.yaml" \
    >"$work/$name.out" 2>"$work/$name.log" &
  pidof[$name]=$!
  cpupid[$name]=$!
  pids+=($!)
  wait_http "http://127.0.0.1:$3/healthz" "$name"
  fronts+=("$name")
  url[$name]="http://127.0.0.1:$2"
}

# Pass-through: no profile, no web ACL, no risk: nothing matches, every request is forwarded.
alloc p; alloc a
authward_conf authward-pass "$p" "$a"
start_authward authward-pass "$p" "$a"

# Full protection on the login route.
alloc p; alloc a
authward_conf authward-full "$p" "$a" "$full_include" "${full_yaml[@]}"
start_authward authward-full "$p" "$a"

# Ablation: full protection with one part taken away (--ablation). The full front's lines, edited; each
# edit must apply, so a change to full_yaml cannot silently make two fronts alike.
ablated=()
ablate() { # name sed-expression [store-yaml]: full protection's config through the edit
  local name="$1" edit="$2" conf
  conf=$(printf '%s\n' "$full_include" "${full_yaml[@]}" | sed -e "$edit")
  if [ "$conf" = "$(printf '%s\n' "$full_include" "${full_yaml[@]}")" ] && [ -z "${3:-}" ]; then
    echo "run.sh: ablation $name changes nothing" >&2; exit 1
  fi
  alloc p; alloc a
  store_yaml="${3:-}" authward_conf "$name" "$p" "$a" "$conf"
  start_authward "$name" "$p" "$a"
  ablated+=("$name")
}
if [ "$ablation" = 1 ]; then
  ablate authward-full-no-waf '/^web_acl:/,$d'
  ablate authward-full-no-risk 's/^risk: {mode: enforce/risk: {mode: off/'
  ablate authward-full-no-sms 's/^sms: {mode: enforce/sms: {mode: off/'
  ablate authward-full-profile-only '/^web_acl:/,$d; s/^risk: {mode: enforce/risk: {mode: off/; s/^sms: {mode: enforce/sms: {mode: off/'
  ablate authward-full-uncapped '' "store: {kind: memory, max_keys: 100000000, max_memory: 4GiB}"
fi

# Full protection with the Redis store (what replicas share), Redis on the proxy's core like the upstream
# (its CPU time is not in the front's "cpu" column).
if command -v redis-server >/dev/null; then
  alloc rp
  taskset -c 1 redis-server --port "$rp" --bind 127.0.0.1 --save "" --appendonly no \
    >"$work/redis.log" 2>&1 &
  pids+=($!)
  alloc p; alloc a
  store_yaml="store: {kind: redis, url: 'redis://127.0.0.1:$rp', timeout: 1s}" \
    authward_conf authward-redis "$p" "$a" "$full_include" "${full_yaml[@]}"
  start_authward authward-redis "$p" "$a"
else
  echo "skipping authward-redis: redis-server not installed" >&2
fi

# --- nginx proxy_pass with upstream keepalive --------------------------------------------------------
nginx_front() { # name port extra-http extra-location
  cat > "$work/$1.conf" <<NGINX
$5
worker_processes 1;
daemon off;
pid $work/$1.pid;
error_log $work/$1-error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 1000000;
  upstream up { server 127.0.0.1:$up; keepalive 256; keepalive_requests 1000000; }
  $3
  server {
    listen 127.0.0.1:$2 backlog=4096;
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      $4
    }
  }
}
NGINX
  taskset -c 1 nginx -c "$work/$1.conf" -p "$work" 2>>"$work/$1-error.log" &
  pids+=($!)
  wait_http "http://127.0.0.1:$2/" "$1"
  cpupid[$1]=$(worker_of $!)
  fronts+=("$1")
  url[$1]="http://127.0.0.1:$2"
}
alloc p
nginx_front nginx "$p" "" "" ""

# --- HAProxy -----------------------------------------------------------------------------------------
if command -v haproxy >/dev/null; then
  alloc p
  cat > "$work/haproxy.cfg" <<HAP
global
  nbthread 1
  maxconn 8192
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend fe
  bind 127.0.0.1:$p
  default_backend be
backend be
  server up 127.0.0.1:$up
HAP
  taskset -c 1 haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
  pids+=($!)
  cpupid[haproxy]=$!
  wait_http "http://127.0.0.1:$p/" haproxy
  fronts+=(haproxy)
  url[haproxy]="http://127.0.0.1:$p"
else
  echo "skipping haproxy: not installed" >&2
fi

# --- nginx + ModSecurity v3 + OWASP CRS, paranoia level 1 -------------------------------------------
crs_setup=/etc/modsecurity/crs/crs-setup.conf
crs_rules=/usr/share/modsecurity-crs/rules
modsec_base=/etc/nginx/modsecurity.conf   # libnginx-mod-http-modsecurity's recommended base config
if [ -f "$modsec_so" ] && [ -f "$crs_setup" ] && [ -d "$crs_rules" ] && [ -f "$modsec_base" ]; then
  # The recommended base with the engine on (it ships DetectionOnly), then the CRS as Debian loads it
  # (/usr/share/modsecurity-crs/owasp-crs.load), at paranoia level 1 (CRS 3.3's default, set explicitly).
  sed -e 's/^SecRuleEngine .*/SecRuleEngine On/' \
      -e "s|^SecAuditLog .*|SecAuditLog $work/modsec-audit.log|" \
      -e "s|^SecTmpDir .*|SecTmpDir $work|" -e "s|^SecDataDir .*|SecDataDir $work|" \
      -e "s|^SecUnicodeMapFile unicode.mapping|SecUnicodeMapFile /etc/nginx/unicode.mapping|" \
      "$modsec_base" > "$work/modsec.conf"
  {
    echo "Include $crs_setup"
    echo 'SecAction "id:900000,phase:1,nolog,pass,t:none,setvar:tx.paranoia_level=1"'
    # libmodsecurity 3 has no IncludeOptional.
    f=/etc/modsecurity/crs/REQUEST-900-EXCLUSION-RULES-BEFORE-CRS.conf; [ -f "$f" ] && echo "Include $f"
    echo "Include $crs_rules/*.conf"
    f=/etc/modsecurity/crs/RESPONSE-999-EXCLUSION-RULES-AFTER-CRS.conf; [ -f "$f" ] && echo "Include $f"
  } >> "$work/modsec.conf"
  alloc p
  nginx_front nginx-modsec "$p" "modsecurity on; modsecurity_rules_file $work/modsec.conf;" "" \
    "load_module $modsec_so;"
  # Checked active: an SQL injection must get 403 before anything is measured.
  code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: login.bench.test' \
    "http://127.0.0.1:$p/?id=1%27%20OR%20%271%27%3D%271")
  if [ "$code" != 403 ]; then
    echo "run.sh: ModSecurity is not blocking (SQL injection answered $code)" >&2
    exit 1
  fi
  echo "ModSecurity + CRS active: SQL injection answered 403" >&2
else
  echo "skipping nginx-modsec: libnginx-mod-http-modsecurity or modsecurity-crs not installed" >&2
fi

# authward full protection must block the same probe (and pass-through must not).
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: login.bench.test' -H 'Content-Type: application/json' \
  -d '{"username":"admin'"'"' OR 1=1 --","password":"x"}' "${url[authward-full]}/api/login")
[ "$code" = 403 ] || { echo "run.sh: authward full protection answered $code to an SQL injection" >&2; exit 1; }

# --- scaling fronts: 10, 100, 1000 extra web-ACL rules on top of full protection ---------------------
gen_rules() { # n file: a group of n rules of mixed kinds, none matching the load
  local n="$1" f="$2" i
  {
    echo "web_acl:"
    echo "  groups:"
    echo "    - name: generated"
    echo "      rules:"
    for i in $(seq 1 "$n"); do
      echo "        - name: gen-$i"
      echo "          priority: $i"
      echo "          action: block"
      echo "          statement:"
      case $((i % 5)) in
        0) echo "            byte_match: {field: username, position: contains, values: [\"evil-$i-x\"], transforms: [lowercase]}" ;;
        1) echo "            regex: {field: {single_header: user-agent}, pattern: 'scanner-$i/[0-9]+'}" ;;
        2) echo "            size_constraint: {field: {body: {oversize: match}}, comparison: gt, size: $((8192 + i))}" ;;
        3) echo "            ip_set: {cidrs: [\"192.0.2.$((i % 256))/32\", \"2001:db8::$i/128\"]}" ;;
        4) echo "            byte_match: {field: uri_path, position: starts_with, values: [\"/admin-$i\"]}" ;;
      esac
    done
  } > "$f"
}
scale_rules=(10 100 1000)
scale_conns=(16 64 256)
if [ "$scaling" = 1 ]; then
  # The connection curve runs on a process of its own, so that authward-full's peak memory is the main
  # workload's (64 connections) and this one's shows what 256 connections add.
  alloc p; alloc a
  authward_conf authward-conns "$p" "$a" "$full_include" "${full_yaml[@]}"
  start_authward authward-conns "$p" "$a"
  for n in "${scale_rules[@]}"; do
    gen_rules "$n" "$work/rules-$n.yaml"
    "$bin" check "$work/rules-$n.yaml" >&2
    alloc p; alloc a
    authward_conf "authward-rules-$n" "$p" "$a" \
      "include: [$root/rules/profiles/json-login.yaml, $root/rules/common.yaml, $root/rules/login-protection.yaml, $work/rules-$n.yaml]" \
      "${full_yaml[@]}" "    - {name: generated, priority: 30, group: generated}"
    start_authward "authward-rules-$n" "$p" "$a"
  done
fi

# --- load ----------------------------------------------------------------------------------------------
cat > "$work/get.lua" <<'LUA'
wrk.headers["Host"] = "login.bench.test"
wrk.headers["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0"
wrk.headers["Accept"] = "text/html"
LUA
cat > "$work/signin.lua" <<'LUA'
math.randomseed(os.time() + math.floor(os.clock() * 1e6))
local n = math.random(0, 2^31)
local head = {["Host"] = "login.bench.test", ["Content-Type"] = "application/json", ["Accept"] = "application/json",
  ["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0"}
request = function()
  n = n + 1
  -- wrk's LuaJIT is Lua 5.1: no integer division operator.
  head["X-Forwarded-For"] = string.format("%d.%d.%d.%d", 11 + math.floor(n / 16777216) % 180,
    math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256)
  local body = string.format('{"username":"user%d@example.com","password":"correct-horse-battery-%d"}', n, n % 997)
  return wrk.format("POST", "/api/login", head, body)
end
LUA

# The paced variants: each connection pauses before its next request (wrk's delay(), not counted in the
# latency), a random whole number of milliseconds from 0 to 6, 3.2 on average (wrk truncates to ms).
for w in get signin; do
  { cat "$work/$w.lua"; echo 'function delay() return math.floor(math.random() * 6.4 + 0.5) end'; } > "$work/$w-paced.lua"
done

to_ms() { # wrk latency (e.g. 312.00us, 1.20ms, 2.00s) -> milliseconds
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'
}
csv="$out/results.csv"
echo "round,front,workload,connections,rps,p50_ms,p99_ms,non2xx,errors,load1,requests,user_us,sys_us,upstream_us" > "$csv"
measure() { # round front workload connections
  local r="$1" f="$2" w="$3" c="$4" script res rps p50 p99 bad err load n cpu0 cpu1 up0 up1 user sys upcpu
  script="$work/$w.lua" path=/
  [[ "$w" = signin* ]] && path=/api/login
  taskset -c 0 wrk -t1 -c"$c" -d"${warmup}s" -s "$script" "${url[$f]}$path" >/dev/null 2>&1
  load=$(cut -d' ' -f1 /proc/loadavg)
  cpu0="0 0"; [ -n "${cpupid[$f]:-}" ] && cpu0=$(cpu_ticks "${cpupid[$f]}")
  up0=$(cpu_ticks "$up_worker")
  res=$(taskset -c 0 wrk -t1 -c"$c" -d"${duration}s" --latency -s "$script" "${url[$f]}$path" 2>&1)
  cpu1="0 0"; [ -n "${cpupid[$f]:-}" ] && cpu1=$(cpu_ticks "${cpupid[$f]}")
  up1=$(cpu_ticks "$up_worker")
  if grep -q 'lua:' <<<"$res"; then echo "run.sh: wrk script error: $res" >&2; exit 1; fi
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$res")
  p50=$(to_ms "$(awk '/^ +50%/ {print $2}' <<<"$res")")
  p99=$(to_ms "$(awk '/^ +99%/ {print $2}' <<<"$res")")
  bad=$(awk '/Non-2xx/ {print $NF}' <<<"$res"); bad=${bad:-0}
  err=$(awk '/Socket errors/ {gsub(",", ""); print $4 + $6 + $8 + $10}' <<<"$res"); err=${err:-0}
  # CPU time per request (µs) of the front's process, split user/system, and of the upstream's worker:
  # what a request costs on the core whatever else the machine did meanwhile (for direct: 0 and 0).
  n=$(awk '/requests in/ {print $1}' <<<"$res"); n=${n:-0}
  read -r user sys upcpu < <(awk -v a="$cpu0 $up0" -v b="$cpu1 $up1" -v n="$n" -v t="$clk_tck" 'BEGIN {
    split(a, x, " "); split(b, y, " "); k = n > 0 ? 1e6 / t / n : 0
    printf "%.2f %.2f %.2f\n", (y[1] - x[1]) * k, (y[2] - x[2]) * k, (y[3] + y[4] - x[3] - x[4]) * k }')
  echo "$r,$f,$w,$c,$rps,$p50,$p99,$bad,$err,$load,$n,$user,$sys,$upcpu" >> "$csv"
  printf 'round %s  %-20s %-12s c=%-4s %10s req/s  p50 %7s ms  p99 %7s ms  cpu %s+%s us  non-2xx %s  errors %s  load %s\n' \
    "$r" "$f" "$w" "$c" "$rps" "$p50" "$p99" "$user" "$sys" "$bad" "$err" "$load" >&2
}

main_fronts=(direct authward-pass authward-full nginx)
[ -n "${url[authward-redis]:-}" ] && main_fronts+=(authward-redis)
[ -n "${url[haproxy]:-}" ] && main_fronts+=(haproxy)
[ -n "${url[nginx-modsec]:-}" ] && main_fronts+=(nginx-modsec)
if [ -n "$only" ]; then
  picked=()
  for f in "${main_fronts[@]}"; do [[ " $only " == *" $f "* ]] && picked+=("$f"); done
  main_fronts=("${picked[@]}")
fi
echo "fronts: ${main_fronts[*]}; $rounds round(s) of ${duration}s after ${warmup}s warm-up" >&2
for r in $(seq 1 "$rounds"); do
  for w in get signin; do
    for f in "${main_fronts[@]}"; do measure "$r" "$f" "$w" 64; done
    for f in "${main_fronts[@]}"; do measure "$r" "$f" "$w-paced" 16; done
  done
  for f in "${ablated[@]}"; do measure "$r" "$f" signin 64; done
  if [ "$scaling" = 1 ]; then
    for c in "${scale_conns[@]}"; do measure "$r" authward-conns signin "$c"; done
    for n in "${scale_rules[@]}"; do measure "$r" "authward-rules-$n" signin 64; done
  fi
done

# Every measurement must have served requests (a front that died or answered nothing fails the run).
awk -F, 'NR > 1 && !($5 > 0) { print "run.sh: " $2 " served no " $3 " requests" > "/dev/stderr"; bad = 1 }
  END { exit bad }' "$csv"

# Peak resident memory of each authward front over the whole run, and what is resident at the end: private
# memory (heap, store, connections) and file-backed pages (the binary's code and data, shared and
# reclaimable).
rss_csv="$out/rss.csv"
echo "front,vmhwm_kib,vmrss_kib,rss_anon_kib,rss_file_kib" > "$rss_csv"
for f in "${!pidof[@]}"; do
  echo "$f,$(awk '/^(VmHWM|VmRSS|RssAnon|RssFile):/ {v[$1] = $2}
    END {print v["VmHWM:"] "," v["VmRSS:"] "," v["RssAnon:"] "," v["RssFile:"]}' "/proc/${pidof[$f]}/status")" >> "$rss_csv"
done

# Memory store resident size with 10^4, 10^5, 10^6 keys, each in a fresh process, under its cap.
store_csv="$out/store.csv"
if [ "$scaling" = 1 ]; then
  "$root/target/$profile/store-rss" --header > "$store_csv"
  for k in 10000 100000 1000000; do
    "$root/target/$profile/store-rss" "$k" 1000000 268435456 >> "$store_csv"
  done
  # And the full-protection front's own cap (32 MiB), a million keys written.
  "$root/target/$profile/store-rss" 1000000 200000 33554432 >> "$store_csv"
fi

{
  echo "machine: $(nproc) CPUs, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo); date $(date -u +%F)"
  echo "command: bash benches/load/run.sh --duration $duration --warmup $warmup --rounds $rounds$([ "$scaling" = 1 ] || echo ' --no-scaling')"
  echo "versions: $(nginx -v 2>&1 | sed 's/^nginx version: //'); $(command -v haproxy >/dev/null && haproxy -v | head -1 | awk '{print "HAProxy " $3}');" \
    "$(dpkg-query -W -f='${Package} ${Version}; ' libnginx-mod-http-modsecurity libmodsecurity3 modsecurity-crs wrk 2>/dev/null)" \
    "$("$bin" --version 2>/dev/null || echo authward)"
} > "$out/machine.txt"

/usr/bin/python3 "$root/benches/load/summarize.py" "$out" || python3 "$root/benches/load/summarize.py" "$out"
cat "$out/summary.md"
