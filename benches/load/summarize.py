"""Medians and ratios of the load harness's results (benches/load/run.sh), as Markdown, CSV and a plot.

    python3 benches/load/summarize.py DIR     # reads DIR/results.csv, rss.csv, store.csv, machine.txt

Ratios are computed within each round (front's requests/s over direct's, over nginx's, in the same
round and workload) and their median is reported, so slow drifts of a shared machine cancel out.
"""

import csv
import os
import statistics
import sys
from collections import defaultdict

d = sys.argv[1]
rows = list(csv.DictReader(open(os.path.join(d, "results.csv"))))
by = defaultdict(dict)  # (front, workload, conns) -> round -> row
for r in rows:
    by[(r["front"], r["workload"], int(r["connections"]))][r["round"]] = r


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def ratio(front, wl, base, conns=64):
    out = []
    for rnd, r in by.get((front, wl, conns), {}).items():
        b = by.get((base, wl, 64), {}).get(rnd)
        if b and float(b["rps"]) > 0:
            out.append(float(r["rps"]) / float(b["rps"]))
    return med(out)


def stat(front, wl, key, conns=64):
    return med([float(r[key]) for r in by.get((front, wl, conns), {}).values()])


def added_p99(front, wl, conns=64):
    out = []
    for rnd, r in by.get((front, wl, conns), {}).items():
        b = by.get(("direct", wl, conns), {}).get(rnd)
        if b:
            out.append(float(r["p99_ms"]) - float(b["p99_ms"]))
    return med(out)


def total(r):
    """A measurement's front CPU a request, user + system (µs)."""
    return float(r["user_us"]) + float(r["sys_us"])


def fmt(x, spec):
    return "" if x is None else format(x, spec).replace(",", " ")


names = {
    "direct": "direct to upstream (nginx, fixed bodies)",
    "authward-pass": "authward pass-through",
    "authward-full": "authward full protection",
    "authward-redis": "authward full protection, Redis store",
    "nginx": "nginx proxy_pass + keepalive",
    "haproxy": "HAProxy",
    "nginx-modsec": "nginx + ModSecurity v3 + CRS (PL1)",
}
order = [f for f in names if any(k[0] == f for k in by)]
rounds = sorted({r["round"] for r in rows}, key=int)
loads = [float(r["load1"]) for r in rows]
md = []
md.append(f"Rounds: {len(rounds)}; load average (1 min) during the measurements: "
          f"{min(loads):.2f}–{max(loads):.2f}.\n")
md.append("| front | workload | req/s | p50 ms | p99 ms | p99 added over direct, ms | × direct | × nginx | non-2xx + errors |")
md.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
summary_rows = []
for wl in ("get", "signin"):
    for f in order:
        if (f, wl, 64) not in by:
            continue
        rps, p50, p99 = stat(f, wl, "rps"), stat(f, wl, "p50_ms"), stat(f, wl, "p99_ms")
        rd, rn, add = ratio(f, wl, "direct"), ratio(f, wl, "nginx"), added_p99(f, wl)
        bad = sum(int(r["non2xx"]) + int(r["errors"]) for r in by[(f, wl, 64)].values())
        label = "GET /" if wl == "get" else "POST /api/login"
        md.append(f"| {names[f]} | {label} | {fmt(rps, ',.0f')} | {fmt(p50, '.2f')} | {fmt(p99, '.2f')} | "
                  f"{'' if f == 'direct' else fmt(add, '+.2f')} | {fmt(rd, '.2f')} | {fmt(rn, '.2f')} | {bad} |")
        summary_rows.append([f, wl, rps, p50, p99, add, rd, rn, bad])

