# Sourced by the bench scripts: they start and stop only their own processes, by PID.
#   PIDS+=($!)            after starting a process; all are stopped on exit
#   stop_pid PID          TERM, then KILL after STOP_TRIES tenths of a second (default 50)
#   wait_port PORT        until 127.0.0.1:PORT accepts, up to WAIT_TRIES tenths (default 100)
PIDS=()
stop_pid() {
    local p=$1 i
    kill -0 "$p" 2>/dev/null || return 0
    kill -TERM "$p" 2>/dev/null
    for i in $(seq "${STOP_TRIES:-50}"); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
    # `|| true`: a process ended by the signal is not a failure of a `set -e` caller (pgo.sh).
    wait "$p" 2>/dev/null || true
    return 0
}
# A throwaway self-signed P-256 certificate for CN=localhost, valid 2 days:  self_signed_cert KEY CERT
self_signed_cert() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=localhost -keyout "$1" -out "$2" >/dev/null 2>&1
}
# The gRPC unary load shape of run.sh (10 connections x 5 streams, the message in $BODY) for the
# single-proxy scripts:  grpc_h2load [h2load args...] URL
grpc_h2load() { h2load -t 1 -c 10 -m 5 -d "$BODY" -H 'content-type: application/grpc' -H 'te: trailers' "$@"; }
# 0 when a gRPC call with :authority HOST reaches the backend through 127.0.0.1:PORT: its echo has a
# body, the proxy's no-route answer (trailers-only) none:  grpc_reaches_backend PORT HOST BODY_FILE
grpc_reaches_backend() {
    [ "$(curl -s --http2-prior-knowledge -o /dev/null -w '%{size_download}' -H "host: $2" \
        -H 'content-type: application/grpc' -H 'te: trailers' --data-binary @"$3" \
        "http://127.0.0.1:$1/bench.Echo/Echo")" -gt 0 ]
}
# Scale scripts: wall clock in ms; a /proc/PID/status field in KiB (kib PID VmRSS); KiB as MiB;
# a line to stdout and to $RESULTS.
now_ms() { date +%s%3N; }
kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
say() { echo "$*" | tee -a "$RESULTS"; }
cleanup() { local p; for p in "${PIDS[@]}"; do stop_pid "$p"; done; }
trap cleanup EXIT
trap 'exit 130' INT TERM
wait_port() {
    local i
    for i in $(seq "${WAIT_TRIES:-100}"); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "port $1 never opened" >&2; return 1
}
