# lib.sh — what the benchmark scripts share: their settings from the environment, and
# measuring a run while other people's work shares the machine. Source it right after
# setting ROOT and BENCH_NAME (for messages); `measure` also needs LOG, RES and LOCK
# (empty: no lock) and a function `measure_summary OUT` that prints one line about a
# run's output.

PY=${TP_REF_PY:-/opt/transpolmo-ref/bin/python}
DIR=${TP_BENCH_DIR:-/tmp/tp-bench}
BUILD=${TP_BUILD_DIR:-$ROOT/build}
MPIRUN=${MPIEXEC:-mpiexec}
QUIET_WAIT=${QUIET_WAIT:-600}
OTHERS_MAX=${OTHERS_MAX:-0.05}
RETRIES=${RETRIES:-3}
START_WAIT=${START_WAIT:-3600}
START_LOAD=""

loadavg() { cut -d' ' -f1 /proc/loadavg; }
lock() { [ -z "${LOCK:-}" ] || { exec 9> "$LOCK"; flock 9; }; }
unlock() { [ -z "${LOCK:-}" ] || flock -u 9; }

# Busy fraction of all CPUs over 2 s (from /proc/stat), waiting while it is >= 0.15
# (at most $QUIET_WAIT seconds); prints the last fraction.
wait_quiet() {
    local t0=$SECONDS busy a b c d e f g h A B C D E F G H
    while :; do
        read -r _ a b c d e f g h _ < /proc/stat
        sleep 2
        read -r _ A B C D E F G H _ < /proc/stat
        local tot=$(( (A+B+C+D+E+F+G+H) - (a+b+c+d+e+f+g+h) )) idle=$(( (D+E) - (d+e) ))
        busy=$(awk -v t=$tot -v i=$idle 'BEGIN { printf "%.2f", (t > 0 ? 1 - i / t : 0) }')
        if awk -v b="$busy" 'BEGIN { exit !(b < 0.15) }' || [ $((SECONDS - t0)) -ge "$QUIET_WAIT" ]; then
            echo "$busy"; return
        fi
    done
}

# run_measured OUT CMD...: CMD's output to OUT (+ .err); prints the share of the CPUs
# other processes used while it ran (all busy CPU time minus CMD's and its children's).
run_measured() {
    local out=$1; shift
    local a b c d e f g h A B C D E F G H hz ncpu
    hz=$(getconf CLK_TCK) ncpu=$(nproc)
    read -r _ a b c d e f g h _ < /proc/stat
    /usr/bin/time -f "%e %U %S" -o "$out.time" "$@" > "$out" 2> "$out.err" || {
        echo "$BENCH_NAME: failed: $* (see $out.err)" >&2; tail -5 "$out.err" >&2; unlock; exit 1; }
    read -r _ A B C D E F G H _ < /proc/stat
    local busy=$(( (A+B+C+F+G+H) - (a+b+c+f+g+h) ))
    awk -v busy="$busy" -v hz="$hz" -v n="$ncpu" '{ o = (busy / hz - $2 - $3) / (n * $1);
        printf "%.2f", (o < 0 ? 0 : o) }' "$out.time"
}

# measure NAME ROUND CMD...: locked, quiet, retried when others > OTHERS_MAX; the JSON
# lines of the kept try go to $RES with round, run, others, load and try added.
measure() {
    local name=$1 round=$2; shift 2
    local out=$LOG/$name-r$round.txt others la try
    for try in $(seq 0 "$RETRIES"); do
        lock
        wait_quiet >/dev/null
        la=$(loadavg)
        others=$(run_measured "$out" "$@")
        unlock
        awk -v o="$others" -v m="$OTHERS_MAX" 'BEGIN { exit !(o <= m) }' && break
        [ "$try" -lt "$RETRIES" ] && echo "  round $round $name: discarded (others $others > $OTHERS_MAX, load $la), again"
    done
    grep '^{' "$out" | jq -c --arg run "$name" --argjson r "$round" --argjson o "$others" --argjson la "$la" \
        --argjson t "$try" '. + {run: $run, round: $r, others: $o, load: $la, try: $t}' >> "$RES"
    printf '  round %-2s %-16s load %-5s others %-5s try %s  %s\n' "$round" "$name" "$la" "$others" "$try" \
        "$(measure_summary "$out")"
}

# With --start-load X: wait (at most $START_WAIT s) until the 1-minute load average is below X.
wait_start_load() {
    [ -n "$START_LOAD" ] || return 0
    local t0=$SECONDS
    while awk -v l="$(loadavg)" -v x="$START_LOAD" 'BEGIN { exit !(l >= x) }' && [ $((SECONDS - t0)) -lt "$START_WAIT" ]; do
        sleep 30
    done
    echo "# start: load average $(loadavg) after waiting $((SECONDS - t0)) s"
}
