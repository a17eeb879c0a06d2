#!/usr/bin/env python3
"""Reads run.sh's results (JSON lines; only the last run, i.e. the records after the last
block of '#' header lines) and prints the tables for BENCHMARKS.md.

    summarize.py [--soak] results.jsonl
"""
import json
import statistics
import sys

import os
import re

args = [a for a in sys.argv[1:] if not a.startswith("--")]
soak = "--soak" in sys.argv
logs = next((a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--logs=")), None)
lines = open(args[0]).read().splitlines()
start = 0
for i, l in enumerate(lines):
    if l.startswith("#") and (i == 0 or not lines[i - 1].startswith("#")):
        start = i
header = [l for l in lines[start:] if l.startswith("#")]
recs = [json.loads(l) for l in lines[start:] if l.startswith("{")]
print("\n".join(header))

LABEL = {
    "halo-fast": "halo, fast profile (keepalive 10ms, warntime 20ms, deadtime 30ms)",
    "keepalived-10ms": "keepalived 2.2.7, VRRPv3 advert_int 0.01",
    "heartbeat-fast": "Heartbeat 3.0.6, keepalive 50ms, warntime 100ms, deadtime 200ms",
    "heartbeat-20ms": "Heartbeat 3.0.6, keepalive 20ms, warntime 60ms, deadtime 100ms",
    "halo-seed": "halo, seeds' timing (keepalive 1, deadtime 10)",
    "keepalived-1s": "keepalived 2.2.7, VRRPv3 advert_int 1",
    "heartbeat-seed": "Heartbeat 3.0.6, seeds' timing (keepalive 1, deadtime 10)",
}


def fmt(v):
    if v is None:
        return "–"
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}"


def stats(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None, None, None, 0
    return statistics.median(xs), min(xs), max(xs), len(xs)


# What happens on n2 after the cut, from its stamped log (run.sh keeps the logs for this):
# detection (cut -> "is dead" / MASTER), then address added, then the first answer.
MARK = {
    "halo": (r"node n1: is dead", r"adding \S+ on eth0"),
    "heartbeat": (r"node n1: is dead", r"eval ifconfig eth0"),
    "keepalived": (r"Entering MASTER STATE", r"setting VIPs"),
}


def stamped(path):
    out = []
    for f in (path + ".old", path):
        if os.path.exists(f):
            for line in open(f, errors="replace"):
                t, _, rest = line.partition(" ")
                try:
                    out.append((float(t), rest))
                except ValueError:
                    pass
    return out


# Lines of a daemon's log that mean: a peer declared dead / n2 took the VIP / a late heartbeat.
DEATH = r"is dead|Entering (MASTER|BACKUP|FAULT) STATE"
TAKE_N2 = r"starting group|Taking over resource group|Entering MASTER STATE"  # one line per takeover
LATE = r"Late heartbeat"


def count(path, t0, t1, pat):
    return sum(1 for t, l in stamped(path) if t0 <= t <= t1 and re.search(pat, l))


if soak:
    print("| load | system | seconds | deaths declared / VRRP state changes (log lines, both nodes) | VIP taken by n2 (false failovers) | late heartbeats | probes failed | answered by n2 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in [r for r in recs if "soak" in r]:
        p = r["probe"]
        if logs and "t0" in r:
            d = os.path.join(logs, r["system"])
            dead = sum(count(os.path.join(d, n, "out"), r["t0"], r["t1"], DEATH) for n in ("n1", "n2"))
            take = count(os.path.join(d, "n2", "out"), r["t0"], r["t1"], TAKE_N2)
            late = sum(count(os.path.join(d, n, "out"), r["t0"], r["t1"], LATE) for n in ("n1", "n2"))
        else:
            dead, take, late = r["events"], "?", r["late"]
        print(f"| {r['soak']} | {LABEL.get(r['system'], r['system'])} | {r['seconds']} | {dead} | {take} | {late} | "
              f"{p['idle_failed']} / {p['idle_probes']} | {p['idle_other']} |")
    sys.exit(0)

systems = []
for r in recs:
    if "cut" in r and r["system"] not in systems:
        systems.append(r["system"])
print()
print("| system | n | outage median ms | min | max | detection median (max) ms | takeover median (max) ms | idle s | idle false failovers | idle failed probes | late hb |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for s in systems:
    rs = [r for r in recs if r.get("system") == s and "cut" in r]
    out = [r["cut"].get("outage_ms") for r in rs]
    med, lo, hi, n = stats(out)
    miss = sum(1 for o in out if o is None)
    det = [r.get("detect_ms") for r in rs]
    dm, _, dx, _ = stats(det)
    tk = [r["cut"]["outage_ms"] - r["detect_ms"] for r in rs
          if r.get("detect_ms") is not None and r["cut"].get("outage_ms") is not None]
    tm, _, tx, _ = stats(tk)
    idle_s = sum(r["idle"]["idle_s"] for r in rs)
    ev = sum(r["idle_events"] for r in rs)
    other = sum(r["idle"]["idle_other"] for r in rs)
    failed = sum(r["idle"]["idle_failed"] for r in rs)
    probes = sum(r["idle"]["idle_probes"] for r in rs)
    late = sum(r["idle_late"] for r in rs)
    print(f"| {LABEL.get(s, s)} | {n}{f' (+{miss} no answer)' if miss else ''} | **{fmt(med)}** | {fmt(lo)} | {fmt(hi)} | "
          f"{fmt(dm)} ({fmt(dx)}) | {fmt(tm)} ({fmt(tx)}) | {idle_s:.0f} | {ev}{f' (+{other} answers by n2)' if other else ''} | "
          f"{failed} / {probes} | {late} |")

if logs:
    print()
    print("| system | n | cut → declared dead / MASTER (median, max) | declared dead → address added (median, max) | address added → first answer (median, max) | declared dead → first answer (median, max) |")
    print("|---|---|---|---|---|---|")
    for s in systems:
        kind = "halo" if s.startswith("halo") else "heartbeat" if s.startswith("heartbeat") else "keepalived"
        lines = stamped(os.path.join(logs, s, "n2", "out"))
        det, add, ans, tot = [], [], [], []
        for r in [r for r in recs if r.get("system") == s and "cut" in r]:
            t0, o = r["cut"]["t_cut"], r["cut"].get("outage_ms")
            d = next((t for t, l in lines if t >= t0 and re.search(MARK[kind][0], l)), None)
            a_ = next((t for t, l in lines if d is not None and t >= d and re.search(MARK[kind][1], l)), None)
            if d is None or a_ is None or o is None:
                continue
            det.append(d - t0); add.append(a_ - d); ans.append(t0 + o - a_); tot.append(t0 + o - d)
        cell = lambda xs: f"{fmt(statistics.median(xs))} ({fmt(max(xs))})" if xs else "–"
        print(f"| {s} | {len(det)} | {cell(det)} | {cell(add)} | {cell(ans)} | {cell(tot)} |")
    print("(log lines are stamped when the daemon writes them; probes leave every 5 ms, so the")
    print(" last column includes up to 5 ms of probe spacing and ~1 ms of round trip)")

print()
print("per trial (outage ms):")
for s in systems:
    rs = [r for r in recs if r.get("system") == s and "cut" in r]
    print(f"  {s}: " + " ".join(fmt(r["cut"].get("outage_ms")) for r in rs))
