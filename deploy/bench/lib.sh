# Shared helpers for the benchmark and check scripts (sourced, not run).
# Everything listens on loopback; every process started is killed by PID on
# exit.

PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	PIDS=()
}
trap cleanup EXIT INT TERM

die() { echo "$(basename "$0"): $*" >&2; exit 1; }

need() {
	command -v "$1" >/dev/null 2>&1 || die "$1 not found: $2"
}

# free_port prints a loopback port nobody listens on (TCP and UDP).
free_port() {
	python3 - <<'PY'
import socket
while True:
    t = socket.socket(); t.bind(("127.0.0.1", 0)); p = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", p))
    except OSError:
        t.close(); continue
    u.close(); t.close(); print(p); break
PY
}

# wait_line FILE PATTERN SECONDS: wait until a log line shows a process is ready.
wait_line() {
	local i
	for ((i = 0; i < $3 * 10; i++)); do
		grep -q -- "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "--- $1:" >&2; tail -20 "$1" >&2
	die "timed out waiting for '$2' in $1"
}

# start_redis DIR: a throwaway redis-server; sets REDIS_PORT.
start_redis() {
	need redis-server "apt-get install -y redis-server"
	REDIS_PORT=$(free_port)
	redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
		--protected-mode yes --dir "$1" >"$1/redis.log" 2>&1 &
	PIDS+=($!)
	local i
	for ((i = 0; i < 100; i++)); do
		redis-cli -p "$REDIS_PORT" PING 2>/dev/null | grep -q PONG && return 0
		sleep 0.1
	done
	die "redis-server did not start: $(tail -5 "$1/redis.log")"
}

# start_answer DIR ARGS...: sipload answer on a free port; sets ANSWER_PORT.
start_answer() {
	local dir=$1
	shift
	ANSWER_PORT=$(free_port)
	"$SIPLOAD" answer --listen "127.0.0.1:$ANSWER_PORT" --quiet "$@" >"$dir/answer.out" 2>"$dir/answer.err" &
	PIDS+=($!)
	ANSWER_PID=$!
	wait_line "$dir/answer.err" "listening on" 10
}

# stop_answer: SIGINT makes sipload answer print its report and exit.
stop_answer() {
	kill -INT "$ANSWER_PID" 2>/dev/null || true
	wait "$ANSWER_PID" 2>/dev/null || true
}

# start_kamailio DIR CFG TARGET_HOSTPORT: Kamailio in the foreground on a
# free port; sets KAM_PORT.
start_kamailio() {
	need kamailio "apt-get install -y kamailio kamailio-redis-modules"
	[ -e /usr/lib/x86_64-linux-gnu/kamailio/modules/ndb_redis.so ] || ls /usr/lib/*/kamailio/modules/ndb_redis.so >/dev/null 2>&1 ||
		die "ndb_redis module not found: apt-get install -y kamailio-redis-modules"
	KAM_PORT=$(free_port)
	kamailio -DD -E -f "$2" -l "udp:127.0.0.1:$KAM_PORT" -n "${KAM_CHILDREN:-4}" -m 512 -M 16 \
		-Y "$1" -A "TARGET=\"sip:$3\"" -A "REDIS=\"name=cl;addr=127.0.0.1;port=$REDIS_PORT\"" \
		>"$1/kamailio.log" 2>&1 &
	PIDS+=($!)
	# Ready when it answers OPTIONS.
	"$SIPLOAD" call --target "127.0.0.1:$KAM_PORT" --rate 1 --duration 1ms --probe-timeout 10s --quiet >/dev/null 2>"$1/probe.err" ||
		die "kamailio did not start: $(cat "$1/probe.err"; tail -20 "$1/kamailio.log")"
}

# build_sipload: a fresh binary from this checkout; sets SIPLOAD.
build_sipload() {
	local root
	root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
	SIPLOAD=${SIPLOAD:-$1/sipload}
	(cd "$root" && go build -o "$SIPLOAD" ./cmd/sipload) || die "go build ./cmd/sipload failed"
}
