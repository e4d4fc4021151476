#!/usr/bin/env bash
# Phase 2 on the bundled model: the activation store is the same for 1, 2 and 4
# ranks; a killed rank (fault injection, or kill -9 from outside) resumes to the
# same data; a rerun against another model or corpus is refused by name; f16
# storage; a full disk is an error naming the file and marks nothing complete;
# h5py reads the store and its rows equal the C forward pass.
. "$(dirname "$0")/lib.sh"
MPIRUN=${MPIEXEC:-mpiexec}
CMP=${TP_STORE_COMPARE:?}
SRC=${TP_SOURCE_DIR:?}
M=${TP_BUNDLED_MODEL:-$SRC/models/olmo2-tiny}
CORPUS=$SRC/data/corpus/heldout.jsonl
common=(--model "$M" --set data.corpus="$CORPUS" --num-samples 24 --set data.seq_len=64
        --set forward.batch_size=4 --set capture.hooks=hook_resid_post,mlp.hook_post,blocks.1.attn.hook_z)
cap() { local out=$1; shift; "$@" "$BIN" capture "${common[@]}" --out "$out"; }
same() {  # same NAME A B
  local o; o=$("$CMP" "$2" "$3" 2>&1)
  if [ $? -eq 0 ]; then passes=$((passes+1)); echo "ok   $1 ($o)"; else failures=$((failures+1)); echo "FAIL $1: $o"; fi
}

expect_ok "np1 capture" -- cap "$TMP/np1"
for np in 2 4; do
  expect_ok "np$np capture" -- cap "$TMP/np$np" timeout -s KILL 180 "$MPIRUN" -np $np
  same "np$np store equals np1" "$TMP/np1/activations.h5" "$TMP/np$np/activations.h5"
done

# Fault injection: rank 1 dies (SIGKILL) after 2 units; the rerun finishes the file.
TP_FAULT=capture.unit@2:1 cap "$TMP/fault" timeout -s KILL 180 "$MPIRUN" -np 2 >/dev/null 2>&1
if "$CMP" "$TMP/np1/activations.h5" "$TMP/fault/activations.h5" >/dev/null 2>&1; then
  failures=$((failures+1)); echo "FAIL the killed run already looks complete"
else passes=$((passes+1)); echo "ok   killed run left an incomplete store"; fi
out=$(cap "$TMP/fault" timeout -s KILL 180 "$MPIRUN" -np 2 2>&1)
if printf '%s' "$out" | grep -q "resuming"; then passes=$((passes+1)); echo "ok   rerun resumes"
else failures=$((failures+1)); echo "FAIL rerun did not resume: $out"; fi
same "resumed store equals an uninterrupted one" "$TMP/np1/activations.h5" "$TMP/fault/activations.h5"

# kill -9 from outside at some moment during the run, then resume on one rank.
cap "$TMP/kill" timeout -s KILL 180 "$MPIRUN" -np 2 >/dev/null 2>&1 &
pid=$!
for i in $(seq 1 100); do [ -f "$TMP/kill/activations.h5" ] && break; sleep 0.05; done
sleep 0.3
pkill -9 -f "transpolmo capture.*$TMP/kill" || true
wait $pid 2>/dev/null
expect_ok "resume after kill -9" -- cap "$TMP/kill"
same "store after kill -9 and resume equals an uninterrupted one" "$TMP/np1/activations.h5" "$TMP/kill/activations.h5"

# Another corpus (or model) into the same run directory is refused, naming it.
head -5 "$CORPUS" > "$TMP/other.jsonl"
expect_fail "rerun against another corpus" "corpus|activations.h5" -- \
  "$BIN" capture "${common[@]}" --set data.corpus="$TMP/other.jsonl" --out "$TMP/np1"
expect_fail "rerun with other capture points" "hooks|activations.h5" -- \
  "$BIN" capture "${common[@]}" --set capture.hooks=hook_resid_pre --out "$TMP/np1"
expect_fail "pattern cannot be stored" "hook_pattern" -- \
  "$BIN" capture "${common[@]}" --set capture.hooks=attn.hook_pattern --out "$TMP/pat"

# f16 storage: the same rows rounded (checked through h5py below).
expect_ok "f16 capture" -- "$BIN" capture "${common[@]}" --set capture.dtype=f16 --out "$TMP/f16"

# A full disk: writes fail with a message naming the store, nothing marked complete.
out=$( (trap '' XFSZ; ulimit -f 40960; "$BIN" capture "${common[@]}" --out "$TMP/full") 2>&1 >/dev/null)
rc=$?
if [ $rc -ne 0 ] && printf '%s' "$out" | grep -q "error:.*activations.h5"; then
  passes=$((passes+1)); echo "ok   full disk: $(printf '%s' "$out" | grep error: | head -1)"
else failures=$((failures+1)); echo "FAIL full disk (exit $rc): $out"; fi

# h5py: layout, attributes, and the first sequence's rows against `transpolmo forward`.
PY=/usr/bin/python3
if $PY -c "import h5py, numpy" 2>/dev/null; then
  first=$($PY -c "
import h5py, numpy as np
f = h5py.File('$TMP/np1/activations.h5', 'r'); pos = f['positions'][:]
n = int(np.argmax(pos[1:] == 0)) + 1
print(','.join(str(t) for t in f['tokens'][:n]))")
  mkdir -p "$TMP/dump"
  $PY -c "import numpy as np; np.save('$TMP/dump/first_seq.npy', np.array([[${first}]], dtype=np.int64))"
  hooks=blocks.0.hook_resid_post,blocks.3.mlp.hook_post,blocks.1.attn.hook_z
  expect_ok "forward dump of the first sequence" -- "$BIN" forward --model "$M" --ids-file "$TMP/dump/first_seq.npy" \
    --top 0 --dump "$hooks" --dump-dir "$TMP/dump" --out "$TMP/fw"
  expect_ok "h5py reads the f32 store" -- $PY "$(dirname "$0")/check_store.py" "$TMP/np1/activations.h5" "$TMP/dump" ${hooks//,/ }
  expect_ok "h5py reads the f16 store" -- $PY "$(dirname "$0")/check_store.py" "$TMP/f16/activations.h5" "$TMP/dump" ${hooks//,/ }
  expect_ok "f16 store = f32 store rounded" -- $PY "$(dirname "$0")/check_rounding.py" "$TMP/np1/activations.h5" "$TMP/f16/activations.h5" f16
  expect_ok "bf16 capture" -- "$BIN" capture "${common[@]}" --set capture.dtype=bf16 --out "$TMP/bf16"
  expect_ok "bf16 store = f32 store rounded" -- $PY "$(dirname "$0")/check_rounding.py" "$TMP/np1/activations.h5" "$TMP/bf16/activations.h5" bf16
  $PY -c "
import sys, h5py
try:
    f = h5py.File('$TMP/full/activations.h5', 'r')
except Exception:
    sys.exit(2)   # unreadable: nothing in it is marked complete either
sys.exit(1 if any(k in f and f[k].attrs.get('complete') == 1 for k in ['tokens', 'units_complete']) else 0)" 2>/dev/null
  rc=$?
  if [ $rc -eq 0 ] || [ $rc -eq 2 ]; then passes=$((passes+1)); echo "ok   full-disk store not marked complete ($rc)"
  else failures=$((failures+1)); echo "FAIL full-disk store marked complete"; fi
else
  failures=$((failures+1)); echo "FAIL /usr/bin/python3 with h5py and numpy is needed (tools/install-deps.sh installs python3-h5py)"
fi
finish
