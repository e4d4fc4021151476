#!/usr/bin/env bash
# The SAE phase's checkpoint (checkpoints/sae/checkpoint.json) is read back, so it is
# input like any other: a position or record that does not fit the run (batch -5,
# batch 2^40, window 5 of 1, a step that is not the position's, an unknown hook, a
# curve that is not an array, a metric that is not a number, not JSON at all) is
# never resumed. One warning line names the file and the field, training starts
# over, and the run finishes (exit 0) with its summary.
. "$(dirname "$0")/lib.sh"
SRC=${TP_SOURCE_DIR:?}
PY=/usr/bin/python3
common=(--model "${TP_BUNDLED_MODEL:-$SRC/models/olmo2-tiny}" --set data.corpus="$SRC/data/corpus/heldout.jsonl" --num-samples 16
        --set data.seq_len=32 --set forward.batch_size=4 --set capture.hooks=hook_resid_post --layers 1
        --set sae.num_epochs=2 --set sae.batch_size=64 --set sae.chunk_rows=32 --set sae.window_chunks=4
        --set sae.eval_fraction=0.1 --set sae.checkpoint_every=2 --set sae.hidden_dim=64 --set sae.k=4
        --set sae.aux_k=8 --set sae.eval.num_samples=0)
expect_ok "capture" -- "$BIN" capture "${common[@]}" --out "$TMP/r"
[ -f "$TMP/r/activations.h5" ] || finish
# Killed after 3 steps: a checkpoint at step 2, in the middle of training.
TP_FAULT=sae.step@3 "$BIN" sae "${common[@]}" --out "$TMP/r" >/dev/null 2>&1
ck=$TMP/r/checkpoints/sae/checkpoint.json
if [ -f "$ck" ] && [ ! -f "$TMP/r/results/sae_summary.json" ]; then passes=$((passes+1)); echo "ok   killed run left a checkpoint"
else failures=$((failures+1)); echo "FAIL killed run: no checkpoint or finished"; fi

# expect_refused NAME FIELD PYTHON-EDIT: edits a copy's checkpoint.json (d = the JSON,
# or raw text when the edit is a string), reruns, wants one warning naming the file
# and the field, a fresh start, exit 0 and a summary.
expect_refused() {
  local name=$1 field=$2 edit=$3 run=$TMP/$1
  rm -rf "$run"; cp -r "$TMP/r" "$run"
  $PY - "$run/checkpoints/sae/checkpoint.json" "$edit" <<'PY'
import json, sys
p, edit = sys.argv[1], sys.argv[2]
if edit.startswith("raw:"):
    open(p, "w").write(edit[4:]); sys.exit(0)
d = json.load(open(p)); exec(edit); json.dump(d, open(p, "w"))
PY
  local out rc
  out=$("$BIN" sae "${common[@]}" --out "$run" 2>&1); rc=$?
  local warn; warn=$(printf '%s\n' "$out" | grep 'warning:.*checkpoint')
  local ok=1
  [ $rc -eq 0 ] || { ok=0; echo "FAIL $name: exit $rc"; printf '%s\n' "$out" | tail -3; }
  [ "$(printf '%s' "$warn" | grep -c '')" -eq 1 ] || { ok=0; echo "FAIL $name: not one warning line: $warn"; }
  printf '%s' "$warn" | grep -qF -- "$run/checkpoints/sae/checkpoint.json" || { ok=0; echo "FAIL $name: warning lacks the file: $warn"; }
  printf '%s' "$warn" | grep -qF -- "$field" || { ok=0; echo "FAIL $name: warning lacks '$field': $warn"; }
  printf '%s' "$warn" | grep -q "starts over" || { ok=0; echo "FAIL $name: warning lacks 'starts over': $warn"; }
  printf '%s' "$out" | grep -q "resuming at step" && { ok=0; echo "FAIL $name: resumed"; }
  [ -f "$run/results/sae_summary.json" ] || { ok=0; echo "FAIL $name: no summary"; }
  if [ $ok -eq 1 ]; then passes=$((passes+1)); echo "ok   $name: $warn"; else failures=$((failures+1)); fi
}
expect_refused batch_negative "batch = -5" 'd["batch"] = -5'
expect_refused batch_huge "batch = 1099511627776" 'd["batch"] = 2**40'
expect_refused window_beyond "window = 1000" 'd["window"] = 1000'
expect_refused epoch_beyond "epoch = 7" 'd["epoch"] = 7'
expect_refused step_mismatch "step = 3" 'd["step"] = 3'
expect_refused step_string "step is not an integer" 'd["step"] = "2"'
expect_refused hook_unknown "jobs[0].hook 'blocks.9.hook_resid_post'" 'd["jobs"][0]["hook"] = "blocks.9.hook_resid_post"'
expect_refused curve_not_array "jobs[0].curve is not an array" 'd["jobs"][0]["curve"] = 5'
expect_refused curve_point "jobs[0].curve[0].fvu" 'd["jobs"][0]["curve"][0]["fvu"] = "x"'
expect_refused last_metric "jobs[0].last.loss" 'del d["jobs"][0]["last"]["loss"]'
expect_refused last_step "jobs[0].last.step = 99" 'd["jobs"][0]["last"]["step"] = 99'
expect_refused not_json "not a readable checkpoint" 'raw:{"step": 2,'

# The untouched checkpoint still resumes.
out=$("$BIN" sae "${common[@]}" --out "$TMP/r" 2>&1)
if printf '%s' "$out" | grep -q "resuming at step 2" && ! printf '%s' "$out" | grep -q "warning:.*checkpoint"; then
  passes=$((passes+1)); echo "ok   a good checkpoint resumes"
else failures=$((failures+1)); echo "FAIL good checkpoint: $out"; fi
finish
