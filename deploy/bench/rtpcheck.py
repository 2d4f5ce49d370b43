#!/usr/bin/env python3
"""Summarise run.sh rtp: did any call drop audio, how many calls were up at
the plateau, and cleanline's resident memory there.

usage: rtpcheck.py OUT HOLD_SECONDS RATE
"""
import json
import os
import statistics
import sys

out, hold, rate = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
d = os.path.join(out, "rtp")
callrep = json.load(open(os.path.join(out, "rtp.json")))
call = callrep["steps"][0]
ans = json.load(open(os.path.join(d, "answer.json")))
with open(os.path.join(out, "rtp.load")) as f:
    print("load average: " + "; ".join(l.strip() for l in f))

print("caller: placed %d, answered %d, failed %d, timed out %d, errors %d, hang-up failed %d, pdd p99 %.2f ms" % (
    call["attempted"], call["answered"], call["failed"], call["timed_out"], call["errors"],
    call["hangup_failed"], call["post_dial_delay"]["p99_ns"] / 1e6))
print("caller RTP: sent %d, received %d, bad %d" % (call["rtp_sent"], call["rtp_received"], call["rtp_bad"]))
print("line RTP:   sent %d, received %d, bad %d; answered calls with no RTP in: %d" % (
    ans["rtp_sent"], ans["rtp_received"], ans["rtp_bad"], ans["answered_calls_without_rtp"]))
print("RTP rounds (20 ms) the senders skipped, starved of CPU: caller %s, line %s" % (
    callrep.get("rtp_rounds_skipped", "n/a"), ans.get("rtp_rounds_skipped", "n/a")))
# sipload shares one RTP socket among its calls and attributes each packet by
# the sender's address or declared SSRC; a packet no call claims (e.g. relayed
# before the caller had the 200 OK naming its source) is counted apart.
print("RTP packets for no known call (not in the counts above): caller %s, line %s" % (
    callrep.get("rtp_stray", "n/a"), ans.get("rtp_stray", "n/a")))
if call["rtp_sent"] and ans["rtp_sent"]:
    print("delivered caller -> line %.4f%%, line -> caller %.4f%% (packets in flight at hang-up count as lost)" % (
        100 * ans["rtp_received"] / call["rtp_sent"], 100 * call["rtp_received"] / ans["rtp_sent"]))

# Per call, at the line: what it received against what it sent (both ends
# send 50 packets/s for the same answered time).
calls = [json.loads(l) for l in open(os.path.join(d, "answer-calls.jsonl")) if l.strip()]
short = [c for c in calls if c["rtp_sent"] and c["rtp_received"] < 0.98 * c["rtp_sent"]]
print("line, per call: %d calls; %d received less than 98%% of what the line itself sent%s (the caller may send less than 50/s when starved of CPU: see cleanline's own counts below)" % (
    len(calls), len(short), "" if not short else " (worst %d of %d)" % min(
        ((c["rtp_received"], c["rtp_sent"]) for c in short))))

# cleanline's own call records (log level info for this run).
recs = []
with open(os.path.join(d, "cleanline.log")) as f:
    for l in f:
        try:
            r = json.loads(l)
        except ValueError:
            continue
        if r.get("msg") == "call":
            recs.append(r)
answered = [r for r in recs if r.get("outcome") == "answered" or r.get("talk")]
dropped = sum(r.get("rtp_dropped", 0) for r in recs)
withdrop = sum(1 for r in recs if r.get("rtp_dropped", 0))
outcomes = {}
for r in recs:
    outcomes[r.get("outcome")] = outcomes.get(r.get("outcome"), 0) + 1
print("cleanline call records: %d (%s); rtp_dropped total %d in %d calls" % (
    len(recs), ", ".join("%s %d" % kv for kv in sorted(outcomes.items(), key=str)), dropped, withdrop))
if answered:
    ti = [r.get("trunk_rtp_in", 0) for r in answered]
    lo = [r.get("line_rtp_out", 0) for r in answered]
    li = [r.get("line_rtp_in", 0) for r in answered]
    to = [r.get("trunk_rtp_out", 0) for r in answered]
    # Per call, what came in on one leg and what went out on the other:
    # a relay that drops audio shows a gap (a packet or two may be in
    # flight when the call ends).
    gap_tl = [r.get("trunk_rtp_in", 0) - r.get("line_rtp_out", 0) for r in answered]
    gap_lt = [r.get("line_rtp_in", 0) - r.get("trunk_rtp_out", 0) for r in answered]
    print("cleanline per call, in minus relayed: caller->line max %d (calls with a gap > 2: %d), line->caller max %d (calls with a gap > 2: %d)" % (
        max(gap_tl), sum(1 for g in gap_tl if g > 2), max(gap_lt), sum(1 for g in gap_lt if g > 2)))
    print("cleanline per answered call: trunk in %d..%d (median %d), line out %d..%d; line in %d..%d, trunk out %d..%d" % (
        min(ti), max(ti), statistics.median(ti), min(lo), max(lo), min(li), max(li), min(to), max(to)))

# Memory at the plateau: from HOLD+2 s after the first call until 2 s before
# the last was placed, every call placed so far minus those already hung up.
t0 = float(open(os.path.join(d, "t0")).read())
samples = []
for l in open(os.path.join(d, "rss.samples")):
    p = l.split()
    if len(p) >= 3:
        samples.append((float(p[0]) - t0, int(p[1]), int(p[2])) + tuple(int(x) for x in p[3:5]))
plateau = [s for s in samples if hold + 2 <= s[0] <= 2 * hold - 2]
with open(os.path.join(d, "rss")) as f:
    rss = dict()
    for l in f:
        p = l.split()[1:]
        rss.update((p[i], int(p[i + 1])) for i in range(0, len(p) - 1, 2))
idle = rss["idle"]
conc = rate * hold * (call["answered"] / max(call["attempted"], 1))
if plateau:
    m = statistics.median(s[1] for s in plateau)
    fds = statistics.median(s[2] for s in plateau)
    print("cleanline RSS: idle %d kB; plateau median %d kB (%d samples, %d..%d kB), %d open descriptors; peak %d kB" % (
        idle, m, len(plateau), min(s[1] for s in plateau), max(s[1] for s in plateau), fds, rss.get("peak", 0)))
    if len(plateau[0]) >= 5 and len(plateau) >= 2:
        tck = os.sysconf("SC_CLK_TCK")
        dt = plateau[-1][0] - plateau[0][0]
        print("CPU at the plateau (share of one core): cleanline %.0f%%, the line (sipload answer) %.0f%%, over %.0f s; the box has %d cores" % (
            100 * (plateau[-1][3] - plateau[0][3]) / tck / dt, 100 * (plateau[-1][4] - plateau[0][4]) / tck / dt, dt, os.cpu_count()))
    print("calls up at the plateau: %.0f (rate x hold x answered share); RSS per 1,000 active calls with RTP: %.1f MB above idle, %.1f MB total" % (
        conc, (m - idle) / conc * 1000 / 1024, m / conc * 1000 / 1024))
