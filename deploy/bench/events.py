#!/usr/bin/env python3
"""Summarise deploy/bench/run.sh events: for each run (events-on-N,
events-off-N), calls placed, CPU per call of cleanline and of Redis, events
produced and dropped and webhook deliveries (from cleanline's /metrics),
then the medians of each mode and on against off.

usage: events.py OUT NAME...
"""
import json
import os
import statistics
import sys

out, names = sys.argv[1], sys.argv[2:]


def metrics(name):
    m = {}
    path = os.path.join(out, name, "metrics.txt")
    if os.path.exists(path):
        with open(path) as f:
            for l in f:
                if l.startswith("cleanline_"):
                    key, val = l.rsplit(" ", 1)
                    m[key] = float(val)
    return m


def total(m, prefix, **labels):
    return sum(v for k, v in m.items()
               if k.startswith(prefix) and all('%s="%s"' % kv in k for kv in labels.items()))


rows = {"on": [], "off": []}
print("%-13s %7s %8s %9s %8s %8s %10s %9s  %s" % (
    "run", "placed", "cl µs", "redis µs", "events", "dropped", "delivered", "hook drop", "load before / after"))
for n in names:
    with open(os.path.join(out, n + ".json")) as f:
        placed = sum(s["attempted"] for s in json.load(f)["steps"])
    with open(os.path.join(out, n + ".cpu")) as f:
        parts = f.read().split()
    cpu = {parts[i]: float(parts[i + 1]) for i in range(0, len(parts), 2)}
    with open(os.path.join(out, n + ".load")) as f:
        load = " / ".join(l.split(None, 2)[2].strip() for l in f)
    m = metrics(n)
    cl, rd = 1e6 * cpu["peer"] / placed, 1e6 * cpu["redis"] / placed
    rows["on" if "-on-" in n else "off"].append((cl, rd))
    print("%-13s %7d %8.0f %9.0f %8.0f %8.0f %10.0f %9.0f  %s" % (
        n, placed, cl, rd, total(m, "cleanline_events_total"), total(m, "cleanline_events_dropped_total"),
        total(m, "cleanline_webhook_deliveries_total", result="delivered"),
        total(m, "cleanline_webhook_dropped_total"), load))
med = {k: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v)) for k, v in rows.items() if v}
for k, (cl, rd) in med.items():
    print("median %-3s (%d runs): cleanline %.0f µs of CPU per call, redis %.0f µs" % (k, len(rows[k]), cl, rd))
if "on" in med and "off" in med:
    print("on against off: cleanline %+.1f%%, cleanline and redis together %+.1f%%" % (
        100 * (med["on"][0] / med["off"][0] - 1), 100 * (sum(med["on"]) / sum(med["off"]) - 1)))
