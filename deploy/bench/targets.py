#!/usr/bin/env python3
"""Issue 5's targets table from a `run.sh all` output directory.

usage: targets.py OUT              print the table
       targets.py --half-rate OUT  print half cleanline's median highest
                                   clean rate (the transit run's rate)
"""
import glob
import json
import os
import re
import statistics
import sys


def best(path):
    """Highest clean rate of one stepped run, by sipload's own failure ratio
    (a blocked caller answered counts as a failure), as report.py reads it."""
    with open(path) as f:
        rep = json.load(f)
    b = None
    for s in rep["steps"]:
        if s["failure_ratio"] > 0.01:
            break
        b = s
    return b["offered_rate"] if b else 0


def rounds(out, who):
    return sorted(glob.glob(os.path.join(out, who + "-[0-9]*.json")))


def transit(out):
    """p99 bucket bound and share within 2 ms of cleanline's own histogram."""
    rows = []
    for met in sorted(glob.glob(os.path.join(out, "transit-cleanline-*", "metrics.txt"))):
        b = []
        with open(met) as f:
            for l in f:
                if l.startswith("cleanline_invite_transit_seconds_bucket{"):
                    le = l.split('le="', 1)[1].split('"', 1)[0]
                    b.append((float(le), float(l.rsplit(" ", 1)[1])))
        b.sort()
        if not b or not b[-1][1]:
            continue
        n = b[-1][1]
        p99 = next(le for le, c in b if c >= 0.99 * n)
        within = next(c for le, c in b if abs(le - 0.002) < 1e-9)
        rows.append((p99, within / n))
    return rows


def grep(path, pattern):
    try:
        with open(path) as f:
            m = re.search(pattern, f.read())
    except OSError:
        return None
    return m.group(1) if m else None


def main():
    if sys.argv[1] == "--half-rate":
        rates = [best(p) for p in rounds(sys.argv[2], "cleanline")]
        half = statistics.median(rates) / 2 if rates else 100
        print(max(50, int(round(half / 50.0)) * 50))
        return
    out = sys.argv[1]
    cl = [best(p) for p in rounds(out, "cleanline")]
    ka = [best(p) for p in rounds(out, "kamailio")]
    ratios = ["%.2f" % (c / k) for c, k in zip(cl, ka) if k]
    met_rate = bool(ratios) and all(float(r) >= 1.0 for r in ratios)
    tr = transit(out)
    met_transit = bool(tr) and all(p99 <= 0.002 for p99, _ in tr)
    up = grep(os.path.join(out, "rtp.txt"), r"calls up at the plateau: (\d+)")
    gaps = re.findall(r"gap > 2: (\d+)", open(os.path.join(out, "rtp.txt")).read()) if os.path.exists(os.path.join(out, "rtp.txt")) else []
    met_rtp = up is not None and int(up) >= 1000 and all(g == "0" for g in gaps)
    disc = grep(os.path.join(out, "disconnect.txt"), r"clean disconnection under load: (\w+)")
    rows = [
        ("highest clean call rate, cleanline/Kamailio >= 1.0",
         "cleanline %s/s, Kamailio %s/s: ratio %s" % (", ".join("%g" % c for c in cl), ", ".join("%g" % k for k in ka), ", ".join(ratios)),
         met_rate),
        ("INVITE in -> out p99 < 2 ms at half the clean rate",
         "; ".join("p99 <= %g ms, %.1f%% within 2 ms" % (p * 1e3, 100 * w) for p, w in tr) or "no data", met_transit),
        ("1,000 concurrent G.711 calls, none dropping audio",
         "%s calls up at the plateau; calls with a relay gap > 2 packets: %s" % (up, "/".join(gaps) or "n/a"), met_rtp),
        ("clean disconnection under load", disc or "no data", disc == "PASS"),
    ]
    print("=== issue 5 targets (this machine, this run; load averages are in each run's .load file)")
    for name, got, met in rows:
        print("  %-52s %-70s %s" % (name, got, "met" if met else "MISSED"))


if __name__ == "__main__":
    main()
