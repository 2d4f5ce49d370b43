#!/usr/bin/env bash
# Step the call rate against a target until more than 1% of calls fail, and
# print sipload's table (issue 5). Targets:
#
#   run.sh kamailio        Redis with N blocked numbers + Kamailio 5.6
#                          (deploy/kamailio) + sipload answer as the line
#   run.sh cleanline       the same Redis + cleanline serve (generated config:
#                          one trunk, one line = sipload answer) + the line
#   run.sh compare         Kamailio and cleanline back to back on one Redis,
#                          ROUNDS times (default 2), with the line answered
#                          directly as a baseline (DIRECT=1); prints the
#                          ratios cleanline/Kamailio
#   run.sh answer          sipload answer alone: the load tool's own ceiling
#   run.sh HOST:PORT       anything already running
#
# Environment (defaults in brackets): STEPS [250,500,1000,2000,3000,4000,6000,8000],
# STEP_DURATION [5s], HOLD [1s], NUMBERS [1000000] blocked numbers in Redis,
# BLOCKED_FRACTION [0.1], RTP [0] (1: G.711 both ways), KAM_CHILDREN [4],
# ROUNDS [2], DIRECT [1], CL_LOG_LEVEL [warn], OUT [a temp dir] for logs and
# the JSON reports, NICE [10] for the load tool.
# Figures depend on the machine and what else runs on it: every run records
# the load average before and after it; say so with the figures.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

target=${1:-}
[ -n "$target" ] || die "usage: run.sh kamailio|cleanline|compare|answer|HOST:PORT"
STEPS=${STEPS:-250,500,1000,2000,3000,4000,6000,8000}
STEP_DURATION=${STEP_DURATION:-5s}
HOLD=${HOLD:-1s}
NUMBERS=${NUMBERS:-1000000}
BLOCKED_FRACTION=${BLOCKED_FRACTION:-0.1}
NICE=${NICE:-10}
ROUNDS=${ROUNDS:-2}
DIRECT=${DIRECT:-1}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
rtp=()
[ "${RTP:-0}" = 1 ] && rtp=(--rtp)
# The line answers on its own loopback address, so that cleanline tells the
# line's requests (127.0.0.3) from the trunk's (the caller, 127.0.0.1).
export ANSWER_IP=127.0.0.3

build_sipload "$OUT"

# blocked_numbers N FILE: N numbers from a range the caller pool
# (+4479460...) never draws, so only the blocked fraction can hit.
blocked_numbers() {
	awk -v n="$1" 'BEGIN { for (i = 0; i < n; i++) printf "+44770%07d\n", i }' >"$2"
}

# load_redis FILE: every number as a confirmed entry in CleanLine's layout
# (blocklist/redis.go: cl:{N}:e, "firstMs|reports|c|lastMs|len|reason source"),
# plus its listing index (cl:idx:b:NNNN, the digits in the bucket of the
# number's last four digits), through redis-cli --pipe.
load_redis() {
	local now
	now=$(date +%s000)
	awk -v now="$now" '{
		v = now "|1|c|" now "|5|benchbench"
		k = "cl:{" $1 "}:e"
		printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", length(k), k, length(v), v
		b = "cl:idx:b:" substr($1, length($1) - 3)
		d = substr($1, 2)
		printf "*3\r\n$4\r\nSADD\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", length(b), b, length(d), d
	}' "$1" | redis-cli -p "$REDIS_PORT" --pipe >"$OUT/redis-load.log" 2>&1 || die "redis load failed: $(tail -3 "$OUT/redis-load.log")"
	grep -q 'errors: 0,' "$OUT/redis-load.log" || die "redis load had errors: $(tail -3 "$OUT/redis-load.log")"
	echo "redis: $(redis-cli -p "$REDIS_PORT" DBSIZE) keys, used_memory $(redis-cli -p "$REDIS_PORT" INFO memory | sed -n 's/^used_memory_human:\(.*\)\r$/\1/p')" >&2
}

setup_redis() {
	[ -n "${REDIS_PORT:-}" ] && return 0
	blocked_numbers "$NUMBERS" "$OUT/blocked.txt"
	start_redis "$OUT"
	load_redis "$OUT/blocked.txt"
}

