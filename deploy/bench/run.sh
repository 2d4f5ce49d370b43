#!/usr/bin/env bash
# Step the call rate against a target until more than 1% of calls fail, and
# print sipload's table (issue 5). Targets:
#
#   run.sh kamailio        Redis with N blocked numbers + Kamailio 5.6
#                          (deploy/kamailio) + sipload answer as the line
#   run.sh cleanline       the same Redis (CL_STORE=file: the embedded store) + cleanline serve (generated config:
#                          one trunk, one line = sipload answer) + the line
#   run.sh compare         Kamailio and cleanline back to back on one Redis,
#                          ROUNDS times (default 2), with the line answered
#                          directly as a baseline (DIRECT=1); prints the
#                          ratios cleanline/Kamailio
#   run.sh transit RATE    the line answered directly, through Kamailio and
#                          through cleanline at one RATE, ROUNDS times: each
#                          INVITE's transit from the caller to the line (both
#                          sides' --calls-out joined on caller number and
#                          send time), and what each peer adds to it
#   run.sh rtp             cleanline (RTP_STORE=redis|file) with CONCURRENT [1000] calls holding
#                          HOLD [30s] with G.711 both ways: packet counts
#                          on both ends and in cleanline's call records, and
#                          cleanline's resident memory at the plateau
#   run.sh disconnect      calls through cleanline that keep sending RTP and
#                          an INFO after the line hangs up (D1/D2): passes only
#                          when the line saw nothing late; then the same run
#                          straight to the line, which must fail
#   run.sh store           the embedded store: import NUMBERS, file size, RSS
#                          of import, check and an idle serve
#   run.sh profile RATE    cleanline at RATE for PROFILE_SECONDS [20] under
#                          perf record: where its CPU goes
#   run.sh events          cleanline at one rate (STEPS, e.g. 400) with call
#                          events kept in the store and POSTed to a webhook
#                          (its default events; CL_WEBHOOK_EVENTS="warned,
#                          blocked, call" to choose), against neither,
#                          interleaved ROUNDS times: CPU per call of
#                          cleanline and of Redis (issue 13's 5%)
#   run.sh all             compare, transit at half cleanline's clean rate, rtp,
#                          disconnect and store, then issue 5's targets table
#                          (what make bench-e2e runs)
#   run.sh answer          sipload answer alone: the load tool's own ceiling
#   run.sh HOST:PORT       anything already running
#
# Environment (defaults in brackets): STEPS [250,500,1000,2000,3000,4000,6000,8000],
# STEP_DURATION [5s], HOLD [1s], NUMBERS [1000000] blocked numbers in Redis,
# BLOCKED_FRACTION [0.1], RTP [0] (1: G.711 both ways), KAM_CHILDREN [4],
# ROUNDS [2], DIRECT [1], CL_LOG_LEVEL [warn], CL_MEDIA_IP [127.0.0.5],
# CONCURRENT [1000] and HOLD_RTP [30] (seconds) for rtp, DISC_RATE [100] and
# DISC_DURATION [20s] for disconnect, PROFILE_SECONDS [20] for profile,
# CL_WARM_PORTS [4096] (cleanline's sip.media.warm_ports; -1 closes every pair),
# OUT [a temp dir] for logs and the JSON reports, NICE [10] for the load tool.
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
export ANSWER_IP=127.0.0.3 ANSWER_JSON=1

build_sipload "$OUT"

# blocked_numbers N FILE: N numbers from a range the caller pool
# (+4479460...) never draws, so only the blocked fraction can hit. Every one
# is a valid UK mobile number (07400 000000-0999999), so a blocked caller is
# refused by the blocklist lookup, not earlier as an invalid number.
blocked_numbers() {
	awk -v n="$1" 'BEGIN { for (i = 0; i < n; i++) printf "+44740%07d\n", i }' >"$2"
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
	local name=$1 addr=$2 callsout=()
	shift 2
	[ "$TRANSIT" = 1 ] && callsout=(--calls-out "$OUT/$name.calls.jsonl")
	echo "load before $(loadavg)" >"$OUT/$name.load"
	echo "== $name: $addr, load average before $(loadavg)" >&2
	local peer0 line0 redis0=0
	peer0=$(peer_ticks)
	line0=$(cpu_ticks "$ANSWER_PID")
	[ -n "${REDIS_PID:-}" ] && redis0=$(cpu_ticks "$REDIS_PID")
	/usr/bin/time -f '%U %S' -o "$OUT/$name.time" nice -n "$NICE" "$SIPLOAD" call --target "$addr" --steps "$STEPS" --step-duration "$STEP_DURATION" \
		--hold "$HOLD" --stop-above 0.01 --answer-timeout 5s "$@" "${rtp[@]}" "${extra[@]}" "${callsout[@]}" \
		--json >"$OUT/$name.json" 2>"$OUT/$name.err" || die "sipload call failed: $(tail -3 "$OUT/$name.err")"
	# CPU seconds over the whole stepped run: the peer under test (all its
	# processes), Redis, the line, and the caller.
	local redis=0
	[ -n "${REDIS_PID:-}" ] && [ "$redis0" != 0 ] && redis=$(($(cpu_ticks "$REDIS_PID") - redis0))
	awk -v p="$(($(peer_ticks) - peer0))" -v r="$redis" -v l="$(($(cpu_ticks "$ANSWER_PID") - line0))" -v hz="$(getconf CLK_TCK)" \
		'{ printf "peer %.2f redis %.2f line %.2f caller %.2f\n", p / hz, r / hz, l / hz, $1 + $2 }' "$OUT/$name.time" >"$OUT/$name.cpu"
	echo "load after $(loadavg)" >>"$OUT/$name.load"
	echo "== $name: load average after $(loadavg)" >&2
}

