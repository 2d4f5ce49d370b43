#!/usr/bin/env bash
# Step the call rate against a target until more than 1% of calls fail, and
# print sipload's table (issue 5). Targets:
#
#   run.sh kamailio        Redis with N blocked numbers + Kamailio 5.6
#                          (deploy/kamailio) + sipload answer as the line
#   run.sh answer          sipload answer alone: the load tool's own ceiling
#   run.sh HOST:PORT       anything already running (later: cleanline serve
#                          with its Redis loaded by this script's loader,
#                          LOAD_ONLY=1 run.sh kamailio shows how)
#
# Environment (defaults in brackets): STEPS [250,500,1000,2000,3000,4000,6000,8000],
# STEP_DURATION [5s], HOLD [1s], NUMBERS [1000000] blocked numbers in Redis,
# BLOCKED_FRACTION [0.1], RTP [0] (1: G.711 both ways), KAM_CHILDREN [4],
# OUT [a temp dir] for logs and report.json, NICE [10].
# Figures depend on the machine and what else runs on it; say so with them.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

target=${1:-}
[ -n "$target" ] || die "usage: run.sh kamailio|answer|HOST:PORT"
STEPS=${STEPS:-250,500,1000,2000,3000,4000,6000,8000}
STEP_DURATION=${STEP_DURATION:-5s}
HOLD=${HOLD:-1s}
NUMBERS=${NUMBERS:-1000000}
BLOCKED_FRACTION=${BLOCKED_FRACTION:-0.1}
NICE=${NICE:-10}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
rtp=()
[ "${RTP:-0}" = 1 ] && rtp=(--rtp)

build_sipload "$OUT"

# blocked_numbers N FILE: N numbers from a range the caller pool
# (+4479460...) never draws, so only the blocked fraction can hit.
blocked_numbers() {
	awk -v n="$1" 'BEGIN { for (i = 0; i < n; i++) printf "+44770%07d\n", i }' >"$2"
}

# load_redis FILE: every number as a confirmed entry in CleanLine's layout
# (blocklist/redis.go: cl:{N}:e, "firstMs|reports|c|lastMs|len|reason source"),
# plus its listing index, through redis-cli --pipe.
load_redis() {
	local now
	now=$(date +%s000)
	awk -v now="$now" '{
		v = now "|1|c|" now "|5|benchbench"
		k = "cl:{" $1 "}:e"
		printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", length(k), k, length(v), v
		printf "*4\r\n$4\r\nZADD\r\n$14\r\ncl:idx:blocked\r\n$1\r\n0\r\n$%d\r\n%s\r\n", length($1), $1
	}' "$1" | redis-cli -p "$REDIS_PORT" --pipe >"$OUT/redis-load.log" 2>&1 || die "redis load failed: $(tail -3 "$OUT/redis-load.log")"
	echo "redis: $(redis-cli -p "$REDIS_PORT" DBSIZE) keys, used_memory $(redis-cli -p "$REDIS_PORT" INFO memory | sed -n 's/^used_memory_human:\(.*\)\r$/\1/p')" >&2
}

blocklist=()
case "$target" in
kamailio)
	blocked_numbers "$NUMBERS" "$OUT/blocked.txt"
	start_redis "$OUT"
	load_redis "$OUT/blocked.txt"
	start_answer "$OUT" "${rtp[@]}"
	start_kamailio "$OUT" "$here/../kamailio/kamailio.cfg" "127.0.0.1:$ANSWER_PORT"
	addr="127.0.0.1:$KAM_PORT"
	blocklist=(--blocklist "$OUT/blocked.txt" --blocked-fraction "$BLOCKED_FRACTION")
	echo "target: kamailio $(kamailio -v | sed -n 's/^version: //p' | head -1) on $addr (children ${KAM_CHILDREN:-4}), redis-server on 127.0.0.1:$REDIS_PORT with $NUMBERS blocked numbers, line: sipload answer on 127.0.0.1:$ANSWER_PORT" >&2
	;;
answer)
	start_answer "$OUT" "${rtp[@]}"
	addr="127.0.0.1:$ANSWER_PORT"
	echo "target: sipload answer on $addr" >&2
	;;
*)
	addr=$target
	echo "target: $addr (started elsewhere)" >&2
	;;
esac

echo "machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), load average $(cut -d' ' -f1-3 /proc/loadavg); sipload at nice $NICE" >&2
nice -n "$NICE" "$SIPLOAD" call --target "$addr" --steps "$STEPS" --step-duration "$STEP_DURATION" \
	--hold "$HOLD" --stop-above 0.01 --answer-timeout 5s "${blocklist[@]}" "${rtp[@]}" \
	--json >"$OUT/report.json" 2>"$OUT/call.err" || die "sipload call failed: $(tail -3 "$OUT/call.err")"
if [ -n "${ANSWER_PID:-}" ]; then
	stop_answer
	echo "--- line (sipload answer):" && cat "$OUT/answer.out"
fi
echo "--- sipload call, steps until >1% failed (post-dial delay = INVITE -> 180):"
python3 - "$OUT/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
ms = lambda ns: "%.2f" % (ns / 1e6) if ns else "-"
print("%9s %10s %7s %8s %8s %6s %7s %6s %6s %8s %8s %8s %8s" % (
    "offered/s", "achieved/s", "placed", "answered", "declined", "failed", "timeout", "error", "fail%",
    "pdd p50", "pdd p90", "pdd p99", "pdd max"))
best = None
for s in r["steps"]:
    print("%9g %10.1f %7d %8d %8d %6d %7d %6d %6.2f %8s %8s %8s %8s" % (
        s["offered_rate"], s["completed_rate"], s["attempted"], s["answered"], s["declined"], s["failed"],
        s["timed_out"], s["errors"] + s["not_placed_concurrency_cap"], 100 * s["failure_ratio"],
        ms(s["post_dial_delay"]["p50_ns"]), ms(s["post_dial_delay"]["p90_ns"]),
        ms(s["post_dial_delay"]["p99_ns"]), ms(s["post_dial_delay"]["max_ns"])))
    if s["failure_ratio"] <= 0.01:
        best = s
if best:
    print("highest clean rate (<=1%% failed): %g calls/s offered, %.1f completed/s" % (best["offered_rate"], best["completed_rate"]))
else:
    print("no step stayed under 1% failures")
PY
echo "logs and report.json in $OUT" >&2
