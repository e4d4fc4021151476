#!/usr/bin/env bash
# Under MPI: 1, 2 and 4 ranks write the same architecture.json; a failure on one
# rank ends every rank with a message naming it, never a hang.
. "$(dirname "$0")/lib.sh"
MPIRUN=${MPIEXEC:-mpiexec}
model=$DATA/models/olmo2-gqa-f16-sharded

expect_ok "np1 inspect" -- "$BIN" inspect --model "$model" --out "$TMP/np1"
for np in 2 4; do
  expect_ok "np$np inspect" -- timeout -s KILL 120 "$MPIRUN" -np $np "$BIN" inspect --model "$model" --out "$TMP/np$np"
  if cmp -s "$TMP/np1/results/architecture.json" "$TMP/np$np/results/architecture.json"; then
    passes=$((passes + 1)); echo "ok   np$np architecture.json identical to np1"
  else
    failures=$((failures + 1)); echo "FAIL np$np architecture.json differs from np1"
  fi
done

# One failing rank: the job must end (timeout would kill a hang: exit 137) with the
# rank named.
out=$(TP_FAULT=inspect.start:1/fail timeout -s KILL 60 "$MPIRUN" -np 2 "$BIN" inspect --model "$model" --out "$TMP/fault" 2>&1)
rc=$?
if [ $rc -ne 0 ] && [ $rc -ne 137 ] && printf '%s' "$out" | grep -q '\[rank 1\] error: injected fault'; then
  passes=$((passes + 1)); echo "ok   failure on rank 1 ends the job (exit $rc)"
else
  failures=$((failures + 1)); echo "FAIL fault on rank 1: exit $rc"; printf '%s\n' "$out"
fi
finish