# peer_ticks: CPU ticks of the peer under test so far: PEER_PID and its
# children (Kamailio forks its workers); 0 without a peer.
PEER_PID=
peer_ticks() {
	local t=0 p
	[ -n "$PEER_PID" ] || { echo 0; return; }
	for p in "$PEER_PID" $(pgrep -P "$PEER_PID"); do t=$((t + $(cpu_ticks "$p" || echo 0))); done
	echo "$t"
}

extra=()
TRANSIT=0
# answer_extra DIR: with TRANSIT=1 the line keeps a record of every call.
answer_extra() {
	ax=()
	if [ "$TRANSIT" = 1 ]; then ax=(--calls-out "$1/answer-calls.jsonl"); fi
}
blocklist=(--blocklist "$OUT/blocked.txt" --blocked-fraction "$BLOCKED_FRACTION")

# run_kamailio NAME / run_cleanline NAME / run_direct NAME: one stepped run
# with a fresh line (and proxy), everything stopped afterwards.
run_kamailio() {
	local d=$OUT/$1
	mkdir -p "$d"
	setup_redis
	answer_extra "$d"
	start_answer "$d" "${rtp[@]}" "${ax[@]}"
	start_kamailio "$d" "$here/../kamailio/kamailio.cfg" "$ANSWER_IP:$ANSWER_PORT"
	echo "target: kamailio $(kamailio -v | sed -n 's/^version: //p' | head -1) on 127.0.0.1:$KAM_PORT (children ${KAM_CHILDREN:-4}), redis-server on 127.0.0.1:$REDIS_PORT with $NUMBERS blocked numbers, line: sipload answer on $ANSWER_IP:$ANSWER_PORT" >&2
	PEER_PID=$KAM_PID
	step "$1" "127.0.0.1:$KAM_PORT" "${blocklist[@]}"
	PEER_PID=
	stop_kamailio
	stop_answer
}

run_cleanline() {
	local d=$OUT/$1 peak
	mkdir -p "$d"
	setup_redis
	build_cleanline "$OUT"
	answer_extra "$d"
	start_answer "$d" "${rtp[@]}" "${ax[@]}"
	# CL_STORE=file: the embedded store holding the same numbers, to see
	# what the Redis round trip costs at the ceiling.
	local store="redis://127.0.0.1:$REDIS_PORT"
	if [ "${CL_STORE:-redis}" = file ]; then
		store="file:$OUT/cl.db"
		[ -e "$OUT/cl.db" ] || "$CLEANLINE" import "$OUT/blocked.txt" --store "$store" >"$OUT/import.out" 2>&1 ||
			die "import into the embedded store failed: $(tail -3 "$OUT/import.out")"
	fi
	start_cleanline "$d" "$store" "$ANSWER_IP:$ANSWER_PORT"
	echo "target: cleanline ($store) on 127.0.0.1:$CL_PORT (log level ${CL_LOG_LEVEL:-warn}, GOMAXPROCS ${GOMAXPROCS:-all}), redis-server on 127.0.0.1:$REDIS_PORT with $NUMBERS blocked numbers, line: sipload answer on $ANSWER_IP:$ANSWER_PORT" >&2
	echo "rss_kb idle $(rss_kb "$CL_PID")" >"$d/rss"
	PEER_PID=$CL_PID
	step "$1" "127.0.0.1:$CL_PORT" "${blocklist[@]}"
	scrape_cleanline "$d/metrics.txt"
	PEER_PID=
	peak=$(awk '/^VmHWM:/ { print $2 }' "/proc/$CL_PID/status")
	echo "rss_kb after $(rss_kb "$CL_PID") peak $peak" >>"$d/rss"
	stop_cleanline
	stop_answer
	grep -v '"level":"info"' "$d/cleanline.log" | head -5 >&2 || true
}

