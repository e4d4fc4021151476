#!/usr/bin/env bash
# Run directory integrity: a refused command rewrites neither config.yaml nor
# versions.json and leaves no empty folders; each phase records the config and
# versions it ran with, with the true rank count.
. "$(dirname "$0")/lib.sh"
SRC=${TP_SOURCE_DIR:?}
MPIRUN=${MPIEXEC:-mpiexec}
small=(--model "$SRC/models/olmo2-tiny" --set data.corpus="$SRC/data/corpus/heldout.jsonl" --set data.seq_len=32)

check() {   # check NAME CONDITION...
  local name=$1; shift
  if "$@"; then passes=$((passes + 1)); echo "ok   $name"; else failures=$((failures + 1)); echo "FAIL $name"; fi
}

r=$TMP/run
expect_ok "np 2 capture" -- timeout -s KILL 120 "$MPIRUN" -np 2 "$BIN" capture "${small[@]}" --num-samples 8 --out "$r"
for f in config.yaml versions.json .phases/capture.done .phases/capture.config.yaml .phases/capture.versions.json; do
  check "capture wrote $f" test -s "$r/$f"
done
check "the phase's versions say the 2 ranks it ran with" \
  test "$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ranks"])' "$r/.phases/capture.versions.json")" = 2
check "the phase's config is the one it ran with" test -n "$(grep -E '^  num_samples: 8 ' "$r/.phases/capture.config.yaml")"
cp -r "$r" "$TMP/before"

# Another sample against the same store: refused, and nothing of the run changes.
expect_fail "a store made with another sample is refused" "activations.h5" rc=2 -- \
  "$BIN" capture "${small[@]}" --num-samples 4 --out "$r"
for f in config.yaml versions.json .phases/capture.done .phases/capture.config.yaml .phases/capture.versions.json; do
  check "refused command left $f as it was" cmp -s "$r/$f" "$TMP/before/$f"
done

# A command that fails before writing anything leaves no folder behind.
expect_fail "missing corpus" "corpus" rc=1 -- "$BIN" capture "${small[@]}" --set data.corpus="$TMP/none" --out "$TMP/new/deep/run"
check "no empty run folders left" test ! -e "$TMP/new"
# Threads per rank from the CPUs the rank may use, shared on a node: two unbound
# ranks on this machine never take more threads together than it has CPUs, a lone
# unbound rank takes them all (OPENBLAS_NUM_THREADS, which the tests set, unset here).
ncpu=$(nproc)
threads_of() { /usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["blas_threads"])' "$1"; }
env -u OPENBLAS_NUM_THREADS timeout -s KILL 120 "$MPIRUN" --bind-to none -np 2 "$BIN" inspect "${small[@]}" \
  --out "$TMP/t2" >/dev/null 2>&1
t2=$(threads_of "$TMP/t2/.phases/inspect.versions.json")
check "2 unbound ranks take $t2 thread(s) each on $ncpu CPUs" test $((2 * t2)) -le "$ncpu" -a "$t2" -ge 1
env -u OPENBLAS_NUM_THREADS timeout -s KILL 120 "$MPIRUN" --bind-to none -np 1 "$BIN" inspect "${small[@]}" \
  --out "$TMP/t1" >/dev/null 2>&1
check "a lone unbound rank takes all $ncpu CPUs" test "$(threads_of "$TMP/t1/.phases/inspect.versions.json")" = "$ncpu"
# A phase rerun with another configuration that dies once its outputs have started to
# change leaves no marker: the old one would call the half-rewritten outputs complete
# (for the configuration it names). Refused before writing, the marker stays.
"$BIN" inspect "${small[@]}" --out "$TMP/mk" >/dev/null 2>&1
cp "$TMP/mk/.phases/inspect.done" "$TMP/mk.done"
"$BIN" inspect "${small[@]}" --model "$TMP/none" --out "$TMP/mk" >/dev/null 2>&1
check "a refused rerun leaves the marker" cmp -s "$TMP/mk/.phases/inspect.done" "$TMP/mk.done"
TP_FAULT=inspect.outputs "$BIN" inspect "${small[@]}" --set inspect.spectra=false --out "$TMP/mk" >/dev/null 2>&1
check "a rerun killed after writing leaves no marker" test ! -e "$TMP/mk/.phases/inspect.done"
t=$(threads_of "$TMP/run/.phases/capture.versions.json")
check "OPENBLAS_NUM_THREADS is honoured ($t)" test "$t" = "${OPENBLAS_NUM_THREADS:-1}"
finish