# step NAME ADDR ARGS...: step the rate against ADDR; the report goes to
# $OUT/NAME.json, the load average before and after to $OUT/NAME.load.
step() {
	local name=$1 addr=$2
	shift 2
	echo "load before $(loadavg)" >"$OUT/$name.load"
	echo "== $name: $addr, load average before $(loadavg)" >&2
	nice -n "$NICE" "$SIPLOAD" call --target "$addr" --steps "$STEPS" --step-duration "$STEP_DURATION" \
		--hold "$HOLD" --stop-above 0.01 --answer-timeout 5s "$@" "${rtp[@]}" \
		--json >"$OUT/$name.json" 2>"$OUT/$name.err" || die "sipload call failed: $(tail -3 "$OUT/$name.err")"
	echo "load after $(loadavg)" >>"$OUT/$name.load"
	echo "== $name: load average after $(loadavg)" >&2
}

blocklist=(--blocklist "$OUT/blocked.txt" --blocked-fraction "$BLOCKED_FRACTION")

# run_kamailio NAME / run_cleanline NAME / run_direct NAME: one stepped run
# with a fresh line (and proxy), everything stopped afterwards.
run_kamailio() {
	local d=$OUT/$1
	mkdir -p "$d"
	setup_redis
	start_answer "$d" "${rtp[@]}"
	start_kamailio "$d" "$here/../kamailio/kamailio.cfg" "$ANSWER_IP:$ANSWER_PORT"
	echo "target: kamailio $(kamailio -v | sed -n 's/^version: //p' | head -1) on 127.0.0.1:$KAM_PORT (children ${KAM_CHILDREN:-4}), redis-server on 127.0.0.1:$REDIS_PORT with $NUMBERS blocked numbers, line: sipload answer on $ANSWER_IP:$ANSWER_PORT" >&2
	step "$1" "127.0.0.1:$KAM_PORT" "${blocklist[@]}"
	stop_kamailio
	stop_answer
}

run_cleanline() {
	local d=$OUT/$1 peak
	mkdir -p "$d"
	setup_redis
	build_cleanline "$OUT"
	start_answer "$d" "${rtp[@]}"
	start_cleanline "$d" "redis://127.0.0.1:$REDIS_PORT" "$ANSWER_IP:$ANSWER_PORT"
	echo "target: cleanline on 127.0.0.1:$CL_PORT (log level ${CL_LOG_LEVEL:-warn}, GOMAXPROCS ${GOMAXPROCS:-all}), redis-server on 127.0.0.1:$REDIS_PORT with $NUMBERS blocked numbers, line: sipload answer on $ANSWER_IP:$ANSWER_PORT" >&2
	echo "rss_kb idle $(rss_kb "$CL_PID")" >"$d/rss"
	step "$1" "127.0.0.1:$CL_PORT" "${blocklist[@]}"
	peak=$(awk '/^VmHWM:/ { print $2 }' "/proc/$CL_PID/status")
	echo "rss_kb after $(rss_kb "$CL_PID") peak $peak" >>"$d/rss"
	stop_cleanline
	stop_answer
	grep -v '"level":"info"' "$d/cleanline.log" | head -5 >&2 || true
}

run_direct() {
	local d=$OUT/$1
	mkdir -p "$d"
	start_answer "$d" "${rtp[@]}"
	echo "target: sipload answer on $ANSWER_IP:$ANSWER_PORT (no proxy: the baseline)" >&2
	step "$1" "$ANSWER_IP:$ANSWER_PORT"
	stop_answer
}

echo "machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), $(uname -r), load average $(loadavg); sipload at nice $NICE" >&2
runs=()
case "$target" in
kamailio | cleanline)
	"run_$target" "$target"
	runs=("$target")
	;;
answer)
	run_direct direct
	runs=(direct)
	;;
compare)
	for ((r = 1; r <= ROUNDS; r++)); do
		run_kamailio "kamailio-$r"
		run_cleanline "cleanline-$r"
		runs+=("kamailio-$r" "cleanline-$r")
		if [ "$DIRECT" = 1 ]; then
			run_direct "direct-$r"
			runs+=("direct-$r")
		fi
	done
	;;
*)
	step target "$target"
	runs=(target)
	;;
esac
python3 "$here/report.py" "$OUT" "${runs[@]}"
echo "logs and JSON reports in $OUT" >&2