run_direct() {
	local d=$OUT/$1
	mkdir -p "$d"
	answer_extra "$d"
	start_answer "$d" "${rtp[@]}" "${ax[@]}"
	echo "target: sipload answer on $ANSWER_IP:$ANSWER_PORT (no proxy: the baseline)" >&2
	step "$1" "$ANSWER_IP:$ANSWER_PORT"
	stop_answer
}

# run_rtp: CONCURRENT calls built at CONCURRENT/HOLD_RTP calls/s and held
# HOLD_RTP with RTP both ways; cleanline logs its call records (info) so each
# call's relayed and dropped packet counts are on record; its RSS and open
# descriptors are sampled every second.
run_rtp() {
	local d=$OUT/rtp conc=${CONCURRENT:-1000} hold=${HOLD_RTP:-30} rate sampler
	mkdir -p "$d"
	setup_redis
	build_cleanline "$OUT"
	rate=$(python3 -c "import math; print(math.ceil($conc / $hold))")
	start_answer "$d" --rtp --calls-out "$d/answer-calls.jsonl"
	# RTP_STORE=file: the embedded store (one box), which has no lookup
	# deadline, to separate media capacity from Redis latency under load.
	local store="redis://127.0.0.1:$REDIS_PORT"
	[ "${RTP_STORE:-redis}" = file ] && store="file:$d/cl.db"
	CL_LOG_LEVEL=info start_cleanline "$d" "$store" "$ANSWER_IP:$ANSWER_PORT"
	sleep 1
	echo "rss_kb idle $(rss_kb "$CL_PID")" >"$d/rss"
	# Each second: time, cleanline's RSS (kB), open descriptors, and the CPU
	# time (clock ticks, user+system) of cleanline and of the line.
	(while kill -0 "$CL_PID" 2>/dev/null; do
		echo "$(date +%s.%N) $(rss_kb "$CL_PID") $(find "/proc/$CL_PID/fd" -mindepth 1 | wc -l) $(cpu_ticks "$CL_PID") $(cpu_ticks "$ANSWER_PID")"
		sleep 1
	done) >"$d/rss.samples" 2>/dev/null &
	sampler=$!
	PIDS+=("$sampler")
	echo "load before $(loadavg)" >"$OUT/rtp.load"
	echo "== rtp: $rate calls/s for $((2 * hold))s, hold ${hold}s, RTP both ways, load average before $(loadavg)" >&2
	date +%s.%N >"$d/t0"
	nice -n "$NICE" "$SIPLOAD" call --target "127.0.0.1:$CL_PORT" --rate "$rate" --duration "$((2 * hold))s" \
		--hold "${hold}s" --rtp --answer-timeout 5s --json >"$OUT/rtp.json" 2>"$OUT/rtp.err" ||
		die "sipload call failed: $(tail -3 "$OUT/rtp.err")"
	echo "load after $(loadavg)" >>"$OUT/rtp.load"
	echo "rss_kb after $(rss_kb "$CL_PID") peak $(awk '/^VmHWM:/ { print $2 }' "/proc/$CL_PID/status")" >>"$d/rss"
	kill "$sampler" 2>/dev/null || true
	stop_cleanline
	stop_answer
	python3 "$here/rtpcheck.py" "$OUT" "$hold" "$rate"
}

