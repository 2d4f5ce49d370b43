#!/usr/bin/env bash
# Quick check that Debian's SIPp (sip-tester) runs the operator scenarios:
# uac_pool.xml against `sipload answer` (one caller declined with 603 by
# the answerer's --decline, as a screening peer would), and `sipload call`
# against uas_line.xml. Loopback only; everything started is stopped.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../bench/lib.sh"
need sipp "apt-get install -y sip-tester"
dir=$(mktemp -d)
trap 'cleanup; rm -rf "$dir"' EXIT
build_sipload "$dir"

# 1. SIPp caller with the number pool -> sipload answer.
echo "+447700900001" >"$dir/decline.txt"
start_answer "$dir" --decline "$dir/decline.txt"
sipp -sf "$here/uac_pool.xml" -inf "$here/callers.csv" -i 127.0.0.1 -p 0 -s line \
	-r 20 -m 40 -d 100 -timeout 20s -timeout_error -nostdin \
	-trace_stat -stf "$dir/uac.csv" "127.0.0.1:$ANSWER_PORT" >"$dir/sipp-uac.out" 2>&1 || {
	tail -20 "$dir/sipp-uac.out"
	die "sipp uac_pool.xml against sipload answer failed"
}
stop_answer
grep -E "^(invites|answered|declined)" "$dir/answer.out" | tr -s ' ' | paste -sd ' ' | sed 's/^/sipp uac -> sipload answer: /'
grep -q "^declined (603) *10$" "$dir/answer.out" && grep -q "^answered *30$" "$dir/answer.out" ||
	die "unexpected answer report: $(cat "$dir/answer.out")"

# 2. sipload call -> SIPp answering line.
port=$(free_port)
sipp -sf "$here/uas_line.xml" -i 127.0.0.1 -p "$port" -nostdin >"$dir/sipp-uas.out" 2>&1 &
PIDS+=($!)
"$SIPLOAD" call --target "127.0.0.1:$port" --rate 20 --duration 1s --hold 100ms --quiet \
	--probe-timeout 0 --fail-above 0 >"$dir/call.out" || { cat "$dir/call.out"; die "sipload call against sipp uas_line.xml had failures"; }
echo "sipload call -> sipp uas: $(awk 'NR==2{print "placed " $3 ", answered " $4 ", pdd p99 " $14}' "$dir/call.out")"
echo "sipp check: OK"
