#!/usr/bin/env python3
"""Print the tables of deploy/bench/run.sh: one per run (sipload call's JSON
report), then, when Kamailio and cleanline ran in the same invocation, the
ratios cleanline/Kamailio per round. "unscreened" are callers drawn from the
blocklist that were answered instead of declined; they count as failures.

usage: report.py OUT NAME...   (OUT/NAME.json, OUT/NAME.load, OUT/NAME/...)
"""
import json
import os
import sys

out, names = sys.argv[1], sys.argv[2:]


def ms(ns):
    return "%.2f" % (ns / 1e6) if ns else "-"


def load(name):
    with open(os.path.join(out, name + ".json")) as f:
        return json.load(f)


def missed(s):
    """Blocked callers answered: not screened. Reports from before sipload
    counted them give only drawn - declined, which also counts blocked
    callers that timed out (already failures): an upper bound."""
    if "answered_blocked_callers" in s:
        return s["answered_blocked_callers"]
    return max(0, s.get("blocked_callers_drawn", 0) - s.get("declined_blocked_callers", 0))


def fail_ratio(s):
    """Failures over calls, a blocked caller answered counting as one."""
    if "answered_blocked_callers" in s:
        return s["failure_ratio"]
    n = s["attempted"] + s["not_placed_concurrency_cap"]
    return (s["failure_ratio"] * n + missed(s)) / n if n else 0.0


def best(rep):
    """The highest step with at most 1% failures, or None. Stepping stops
    after the first step above 1%, so this is the last clean step before it."""
    b = None
    for s in rep["steps"]:
        if fail_ratio(s) > 0.01:
            break
        b = s
    return b


def metrics_summary(path):
    """cleanline's own view over the whole run, from its /metrics: INVITE
    transit (handler got the caller's INVITE -> INVITE to the line sent) and
    screening time as bucket bounds (a quantile is at most its bucket's
    upper bound), the share within 2 ms, and verdicts."""
    buckets, counters = {}, {}
    with open(path) as f:
        for l in f:
            if l.startswith("#") or not l.strip():
                continue
            key, val = l.rsplit(" ", 1)
            if "_bucket{" in key:
                name, labels = key.split("_bucket{", 1)
                le = labels.split('le="', 1)[1].split('"', 1)[0]
                buckets.setdefault(name, []).append((float(le), float(val)))
            elif key.startswith(("cleanline_verdicts_total", "cleanline_store_unavailable_total", "cleanline_rtp_port_binds_total", "cleanline_rtp_stray_closes_total")):
                counters[key] = float(val)
    lines = []
    for name, label in (("cleanline_invite_transit_seconds", "INVITE transit inside cleanline"),
                        ("cleanline_screen_seconds", "screening")):
        b = sorted(buckets.get(name, []))
        if not b or b[-1][1] == 0:
            continue
        n = b[-1][1]
        def bound(q):
            for le, c in b:
                if c >= q * n:
                    return "<= %g ms" % (le * 1e3) if le != float("inf") else "> %g ms" % (b[-2][0] * 1e3)
        within2 = next((c for le, c in b if abs(le - 0.002) < 1e-9), None)
        lines.append("%s (cleanline's histogram, %d calls): p50 %s, p90 %s, p99 %s%s" % (
            label, n, bound(.5), bound(.9), bound(.99),
            ", %.2f%% within 2 ms" % (100 * within2 / n) if within2 is not None else ""))
    if counters:
        lines.append("cleanline counters: " + ", ".join("%s %d" % (k.replace("cleanline_", ""), v) for k, v in sorted(counters.items())))
    return lines


def table(name):
    rep = load(name)
    print("--- %s" % name)
    try:
        with open(os.path.join(out, name + ".load")) as f:
            print("    " + "; ".join(l.strip() for l in f))
    except OSError:
        pass
    print("%9s %10s %7s %8s %8s %8s %6s %7s %6s %6s %8s %8s %8s %8s" % (
        "offered/s", "achieved/s", "placed", "answered", "declined", "unscreened", "failed", "timeout", "error", "fail%",
        "pdd p50", "pdd p90", "pdd p99", "pdd max"))
    for s in rep["steps"]:
        p = s["post_dial_delay"]
        print("%9g %10.1f %7d %8d %8d %10d %6d %7d %6d %6.2f %8s %8s %8s %8s" % (
            s["offered_rate"], s["completed_rate"], s["attempted"], s["answered"], s["declined"], missed(s), s["failed"],
            s["timed_out"], s["errors"] + s["not_placed_concurrency_cap"] + s["hangup_failed"],
            100 * fail_ratio(s), ms(p["p50_ns"]), ms(p["p90_ns"]), ms(p["p99_ns"]), ms(p["max_ns"])))
    cpu = os.path.join(out, name + ".cpu")
    if os.path.exists(cpu):
        with open(cpu) as f:
            f = f.read().split()
        secs = dict(zip(f[0::2], map(float, f[1::2])))
        placed = sum(s["attempted"] for s in rep["steps"])
        if placed:
            print("CPU per call placed, whole run (%d calls): %s" % (placed, ", ".join(
                "%s %.0f µs" % (k, 1e6 * v / placed) for k, v in secs.items()
                if k != "peer" or name.split("-")[0] not in ("direct", "transit-direct", "target"))))
    b = best(rep)
    if b:
        print("highest clean rate (<=1%% failed): %g calls/s offered, %.1f completed/s" % (
            b["offered_rate"], b["completed_rate"]))
    else:
        print("no step stayed under 1% failures")
    met = os.path.join(out, name, "metrics.txt")
    if os.path.exists(met) and os.path.getsize(met):
        for line in metrics_summary(met):
            print(line)
    rss = os.path.join(out, name, "rss")
    if os.path.exists(rss):
        with open(rss) as f:
            print("cleanline memory: " + "; ".join(l.strip() for l in f))
    ans = os.path.join(out, name, "answer.json")
    if os.path.exists(ans) and os.path.getsize(ans):
        with open(ans) as f:
            a = json.load(f)
        print("line (sipload answer): invites %d, answered %d, failed %d, bye received %d, rtp sent %d received %d, late calls %d" % (
            a["invites"], a["answered"], a["failed"], a["bye_received"], a["rtp_sent"], a["rtp_received"],
            a["calls_with_late_traffic"]))
    print()