# run_disconnect: the line hangs up after 1s; the caller keeps sending RTP
# for 500ms and sends an INFO after the call ended. Through cleanline the
# line must see none of it (sipload answer --strict exits 0); straight to
# the line it must see it (exit 1), or the detector proves nothing.
run_disconnect() {
	local rate=${DISC_RATE:-100} dur=${DISC_DURATION:-20s} d rc_cl late_cl rc_direct late_direct
	setup_redis
	build_cleanline "$OUT"
	late=(--rtp --late-rtp 500ms --late-info --hold 5s --answer-timeout 5s --rate "$rate" --duration "$dur")
	for via in cleanline direct; do
		d=$OUT/disconnect-$via
		mkdir -p "$d"
		start_answer "$d" --rtp --hangup-after 1s --strict
		local addr=$ANSWER_IP:$ANSWER_PORT
		if [ "$via" = cleanline ]; then
			start_cleanline "$d" "redis://127.0.0.1:$REDIS_PORT" "$ANSWER_IP:$ANSWER_PORT"
			addr=127.0.0.1:$CL_PORT
		fi
		echo "load before $(loadavg)" >"$OUT/disconnect-$via.load"
		echo "== disconnect via $via: $rate calls/s for $dur, load average before $(loadavg)" >&2
		nice -n "$NICE" "$SIPLOAD" call --target "$addr" "${late[@]}" --json >"$OUT/disconnect-$via.json" 2>"$OUT/disconnect-$via.err" ||
			die "sipload call failed: $(tail -3 "$OUT/disconnect-$via.err")"
		echo "load after $(loadavg)" >>"$OUT/disconnect-$via.load"
		[ "$via" = cleanline ] && stop_cleanline
		stop_answer
		if [ "$via" = cleanline ]; then rc_cl=$ANSWER_RC; else rc_direct=$ANSWER_RC; fi
	done
	late_cl=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["calls_with_late_traffic"])' "$OUT/disconnect-cleanline/answer.json")
	late_direct=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["calls_with_late_traffic"])' "$OUT/disconnect-direct/answer.json")
	python3 "$here/report.py" "$OUT" disconnect-cleanline disconnect-direct
	echo "through cleanline: answer --strict exit $rc_cl, $late_cl calls with late traffic; straight to the line: exit $rc_direct, $late_direct calls with late traffic"
	if [ "$rc_cl" = 0 ] && [ "$late_cl" = 0 ] && [ "$rc_direct" = 1 ] && [ "$late_direct" -gt 0 ]; then
		echo "clean disconnection under load: PASS"
	else
		echo "clean disconnection under load: FAIL"
		return 1
	fi
}

# rss_split PID: VmRSS and its anonymous and file-backed parts (the
# embedded store's file is memory-mapped: its pages count as RssFile).
rss_split() {
	awk '/^(VmRSS|RssAnon|RssFile):/ { printf "%s %s kB  ", $1, $2 }' "/proc/$1/status"
}

# run_store: the embedded store holding NUMBERS numbers: import time and peak
# RSS, file size, a check's peak RSS, and serve's RSS idle on that file
# against an empty one.
run_store() {
	local d=$OUT/store full empty
	mkdir -p "$d"
	build_cleanline "$OUT"
	blocked_numbers "$NUMBERS" "$d/numbers.txt"
	echo "== store: importing $NUMBERS numbers, load average $(loadavg)" >&2
	/usr/bin/time -f '%M %e' -o "$d/import.time" "$CLEANLINE" import "$d/numbers.txt" --store "file:$d/cl.db" >"$d/import.out" 2>&1 ||
		die "import failed: $(tail -3 "$d/import.out")"
	/usr/bin/time -f '%M %e' -o "$d/check.time" "$CLEANLINE" check +447400123456 --store "file:$d/cl.db" >"$d/check.out" 2>&1 || true
	start_cleanline "$d" "file:$d/cl.db" "$ANSWER_IP:9"
	sleep 2
	full=$(rss_split "$CL_PID")
	stop_cleanline
	start_cleanline "$d" "file:$d/empty.db" "$ANSWER_IP:9"
	sleep 2
	empty=$(rss_split "$CL_PID")
	stop_cleanline
	echo "import: $(tail -1 "$d/import.out"); peak RSS $(tail -1 "$d/import.time" | cut -d' ' -f1) kB in $(tail -1 "$d/import.time" | cut -d' ' -f2) s"
	echo "file: $(stat -c %s "$d/cl.db") bytes for $NUMBERS numbers ($(du -k "$d/cl.db" | cut -f1) kB on disk)"
	echo "check: $(head -1 "$d/check.out"); peak RSS $(tail -1 "$d/check.time" | cut -d' ' -f1) kB"
	echo "serve idle RSS on the $NUMBERS-number file: $full"
	echo "serve idle RSS on an empty file: $empty"
}

