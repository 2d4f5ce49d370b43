#!/usr/bin/env bash
# Functional check of deploy/kamailio/kamailio.cfg (bench-only, not part of
# `go test`): Kamailio 5.6 with ndb_redis on a free loopback port, a real
# redis-server holding one confirmed, one reported entry in CleanLine's key
# layout, and `sipload answer` as the line. Blocked callers must get 603
# from Kamailio; everyone else must reach the line and be answered.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../bench/lib.sh"
dir=$(mktemp -d)
trap 'cleanup; rm -rf "$dir"' EXIT

build_sipload "$dir"
start_redis "$dir"
now=$(date +%s000)
redis-cli -p "$REDIS_PORT" SET 'cl:{+447700900001}:e' "$now|3|c|$now|4|testcheck" >/dev/null
redis-cli -p "$REDIS_PORT" SET 'cl:{+447700900002}:e' "$now|1|r|$now|4|testcheck" >/dev/null
start_answer "$dir"
start_kamailio "$dir" "$here/kamailio.cfg" "127.0.0.1:$ANSWER_PORT"

echo "+447700900001" >"$dir/blocked.txt"
printf '+447700900002\n+447700900003\n' >"$dir/callers.txt"
"$SIPLOAD" call --target "127.0.0.1:$KAM_PORT" --rate 20 --duration 1s --hold 100ms --quiet --json \
	--numbers "$dir/callers.txt" --blocklist "$dir/blocked.txt" --blocked-fraction 0.5 >"$dir/call.json"
stop_answer
python3 - "$dir/call.json" "$dir/answer.out" <<'PY'
import json, sys, re
s = json.load(open(sys.argv[1]))["steps"][0]
ans = open(sys.argv[2]).read()
invites = int(re.search(r"^invites\s+(\d+)", ans, re.M).group(1))
ok = (s["attempted"] == 20 and s["blocked_callers_drawn"] > 0
      and s["declined"] == s["declined_blocked_callers"] == s["blocked_callers_drawn"]
      and s["answered"] == 20 - s["blocked_callers_drawn"]
      and s["failed"] + s["timed_out"] + s["errors"] + s["hangup_failed"] == 0
      and invites == s["answered"])
print("kamailio check: placed %d, blocked %d -> 603 %d, answered %d, line saw %d INVITEs: %s" % (
    s["attempted"], s["blocked_callers_drawn"], s["declined"], s["answered"], invites, "OK" if ok else "FAIL"))
sys.exit(0 if ok else 1)
PY