if any(r.get("user_us") for r in rows):
    md.append("\nCPU time per request, 64 connections (µs of the front's own process, user + system, from /proc; the"
              " upstream's worker apart): what a request costs on the core, whatever else the shared machine did."
              " × nginx is nginx's front CPU over this front's, per round (above 1: cheaper than nginx):\n")
    md.append("| front | workload | user µs | system µs | front µs | upstream µs | front CPU × nginx |")
    md.append("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for wl in ("get", "signin"):
        for f in order:
            runs = by.get((f, wl, 64), {})
            if not runs or not all(r.get("user_us") for r in runs.values()):
                continue
            cheaper = med([total(by[("nginx", wl, 64)][rnd]) / total(r) for rnd, r in runs.items()
                           if f != "direct" and rnd in by.get(("nginx", wl, 64), {}) and total(r) > 0])
            label = "GET /" if wl == "get" else "POST /api/login"
            md.append(f"| {names[f]} | {label} | "
                      f"{'' if f == 'direct' else fmt(stat(f, wl, 'user_us'), '.1f')} | "
                      f"{'' if f == 'direct' else fmt(stat(f, wl, 'sys_us'), '.1f')} | "
                      f"{'' if f == 'direct' else fmt(med([total(r) for r in runs.values()]), '.1f')} | "
                      f"{fmt(stat(f, wl, 'upstream_us'), '.1f')} | {fmt(cheaper, '.2f')} |")

rss_path = os.path.join(d, "rss.csv")
if os.path.exists(rss_path):
    md.append("\nPeak resident memory (VmHWM) over the whole run (authward-conns served the connection curve, up to 256),"
              " and at the end: private (heap, store, connections) and file-backed (the binary's pages):\n")
    md.append("| authward front | VmHWM | VmRSS at the end | private | file-backed |")
    md.append("| --- | ---: | ---: | ---: | ---: |")
    mib = lambda r, k: f"{int(r[k]) / 1024:.1f} MiB" if r.get(k) else ""
    for r in sorted(csv.DictReader(open(rss_path)), key=lambda r: r["front"]):
        md.append(f"| {r['front']} | {mib(r, 'vmhwm_kib')} | {mib(r, 'vmrss_kib')} | {mib(r, 'rss_anon_kib')} | "
                  f"{mib(r, 'rss_file_kib')} |")

conns = sorted({k[2] for k in by if k[0] == "authward-conns" and k[1] == "signin"})
rule_fronts = sorted((k[0] for k in by if k[0].startswith("authward-rules-")), key=lambda f: int(f.rsplit("-", 1)[1]))
if len(conns) > 1:
    md.append("\nauthward full protection, sign-ins, by connections:\n")
    md.append("| connections | req/s | p50 ms | p99 ms | × nginx (64 conns) |")
    md.append("| ---: | ---: | ---: | ---: | ---: |")
    for c in conns:
        md.append(f"| {c} | {fmt(stat('authward-conns', 'signin', 'rps', c), ',.0f')} | "
                  f"{fmt(stat('authward-conns', 'signin', 'p50_ms', c), '.2f')} | "
                  f"{fmt(stat('authward-conns', 'signin', 'p99_ms', c), '.2f')} | "
                  f"{fmt(ratio('authward-conns', 'signin', 'nginx', c), '.2f')} |")
if rule_fronts:
    md.append("\nauthward full protection plus N generated web-ACL rules (none matching), sign-ins, 64 connections:\n")
    md.append("| extra rules | req/s | p50 ms | p99 ms | × full protection | × nginx |")
    md.append("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for f in rule_fronts:
        md.append(f"| {f.rsplit('-', 1)[1]} | {fmt(stat(f, 'signin', 'rps'), ',.0f')} | {fmt(stat(f, 'signin', 'p50_ms'), '.2f')} | "
                  f"{fmt(stat(f, 'signin', 'p99_ms'), '.2f')} | {fmt(ratio(f, 'signin', 'authward-full'), '.2f')} | "
                  f"{fmt(ratio(f, 'signin', 'nginx'), '.2f')} |")

ablations = {
    "authward-full-no-waf": "the web ACL (both rule groups)",
    "authward-full-no-risk": "the risk engine",
    "authward-full-no-sms": "the SMS guard",
    "authward-full-profile-only": "all three (route profile and event history remain)",
    "authward-full-uncapped": "the store's cap (lifted: nothing evicted)",
}
ablated = [f for f in ablations if (f, "signin", 64) in by]
if ablated and ("authward-full", "signin", 64) in by:
    full_runs = by[("authward-full", "signin", 64)]
    md.append("\nWhat each part of full protection costs a sign-in (--ablation): full protection with one part"
              " taken away, sign-ins at 64 connections. \"Saved\" is the front's CPU a request, full protection's"
              " minus this front's, per round (median):\n")
    md.append("| full protection without | req/s | front µs (user + system) | saved µs | × full protection | × nginx |")
    md.append("| --- | ---: | ---: | ---: | ---: | ---: |")
    md.append(f"| (nothing: full protection) | {fmt(stat('authward-full', 'signin', 'rps'), ',.0f')} | "
              f"{fmt(med([total(r) for r in full_runs.values()]), '.1f')} | | 1.00 | "
              f"{fmt(ratio('authward-full', 'signin', 'nginx'), '.2f')} |")
    for f in ablated:
        runs = by[(f, "signin", 64)]
        saved = med([total(full_runs[rnd]) - total(r) for rnd, r in runs.items() if rnd in full_runs])
        md.append(f"| {ablations[f]} | {fmt(stat(f, 'signin', 'rps'), ',.0f')} | "
                  f"{fmt(med([total(r) for r in runs.values()]), '.1f')} | {fmt(saved, '+.1f')} | "
                  f"{fmt(ratio(f, 'signin', 'authward-full'), '.2f')} | {fmt(ratio(f, 'signin', 'nginx'), '.2f')} |")

store = []
paced = [wl for wl in ("get-paced", "signin-paced") if any(k[1] == wl for k in by)]
if paced:
    md.append("\nLatency at a paced rate (16 connections, each pausing a random 0-6 ms, 3.2 ms on average, between"
              " requests: about 4 500 req/s, the same for every front; none but ModSecurity is near saturation, so"
              " the added latency is the hop's own rather than queueing):\n")
    md.append("| front | workload | req/s | p50 ms | p99 ms | p50 added over direct, ms | p99 added over direct, ms |")
    md.append("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for wl in paced:
        for f in order:
            if (f, wl, 16) not in by:
                continue
            add50 = med([float(r["p50_ms"]) - float(by[("direct", wl, 16)][rnd]["p50_ms"])
                         for rnd, r in by[(f, wl, 16)].items() if rnd in by.get(("direct", wl, 16), {})])
            label = "GET /" if wl == "get-paced" else "POST /api/login"
            md.append(f"| {names[f]} | {label} | {fmt(stat(f, wl, 'rps', 16), ',.0f')} | "
                      f"{fmt(stat(f, wl, 'p50_ms', 16), '.3f')} | {fmt(stat(f, wl, 'p99_ms', 16), '.3f')} | "
                      f"{'' if f == 'direct' else fmt(add50, '+.3f')} | "
                      f"{'' if f == 'direct' else fmt(added_p99(f, wl, 16), '+.3f')} |")
            summary_rows.append([f, wl, stat(f, wl, "rps", 16), stat(f, wl, "p50_ms", 16), stat(f, wl, "p99_ms", 16),
                                 added_p99(f, wl, 16), None, None, None])

with open(os.path.join(d, "summary.csv"), "w", newline="") as fh:
    w = csv.writer(fh)
    w.writerow(["front", "workload", "rps", "p50_ms", "p99_ms", "p99_added_ms", "ratio_direct", "ratio_nginx", "non2xx_errors"])
    w.writerows(summary_rows)

store_path = os.path.join(d, "store.csv")
if os.path.exists(store_path):
    store = list(csv.DictReader(open(store_path)))
    md.append("\nMemory store filled with N keys (fresh process each; caps max_keys and max_memory):\n")
    md.append("| keys written | keys held | store's own count | RSS growth | cap | within cap |")
    md.append("| ---: | ---: | ---: | ---: | ---: | --- |")
    for r in store:
        grow = (int(r["rss_after_kib"]) - int(r["rss_before_kib"])) * 1024
        cap = int(r["max_bytes"])
        n = lambda x: f"{int(x):,}".replace(",", " ")
        md.append(f"| {n(r['keys_requested'])} | {n(r['keys_held'])} | {int(r['store_bytes']) / 2**20:.1f} MiB | "
                  f"{grow / 2**20:.1f} MiB | {n(r['max_keys'])} keys; {cap / 2**20:.0f} MiB | "
                  f"{'yes' if grow <= cap and int(r['keys_held']) <= int(r['max_keys']) else 'NO'} |")

machine = os.path.join(d, "machine.txt")
head = open(machine).read().strip() + "\n\n" if os.path.exists(machine) else ""
open(os.path.join(d, "summary.md"), "w").write(head + "\n".join(md) + "\n")

try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    print("matplotlib not available: no plot", file=sys.stderr)
    sys.exit(0)
panels = [p for p in ("conns", "rules", "store") if (p == "conns" and len(conns) > 1) or (p == "rules" and rule_fronts) or (p == "store" and store)]
if not panels:
    sys.exit(0)
fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
axes = axes if len(panels) > 1 else [axes]
for ax, p in zip(axes, panels):
    if p == "conns":
        ax.plot(conns, [stat("authward-conns", "signin", "rps", c) for c in conns], "o-")
        ax.set_xscale("log"); ax.set_xlabel("connections"); ax.set_ylabel("sign-ins/s")
        ax.set_title("full protection: connections")
    elif p == "rules":
        xs = [int(f.rsplit("-", 1)[1]) for f in rule_fronts]
        ax.plot(xs, [stat(f, "signin", "rps") for f in rule_fronts], "o-")
        ax.set_xscale("log"); ax.set_xlabel("extra web-ACL rules"); ax.set_ylabel("sign-ins/s")
        ax.set_title("full protection: rule count")
    else:
        # One curve per cap: the keys-written series, and the harness front's own cap apart.
        for cap in sorted({int(r["max_bytes"]) for r in store}, reverse=True):
            rows = [r for r in store if int(r["max_bytes"]) == cap]
            xs = [int(r["keys_requested"]) for r in rows]
            tag = f"cap {cap / 2**20:.0f} MiB"
            ax.plot(xs, [(int(r["rss_after_kib"]) - int(r["rss_before_kib"])) / 1024 for r in rows], "o-",
                    label=f"RSS growth, {tag}")
            ax.plot(xs, [int(r["store_bytes"]) / 2**20 for r in rows], "s--", label=f"store's count, {tag}")
        ax.set_xscale("log"); ax.set_xlabel("keys"); ax.set_ylabel("MiB"); ax.legend()
        ax.set_title("memory store size")
    ax.set_ylim(bottom=0)
fig.tight_layout()
fig.savefig(os.path.join(d, "scaling.png"), dpi=100)
