#!/usr/bin/env bash
# What a user meets first: help per command, "did you mean" for commands and options,
# messages that name the file and the problem (the source location only with
# --verbose), exit 2 for configuration errors, progress lines when stderr is not a
# terminal (mpirun, sbatch).
. "$(dirname "$0")/lib.sh"
SRC=${TP_SOURCE_DIR:?}
MODEL=$SRC/models/olmo2-tiny

check() {   # check NAME CONDITION...
  local name=$1; shift
  if "$@"; then passes=$((passes + 1)); echo "ok   $name"; else failures=$((failures + 1)); echo "FAIL $name"; fi
}
rc_of() { "$@" >/dev/null 2>&1; echo $?; }

expect_fail "unknown command suggests the nearest" "unknown command 'inspct'|did you mean 'inspect'" rc=2 -- "$BIN" inspct
expect_fail "unknown option suggests the nearest" "unknown option '--layer'|did you mean '--layers'" -- \
  "$BIN" inspect --layer 1 --model "$MODEL" --out "$TMP/r"
expect_fail "a command's own option is suggested" "did you mean '--per-token-out'" -- \
  "$BIN" eval --per-token-ot x.npy --model "$MODEL" --out "$TMP/r"
check "unknown command exits 2" test "$(rc_of "$BIN" inspct)" -eq 2
check "a missing config file exits 2" test "$(rc_of "$BIN" run --config "$TMP/none.yaml")" -eq 2
expect_fail "a missing config file is named" "$TMP/none.yaml|No such file" rc=2 -- "$BIN" run --config "$TMP/none.yaml"

# Messages name the file, not the source; --verbose adds the source location.
out=$("$BIN" inspect --model "$TMP/nomodel" --out "$TMP/r" 2>&1 | grep 'error:')
check "message names the file and the problem ($out)" test -n "$(printf '%s' "$out" | grep -F "$TMP/nomodel/config.json")"
check "message has no source location" test -z "$(printf '%s' "$out" | grep -E '\(src/|\.c:[0-9]')"
out=$("$BIN" inspect --model "$TMP/nomodel" --out "$TMP/r" --verbose 2>&1 | grep 'error:')
check "--verbose adds where it was raised ($out)" test -n "$(printf '%s' "$out" | grep -E '\(at src/[a-z_/]+\.c:[0-9]+\)$')"

for c in inspect capture geometry sae circuits forward tokenize eval generate features config phases run; do
  out=$("$BIN" "$c" -h 2>&1); rc=$?
  check "$c -h prints its usage" test $rc -eq 0 -a -n "$(printf '%s' "$out" | grep "^usage: transpolmo $c")"
done

# Progress when stderr is a file (as under mpirun): lines with done/total, rate, ETA.
"$BIN" inspect --model "$MODEL" --out "$TMP/p" --set log.progress_interval=0.001 2> "$TMP/progress.log" >/dev/null
check "progress lines when stderr is not a terminal" \
  test -n "$(grep -E '^inspect: [0-9]+/4 layers \([0-9.]+%\), [0-9.]+ layers/s, ETA' "$TMP/progress.log")"
"$BIN" inspect --model "$MODEL" --out "$TMP/q" --set log.progress=never 2> "$TMP/quiet.log" >/dev/null
check "log.progress=never prints none" test -z "$(grep -E '^inspect: [0-9]+/' "$TMP/quiet.log")"
finish