# run_profile RATE: where cleanline's CPU goes at RATE calls/s.
run_profile() {
	local rate=$1 d=$OUT/profile secs=${PROFILE_SECONDS:-20} caller
	[ -n "$rate" ] || die "usage: run.sh profile RATE"
	need perf "apt-get install -y linux-perf"
	mkdir -p "$d"
	setup_redis
	build_cleanline "$OUT"
	start_answer "$d"
	start_cleanline "$d" "redis://127.0.0.1:$REDIS_PORT" "$ANSWER_IP:$ANSWER_PORT"
	echo "== profile: $rate calls/s for ${secs}s, load average before $(loadavg)" >&2
	nice -n "$NICE" "$SIPLOAD" call --target "127.0.0.1:$CL_PORT" --rate "$rate" --duration "${secs}s" --hold "$HOLD" \
		--answer-timeout 5s "${blocklist[@]}" --json >"$d/call.json" 2>"$d/call.err" &
	caller=$!
	PIDS+=("$caller")
	sleep 1
	perf record -F 499 -g -p "$CL_PID" -o "$d/perf.data" -- sleep "$((secs - 2))" >"$d/perf.log" 2>&1
	wait "$caller" || true
	echo "== profile: load average after $(loadavg)" >&2
	stop_cleanline
	stop_answer
	perf report -i "$d/perf.data" --stdio --no-children --sort symbol --percent-limit 1 2>/dev/null | grep -v '^$' | grep -E '^ +[0-9]' >"$d/self.txt" || true
	perf report -i "$d/perf.data" --stdio --children --sort symbol --percent-limit 3 2>/dev/null | grep -E '^ +[0-9]' >"$d/children.txt" || true
	python3 "$here/report.py" "$d/.." profile/call 2>/dev/null || true
	echo "--- cleanline CPU, self (perf, $d/perf.data):"
	head -30 "$d/self.txt"
	echo "--- cleanline CPU, with callees:"
	head -40 "$d/children.txt"
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
transit)
	[ -n "${2:-}" ] || die "usage: run.sh transit RATE"
	STEPS=$2
	TRANSIT=1
	for ((r = 1; r <= ROUNDS; r++)); do
		run_direct "transit-direct-$r"
		run_kamailio "transit-kamailio-$r"
		run_cleanline "transit-cleanline-$r"
		runs+=("transit-direct-$r" "transit-kamailio-$r" "transit-cleanline-$r")
	done
	;;
all)
	# Everything issue 5 asks, in one invocation, ending with its targets
	# table: compare, transit at half cleanline's clean rate, RTP,
	# disconnection, the embedded store.
	for ((r = 1; r <= ROUNDS; r++)); do
		run_kamailio "kamailio-$r"
		run_cleanline "cleanline-$r"
		runs+=("kamailio-$r" "cleanline-$r")
	done
	python3 "$here/report.py" "$OUT" "${runs[@]}" >"$OUT/compare.txt"
	cat "$OUT/compare.txt"
	half=$(python3 "$here/targets.py" --half-rate "$OUT")
	echo "== transit at $half calls/s (half cleanline's median highest clean rate)" >&2
	STEPS=$half
	TRANSIT=1
	truns=()
	for ((r = 1; r <= ROUNDS; r++)); do
		run_direct "transit-direct-$r"
		run_kamailio "transit-kamailio-$r"
		run_cleanline "transit-cleanline-$r"
		truns+=("transit-direct-$r" "transit-kamailio-$r" "transit-cleanline-$r")
	done
	TRANSIT=0
	python3 "$here/report.py" "$OUT" "${truns[@]}" >"$OUT/transit.txt"
	cat "$OUT/transit.txt"
	NICE_SAVED=$NICE
	NICE=0
	run_rtp >"$OUT/rtp.txt"
	NICE=$NICE_SAVED
	cat "$OUT/rtp.txt"
	run_disconnect >"$OUT/disconnect.txt" || true
	cat "$OUT/disconnect.txt"
	run_store >"$OUT/store.txt"
	cat "$OUT/store.txt"
	python3 "$here/targets.py" "$OUT"
	echo "logs and JSON reports in $OUT" >&2
	exit
	;;
events)
	# Off and on alternate, and which goes first alternates too, so that a
	# drift in the machine's load falls on both alike.
	start_webhook "$OUT"
	for ((r = 1; r <= ROUNDS; r++)); do
		modes=(off on)
		[ $((r % 2)) = 0 ] && modes=(on off)
		for m in "${modes[@]}"; do
			if [ "$m" = on ]; then
				CL_EVENTS=1 CL_WEBHOOK=$HOOK_URL run_cleanline "events-$m-$r"
			else
				CL_EVENTS=0 CL_WEBHOOK= run_cleanline "events-$m-$r"
			fi
			runs+=("events-$m-$r")
		done
	done
	python3 "$here/events.py" "$OUT" "${runs[@]}"
	echo "logs and JSON reports in $OUT" >&2
	exit
	;;
rtp | disconnect | store)
	"run_$target"
	exit
	;;
profile)
	run_profile "${2:-}"
	exit
	;;
*)
	step target "$target"
	runs=(target)
	;;
esac
python3 "$here/report.py" "$OUT" "${runs[@]}"
echo "logs and JSON reports in $OUT" >&2