def step_at(rep, rate):
    for s in rep["steps"]:
        if s["offered_rate"] == rate:
            return s
    return None


for n in names:
    table(n)

rounds = sorted({n.split("-", 1)[1] for n in names if n.startswith("kamailio-")})
for r in rounds:
    k, c = "kamailio-" + r, "cleanline-" + r
    if c not in names:
        continue
    kr, cr = load(k), load(c)
    kb, cb = best(kr), best(cr)
    print("=== round %s: cleanline / Kamailio" % r)
    if not kb or not cb:
        print("    a side had no clean step; no ratio")
        continue
    print("    highest clean rate: cleanline %g/s (%.1f completed/s), Kamailio %g/s (%.1f completed/s): ratio %.2f (offered), %.2f (completed)" % (
        cb["offered_rate"], cb["completed_rate"], kb["offered_rate"], kb["completed_rate"],
        cb["offered_rate"] / kb["offered_rate"], cb["completed_rate"] / kb["completed_rate"]))
    common = min(cb["offered_rate"], kb["offered_rate"])
    ks, cs = step_at(kr, common), step_at(cr, common)
    kp, cp = ks["post_dial_delay"], cs["post_dial_delay"]
    print("    post-dial delay at %g/s (highest rate clean on both): p50 %s vs %s ms, p99 cleanline %s ms, Kamailio %s ms: ratio %.2f" % (
        common, ms(cp["p50_ns"]), ms(kp["p50_ns"]), ms(cp["p99_ns"]), ms(kp["p99_ns"]),
        cp["p99_ns"] / kp["p99_ns"] if kp["p99_ns"] else float("nan")))
    d = "direct-" + r
    if d in names:
        ds = step_at(load(d), common)
        if ds and ds["post_dial_delay"]["n"]:
            dp = ds["post_dial_delay"]
            print("    direct to the line at %g/s: p50 %s, p99 %s ms; cleanline minus direct (an estimate of what cleanline adds to INVITE->180, both ways): p50 %.2f, p99 %.2f ms" % (
                common, ms(dp["p50_ns"]), ms(dp["p99_ns"]),
                (cp["p50_ns"] - dp["p50_ns"]) / 1e6, (cp["p99_ns"] - dp["p99_ns"]) / 1e6))



def transit(name):
    """INVITE transit caller -> line for every answered call of run NAME:
    the caller's send time (sipload call --calls-out) joined with the line's
    arrival time (sipload answer --calls-out) on the caller number, the
    latest send before the arrival. Both clocks are this host's."""
    try:
        sent = {}
        with open(os.path.join(out, name + ".calls.jsonl")) as f:
            for l in f:
                c = json.loads(l)
                sent.setdefault(c["from"], []).append(c["invite_unix_ns"])
        with open(os.path.join(out, name, "answer-calls.jsonl")) as f:
            got = [json.loads(l) for l in f if l.strip()]
    except OSError:
        return None
    ds = []
    for r in got:
        t = [s for s in sent.get(r["from"], ()) if s <= r["invite_unix_ns"]]
        if t:
            ds.append(r["invite_unix_ns"] - max(t))
    if not ds:
        return None
    ds.sort()
    n = len(ds)
    rank = lambda p: ds[min(max(int(p * n + 0.999999) - 1, 0), n - 1)]
    return {"n": n, "p50_ns": rank(0.5), "p90_ns": rank(0.9), "p99_ns": rank(0.99), "max_ns": ds[-1]}


rounds = sorted({n.rsplit("-", 1)[1] for n in names if n.startswith("transit-cleanline-")})
for r in rounds:
    dt = transit("transit-direct-" + r)
    if not dt:
        continue
    print("=== transit round %s: INVITE sent by the caller -> INVITE at the line, every answered call (p50 / p90 / p99 / max ms)" % r)
    print("    direct         %s / %s / %s / %s (%d calls)" % (ms(dt["p50_ns"]), ms(dt["p90_ns"]), ms(dt["p99_ns"]), ms(dt["max_ns"]), dt["n"]))
    for peer in ("kamailio", "cleanline"):
        t = transit("transit-%s-%s" % (peer, r))
        if t:
            print("    via %-10s %s / %s / %s / %s (%d calls); over direct: p50 +%.2f, p99 +%.2f ms" % (
                peer, ms(t["p50_ns"]), ms(t["p90_ns"]), ms(t["p99_ns"]), ms(t["max_ns"]), t["n"],
                (t["p50_ns"] - dt["p50_ns"]) / 1e6, (t["p99_ns"] - dt["p99_ns"]) / 1e6))
