#!/usr/bin/env bash
# Phase 3 on the bundled model: geometry results are the same for 1, 2 and 4 ranks
# (and with the svd method); /pca/<hook>/ and the norm statistics match NumPy on
# the rows h5py reads from the store; bad input (no store, a capture point that was
# not captured, an incomplete dataset, more components than rows, a bad key) is one
# error line naming the problem and leaves the earlier results intact.
. "$(dirname "$0")/lib.sh"
MPIRUN=${MPIEXEC:-mpiexec}
SRC=${TP_SOURCE_DIR:?}
M=${TP_BUNDLED_MODEL:-$SRC/models/olmo2-tiny}
CORPUS=$SRC/data/corpus/heldout.jsonl
PY=/usr/bin/python3
CHECK="$(dirname "$0")/check_geometry.py"
common=(--model "$M" --set data.corpus="$CORPUS" --num-samples 24 --set data.seq_len=64
        --set forward.batch_size=4 --set capture.hooks=hook_resid_post,hook_mlp_out --layers 1,3
        --set geometry.id.sample=300 --set geometry.local.sample=80 --set geometry.kmeans.k=6
        --set geometry.kmeans.top_tokens=4)
geo() { local out=$1; shift; "$BIN" geometry "${common[@]}" --out "$out" "$@"; }
geo_np() { local np=$1 out=$2; shift 2; timeout -s KILL 240 "$MPIRUN" -np "$np" "$BIN" geometry "${common[@]}" --out "$out" "$@"; }
J=results/geometric_analysis.json

expect_ok "capture" -- "$BIN" capture "${common[@]}" --out "$TMP/r"
expect_ok "np1 geometry" -- geo "$TMP/r"
cp "$TMP/r/$J" "$TMP/np1.json"
if $PY -c "import h5py, numpy" 2>/dev/null; then
  expect_ok "PCA, norms and cluster tokens match NumPy (h5py)" -- $PY "$CHECK" "$TMP/r/activations.h5" "$TMP/r/$J"
  for np in 2 4; do
    expect_ok "np$np geometry" -- geo_np $np "$TMP/r"
    expect_ok "np$np results equal np1's" -- $PY "$CHECK" --same "$TMP/np1.json" "$TMP/r/$J"
  done
  expect_ok "svd method" -- geo_np 2 "$TMP/r" --set geometry.pca.method=svd
  expect_ok "svd: /pca matches NumPy" -- $PY "$CHECK" "$TMP/r/activations.h5" "$TMP/r/$J"
  expect_ok "f32 Gram products" -- geo_np 2 "$TMP/r" --set geometry.pca.gram=f32
  expect_ok "f32: /pca matches NumPy (f32 tolerances)" -- $PY "$CHECK" "$TMP/r/activations.h5" "$TMP/r/$J"
  expect_ok "a sample of rows in memory" -- geo "$TMP/r" --set geometry.max_rows=700
  rows=$($PY -c "import json; print(json.load(open('$TMP/r/$J'))['rows_in_memory'])")
  if [ "$rows" = 700 ]; then passes=$((passes+1)); echo "ok   geometry.max_rows holds 700 rows"
  else failures=$((failures+1)); echo "FAIL geometry.max_rows: $rows rows in memory"; fi
  expect_ok "the sample's PCA (all rows, cov) still matches NumPy" -- $PY "$CHECK" "$TMP/r/activations.h5" "$TMP/r/$J"
  expect_ok "np1 geometry again" -- geo "$TMP/r"
else
  failures=$((failures+1)); echo "FAIL /usr/bin/python3 with h5py and numpy is needed (tools/install-deps.sh installs python3-h5py)"
fi

# Bad input: one error line each, earlier results untouched.
cp "$TMP/r/$J" "$TMP/before.json"
expect_fail "no store" "activations.h5|does not exist|capture" rc=1 -- geo "$TMP/none"
expect_fail "hook not captured" "geometry.hooks|hook_resid_pre|not captured" -- geo "$TMP/r" --set geometry.hooks=hook_resid_pre
expect_fail "layer not captured" "blocks.0.hook_resid_post|not captured" -- geo "$TMP/r" --set geometry.hooks=blocks.0.hook_resid_post
expect_fail "more components than columns" "geometry.pca.components|100000|only 256 columns" -- geo "$TMP/r" --set geometry.pca.components=100000
expect_fail "bad method" "geometry.pca.method|qr" -- geo "$TMP/r" --set geometry.pca.method=qr
expect_fail "bad Gram precision" "geometry.pca.gram|f16" -- geo "$TMP/r" --set geometry.pca.gram=f16
expect_fail "k-means k out of range" "geometry.kmeans.k" -- geo "$TMP/r" --set geometry.kmeans.k=1
expect_ok "a one-document capture" -- "$BIN" capture "${common[@]}" --num-samples 1 --set data.seq_len=16 --out "$TMP/tiny"
expect_fail "fewer rows than components" "geometry.pca.components|64|only 18 unmasked rows" -- geo "$TMP/tiny"
if cmp -s "$TMP/before.json" "$TMP/r/$J"; then passes=$((passes+1)); echo "ok   failed runs left the results intact"
else failures=$((failures+1)); echo "FAIL a failed run changed $J"; fi
if $PY -c "import h5py" 2>/dev/null; then
  cp -r "$TMP/r" "$TMP/inc"
  $PY -c "import h5py; h5py.File('$TMP/inc/activations.h5', 'r+')['acts/blocks.3.hook_mlp_out'].attrs['complete'] = 0"
  expect_fail "incomplete dataset" "blocks.3.hook_mlp_out|not marked complete|capture" rc=1 -- geo "$TMP/inc"
fi

# `run` includes the phase and skips it once complete.
expect_ok "run (inspect, capture, geometry)" -- "$BIN" run "${common[@]}" --out "$TMP/run"
out=$("$BIN" run "${common[@]}" --out "$TMP/run" 2>&1)
if printf '%s' "$out" | grep -q "phase geometry: complete, skipped"; then passes=$((passes+1)); echo "ok   run skips a complete geometry phase"
else failures=$((failures+1)); echo "FAIL run did not skip geometry: $out"; fi
out=$("$BIN" run "${common[@]}" --set geometry.kmeans.k=5 --out "$TMP/run" 2>&1)
if printf '%s' "$out" | grep -q "phase capture: complete, skipped" && printf '%s' "$out" | grep -q "phase geometry: done"; then
  passes=$((passes+1)); echo "ok   a geometry key change reruns geometry only"
else failures=$((failures+1)); echo "FAIL geometry key change: $out"; fi
finish
