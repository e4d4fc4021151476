#!/usr/bin/env bash
# Phase 4 on the bundled model: SAEs train data-parallel with the same result for 1
# and 2 ranks; a run killed after K steps resumes from its checkpoint to the weights
# of an uninterrupted run; the export has SAELens' layout and NumPy applying
# SAELens' inference rule to the store's rows reconstructs them; bad input is one
# error line.
. "$(dirname "$0")/lib.sh"
MPIRUN=${MPIEXEC:-mpiexec}
SRC=${TP_SOURCE_DIR:?}
M=${TP_BUNDLED_MODEL:-$SRC/models/olmo2-tiny}
CORPUS=$SRC/data/corpus/heldout.jsonl
PY=/usr/bin/python3
CHECK="$(dirname "$0")/check_sae.py"
common=(--model "$M" --set data.corpus="$CORPUS" --num-samples 24 --set data.seq_len=64
        --set forward.batch_size=4 --set capture.hooks=hook_resid_post --layers 1,2
        --set sae.num_epochs=3 --set sae.batch_size=256 --set sae.chunk_rows=128 --set sae.window_chunks=4
        --set sae.eval_fraction=0.1 --set sae.checkpoint_every=5 --set sae.hidden_dim=512 --set sae.k=16
        --set sae.aux_k=64 --set sae.eval.num_samples=4)
sae() { local out=$1; shift; "$BIN" sae "${common[@]}" --out "$out" "$@"; }
sae_np() { local np=$1 out=$2; shift 2; timeout -s KILL 240 "$MPIRUN" -np "$np" "$BIN" sae "${common[@]}" --out "$out" "$@"; }

expect_ok "capture" -- "$BIN" capture "${common[@]}" --out "$TMP/r"
for r in np1 np2 kill; do mkdir -p "$TMP/$r" && cp "$TMP/r/activations.h5" "$TMP/$r/"; done
expect_ok "np1 sae" -- sae "$TMP/np1"
expect_ok "np2 sae" -- sae_np 2 "$TMP/np2"
for f in results/sae_summary.json results/sae_layer_1/cfg.json results/sae_layer_2/sae_weights.safetensors \
         results/sae_layer_2/sparsity.safetensors results/features_catalog.json results/features_catalog.index.tsv \
         checkpoints/sae/checkpoint.json; do
  if [ -f "$TMP/np1/$f" ]; then passes=$((passes+1)); echo "ok   $f written"; else failures=$((failures+1)); echo "FAIL no $f"; fi
done
n=$("$BIN" features query --out "$TMP/np1" --layer 2 --limit 3 --json 2>/dev/null | grep -c '"id"')
if [ "$n" = 3 ]; then passes=$((passes+1)); echo "ok   features query lists the catalog's features"
else failures=$((failures+1)); echo "FAIL features query printed $n features"; fi
if $PY -c "import h5py, numpy" 2>/dev/null; then
  $PY - "$TMP/np1/results/features_catalog.json" "$TMP/np1/results/sae_summary.json" "$TMP/np1/activations.h5" <<'PYEOF' && { passes=$((passes+1)); echo "ok   catalog over every row, evaluation on whole held-out documents of every domain"; } || { failures=$((failures+1)); echo "FAIL catalog vs evaluation"; }
import json, sys
import h5py, numpy as np
cat, summ = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
f = h5py.File(sys.argv[3], "r")
unmasked = int(f["mask"][:].sum())
cov = summ["coverage"]
assert cov["rows"] == unmasked and cov["training_rows"] + cov["held_out_rows"] == unmasked, cov
by = cov["by_domain"]
assert sum(d["held_out_rows"] for d in by.values()) == cov["held_out_rows"]
assert sum(d["documents"] for d in by.values()) == f["doc_index"].shape[0]
for name, d in by.items():   # stratified: every domain with 2+ documents has held-out ones, never all
    if d["documents"] >= 2:
        assert 0 < d["documents_held_out"] < d["documents"], (name, d)
    else:
        assert d["documents_held_out"] == 0, (name, d)
# a fixed share of the rows, at least one document of every domain with two or more
frac = cov["held_out_rows"] / cov["rows"]
assert 0.01 < frac < 0.5, frac
for layer, ev in zip(cat["saes"], summ["saes"]):
    assert layer["hook"] == ev["hook"] and len(layer["features"]) == ev["d_sae"]
    assert layer["rows"] == unmasked, "the catalog covers every unmasked row"
    assert ev["evaluation"]["rows"] == cov["held_out_rows"], "the evaluation uses the held-out documents' rows"
    assert layer["n_dead"] == ev["evaluation"]["dead_latents"], "dead latents over every row"
    assert sum(layer["domain_rows"].values()) == unmasked and set(layer["domain_rows"]) <= set(by)
    assert cat["schema"] == "transpolmo.features_catalog/2" and cat["coverage"]["rows"] == unmasked
    assert ev["evaluation"]["dead_and_dense_over_rows"] == unmasked
    l0 = sum(feat["density"] for feat in layer["features"])   # mean active latents over every row: at most k
    assert 0 < l0 <= ev["k"] + 1e-9, (l0, ev["k"])
    ce = ev["evaluation"]["ce"]
    assert 0 < ce["documents"] <= 4 and sum(ce["documents_by_domain"].values()) == ce["documents"]
    assert ce["tokens"] > 0 and ce["ce_zero_ablation"] > ce["ce_clean"] > 0 and 0 <= ce["kl_sae"] < ce["kl_zero_ablation"]
    assert abs(ce["ce_loss_recovered"] - (ce["ce_zero_ablation"] - ce["ce_sae"]) / (ce["ce_zero_ablation"] - ce["ce_clean"])) < 1e-6
    live = [f for f in layer["features"] if f["fires"] > 0 and "top_contexts" in f]
    assert live and all("⟦" in f["top_contexts"][0]["context"] for f in live[:20])
