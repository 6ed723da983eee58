# Sourced by run.sh: the `idle` test (TESTS="idle ..."). For each target it holds IDLE_N idle HTTP/2
# connections, first h2c then TLS (ALPN h2), opened by tools/idle_conns.py from IDLE_SOURCES
# loopback addresses (preface + SETTINGS exchanged, then silent), and records the proxy's RSS growth
# (VmRSS summed over its processes) per connection. While they are held, a new connection must still
# be served: IDLE_CHECK gRPC calls (bench-check) on a new connection, whose time is recorded too.
# The two kinds are held one after the other, so the proxy needs IDLE_N (not 2 x IDLE_N) descriptors
# for them; the script raises the fd limit and the peers' connection caps (MAXCONN in the configs).
#   IDLE_N=20000 IDLE_SOURCES=8 IDLE_CHECK=200 IDLE_SETTLE=2 (seconds before each RSS reading)
IDLE_N=${IDLE_N:-20000}; IDLE_SOURCES=${IDLE_SOURCES:-8}; IDLE_CHECK=${IDLE_CHECK:-200}; IDLE_SETTLE=${IDLE_SETTLE:-2}
IDLE_TSV=$RUN/idle.tsv
printf 'target\tround\tkind\tn\topen\tfailed\trss_before_kb\trss_after_kb\tkib_per_conn\tcheck\tcheck_ms\n' > "$IDLE_TSV"
if has_test idle; then
    # Both the proxy and the load tool hold IDLE_N sockets, plus the proxy's upstream and files.
    ulimit -Hn $((IDLE_N * 2 + 65536)) 2>/dev/null; ulimit -n $((IDLE_N * 2 + 65536)) 2>/dev/null || ulimit -n "$(ulimit -Hn)"
    if [ "$(ulimit -n)" != unlimited ] && [ $((IDLE_N + 1000)) -gt "$(ulimit -n)" ]; then
        # A container may cap the hard limit (no CAP_SYS_RESOURCE): hold what fits.
        echo "  (fd limit $(ulimit -n) cannot be raised: IDLE_N $IDLE_N -> $(( $(ulimit -n) - 1000 )))"
        IDLE_N=$(( $(ulimit -n) - 1000 ))
    fi
    MAXCONN=$((IDLE_N + 1000))
    export SLUICE_MAX_CONNECTIONS_PER_LISTENER=$MAXCONN SLUICE_MAX_CONNECTIONS=$((MAXCONN * 2))
fi

rss_kb() {  # VmRSS summed over the process and its children
    local p t=0 v
    for p in $(tree_pids "$1"); do
        v=$(awk '/^VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null)
        t=$((t + ${v:-0}))
    done
    echo $t
}

# idle_kind TARGET ROUND KIND(h2c|tls) ADDR
idle_kind() {
    local target=$1 round=$2 kind=$3 addr=$4 ready=$RUN/idle-ready tls=() before after open failed secs pid
    local check=fail t0 t1 i
    [ "$kind" = tls ] && tls=(--tls)
    rm -f "$ready"
    sleep "$IDLE_SETTLE"; before=$(rss_kb "$PROXY_PID")
    "${SIDE_CPU[@]}" python3 tools/idle_conns.py "$addr" "$IDLE_N" "${tls[@]}" --sources "$IDLE_SOURCES" \
        --ready "$ready" 2>>"$RUN/idle-$target-$kind.log" &
    pid=$!; PIDS+=("$pid")
    for i in $(seq 6000); do [ -s "$ready" ] && break; kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    read -r open failed secs < <(cat "$ready" 2>/dev/null || echo "0 $IDLE_N NA")
    sleep "$IDLE_SETTLE"; after=$(rss_kb "$PROXY_PID")
    t0=$(date +%s%N)
    $BIN/bench-check grpc "$GRPC_ADDR" "$IDLE_CHECK" >>"$RUN/idle-$target-$kind.log" 2>&1 && check=ok
    t1=$(date +%s%N)
    stop_pid "$pid"
    local per
    per=$(awk -v a="$after" -v b="$before" -v n="$open" 'BEGIN { if (n > 0) printf "%.1f", (a - b) / n; else print "NA" }')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "$round" "$kind" "$IDLE_N" "$open" "$failed" \
        "$before" "$after" "$per" "$check" $(( (t1 - t0) / 1000000 )) >> "$IDLE_TSV"
    printf '  %-8s r%s idle-%-3s %6s open (%s failed, %ss)  RSS %s -> %s KiB  %s KiB/conn  %s gRPC calls on a new connection: %s (%s ms)\n' \
        "$target" "$round" "$kind" "$open" "$failed" "$secs" "$before" "$after" "$per" "$IDLE_CHECK" "$check" $(( (t1 - t0) / 1000000 ))
}

# bench_idle TARGET ROUND H2C_ADDR TLS_ADDR (empty: no TLS phase)
bench_idle() {
    idle_kind "$1" "$2" h2c "$3"
    [ -n "$4" ] && idle_kind "$1" "$2" tls "$4"
    return 0
}