PYEOF
  for L in 1 2; do
    expect_ok "layer $L: np2 weights equal np1's (1e-5)" -- $PY "$CHECK" --same "$TMP/np1/results/sae_layer_$L" "$TMP/np2/results/sae_layer_$L" 1e-5
    expect_ok "layer $L: SAELens layout, NumPy reconstructs the rows" -- $PY "$CHECK" --layout "$TMP/np1/results/sae_layer_$L" "$TMP/np1/activations.h5"
    expect_ok "layer $L: the catalog's fire counts are NumPy's over every row" -- $PY "$CHECK" --catalog "$TMP/np1/results/sae_layer_$L" "$TMP/np1/activations.h5" "$TMP/np1/results/features_catalog.json"
  done
  # Kill rank 0 after 7 steps (checkpoint at 5), then resume: the weights of the
  # uninterrupted np2 run.
  TP_FAULT=sae.step@7 sae_np 2 "$TMP/kill" >/dev/null 2>&1
  if [ -f "$TMP/kill/results/sae_summary.json" ]; then failures=$((failures+1)); echo "FAIL the killed run finished"
  else passes=$((passes+1)); echo "ok   the killed run left no summary"; fi
  out=$(sae_np 2 "$TMP/kill" 2>&1)
  if printf '%s' "$out" | grep -q "resuming at step 5"; then passes=$((passes+1)); echo "ok   rerun resumes at step 5"
  else failures=$((failures+1)); echo "FAIL rerun did not resume at step 5: $out"; fi
  for L in 1 2; do
    expect_ok "layer $L: resumed weights equal the uninterrupted run's" -- $PY "$CHECK" --same "$TMP/np2/results/sae_layer_$L" "$TMP/kill/results/sae_layer_$L" 1e-7
  done
  # A checkpoint of another configuration is not resumed.
  out=$(sae "$TMP/kill" --set sae.seed=99 2>&1)
  if printf '%s' "$out" | grep -q "another configuration"; then passes=$((passes+1)); echo "ok   a checkpoint of another configuration is not resumed"
  else failures=$((failures+1)); echo "FAIL changed config: $out"; fi
else
  failures=$((failures+1)); echo "FAIL /usr/bin/python3 with h5py and numpy is needed (tools/install-deps.sh installs python3-h5py)"
fi

# Bad input: one error line each.
expect_fail "no store" "activations.h5|does not exist" -- sae "$TMP/none"
expect_fail "hook not captured" "sae.hooks|hook_mlp_out|not captured" -- sae "$TMP/np1" --set sae.hooks=hook_mlp_out
expect_fail "k above d_sae" "sae.k|512" -- sae "$TMP/np1" --set sae.k=600
expect_fail "unknown architecture" "sae.architecture|gated" -- sae "$TMP/np1" --set sae.architecture=gated
expect_fail "eval fraction out of range" "sae.eval_fraction" -- sae "$TMP/np1" --set sae.eval_fraction=0.9
# A full disk: the checkpoint write fails naming the file; nothing half-written remains.
mkdir -p "$TMP/full" && cp "$TMP/np1/activations.h5" "$TMP/full/"
out=$( (trap '' XFSZ; ulimit -f 10000; "$BIN" sae "${common[@]}" --set sae.hidden_dim=4096 --out "$TMP/full") 2>&1 >/dev/null)
if printf '%s' "$out" | grep -q "error: .*checkpoint-.*safetensors.*File too large" && [ ! -f "$TMP/full/results/sae_summary.json" ] \
   && [ -z "$(ls "$TMP/full/checkpoints/sae/sae_layer_1" 2>/dev/null)" ]; then
  passes=$((passes+1)); echo "ok   full disk: $(printf '%s' "$out" | grep error:)"
else failures=$((failures+1)); echo "FAIL full disk: $out"; ls -la "$TMP/full/results" "$TMP/full/checkpoints/sae/sae_layer_1" 2>&1; fi
if $PY -c "import h5py" 2>/dev/null; then
  cp -r "$TMP/np1" "$TMP/inc"
  $PY -c "import h5py; h5py.File('$TMP/inc/activations.h5', 'r+')['acts/blocks.2.hook_resid_post'].attrs['complete'] = 0"
  expect_fail "incomplete dataset" "blocks.2.hook_resid_post|not marked complete" -- sae "$TMP/inc"
fi
finish
