#!/usr/bin/env bash
# `transpolmo circuits patch` end to end on the bundled
# model: the JSON against TransformerLens 3.9 and a ROME-style trace
# (tests/data/golden/patch, tools/reference/make_golden_patch.py) at 1e-4 absolute
# (both f32, other summation orders: ~1e-6 seen); the same JSON, byte for byte, from 1
# and 2 ranks (the batches do not depend on the ranks; each rank runs one BLAS thread
# here); one cell per batch agrees with the default batches to 1e-5 (GEMM blocking
# only); causal tracing by a substring equals tracing by its positions; bad input: one
# error line, exit 2, no result file and an earlier one intact.
. "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
MPIRUN=${MPIEXEC:-mpiexec}
M=${TP_BUNDLED_MODEL:-$TP_SOURCE_DIR/models/olmo2-tiny}
G=$DATA/golden/patch
P=(circuits patch --model "$M")
PAIR=(--clean "x = foo(1, 2" --corrupt "x = foo[1, 2" --target ")" --distractor "]")
TRACE=(--clean "The LORD is my" --target " God")
J=results/circuits

check() {  # check NAME -- command: passes when the command exits 0
  local name=$1; shift 2
  local out
  if out=$("$@" 2>&1); then passes=$((passes+1)); echo "ok   $name${out:+: $out}"
  else failures=$((failures+1)); echo "FAIL $name"; printf '%s\n' "$out"; fi
}

# expect_fail2 NAME "words" -- command: expect_fail, and the exit code is 2 (bad input).
expect_fail2() {
  local name=$1; shift
  expect_fail "$name" "$@"
  shift 2
  "$@" >/dev/null 2>&1
  local rc=$?
  if [ $rc -ne 2 ]; then failures=$((failures+1)); echo "FAIL $name: exit $rc, want 2"; fi
}

# ---- activation patching against TransformerLens ------------------------------------
expect_ok "patch np1" -- "$BIN" "${P[@]}" "${PAIR[@]}" --out "$TMP/np1"
f1=$(ls "$TMP/np1/$J"/patch_*.json 2>/dev/null | head -1)
check "name derived from the prompts: $(basename "$f1")" -- test "$(basename "$f1" | sed 's/_[0-9a-f]\{8\}\.json$//')" = patch_x_foo_1_2
check "patching matches TransformerLens (1e-4)" -- "$PY" - "$f1" "$G" <<'PYEOF'
import json, sys
import numpy as np
d, g = json.load(open(sys.argv[1])), sys.argv[2]
ref = json.load(open(g + "/reference.json"))["patching"]
assert d["method"] == "activation_patching"
for k in ("model", "prompts", "tokens", "token_ids", "target", "distractor", "LD_clean", "LD_corr", "sweeps", "settings"):
    assert k in d, k
assert d["token_ids"]["clean"] == ref["clean_ids"] and d["token_ids"]["corrupt"] == ref["corrupt_ids"]
assert d["tokens"]["clean"][3] == "(" and d["tokens"]["corrupt"][3] == "["
assert d["target"]["id"] == ref["target_id"] and d["distractor"]["id"] == ref["distractor_id"]
assert abs(d["LD_clean"] - ref["LD_clean"]) < 1e-4 and abs(d["LD_corr"] - ref["LD_corr"]) < 1e-4
worst = 0
for k in ("resid_pre", "attn_out", "mlp_out", "z"):
    a, b = np.array(d["sweeps"][k], dtype=float), np.load(f"{g}/{k}.npy")
    assert a.shape == b.shape, (k, a.shape, b.shape)
    worst = max(worst, np.abs(a - b).max())
assert worst < 1e-4, worst
print(f"max |ours - TransformerLens| = {worst:.2e}")
PYEOF

# ---- ranks and batches -----------------------------------------------------------------
expect_ok "patch np2" -- timeout -s KILL 120 "$MPIRUN" -np 2 "$BIN" "${P[@]}" "${PAIR[@]}" --out "$TMP/np2"
check "np2 JSON identical to np1" -- cmp "$f1" "$TMP/np2/$J/$(basename "$f1")"
expect_ok "one cell per batch" -- "$BIN" "${P[@]}" "${PAIR[@]}" --cells-per-batch 1 --name one --out "$TMP/one"
check "one cell per batch agrees with the batched sweep (1e-5)" -- "$PY" - "$f1" "$TMP/one/$J/patch_one.json" <<'PYEOF'
import json, sys
import numpy as np
a, b = (json.load(open(p)) for p in sys.argv[1:3])
assert b["settings"]["cells_per_batch"] == 1 and a["settings"]["cells_per_batch"] > 1
print("max diff %.1e" % max(np.abs(np.array(a["sweeps"][k]) - np.array(b["sweeps"][k])).max() for k in a["sweeps"]))
assert all(np.allclose(a["sweeps"][k], b["sweeps"][k], atol=1e-5, rtol=0) for k in a["sweeps"])
PYEOF
expect_ok "--layers 1,3 --sweep z" -- "$BIN" "${P[@]}" "${PAIR[@]}" --layers 3,1 --sweep z --name sub --out "$TMP/sub"
check "a layer subset gives those rows" -- "$PY" - "$f1" "$TMP/sub/$J/patch_sub.json" <<'PYEOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
assert list(b["sweeps"]) == ["z"] and b["settings"]["layers"] == [1, 3]
assert b["sweeps"]["z"] == [a["sweeps"]["z"][1], a["sweeps"]["z"][3]]
PYEOF

# ---- causal tracing ---------------------------------------------------------------------
expect_ok "trace with the golden noise" -- "$BIN" "${P[@]}" "${TRACE[@]}" --corrupt-noise " LORD" \
  --noise-file "$G/noise.npy" --name trace --out "$TMP/tr"
check "tracing matches the ROME-style reference (1e-4)" -- "$PY" - "$TMP/tr/$J/patch_trace.json" "$G" <<'PYEOF'
import json, sys
import numpy as np
d, g = json.load(open(sys.argv[1])), sys.argv[2]
ref = json.load(open(g + "/reference.json"))["tracing"]
assert d["method"] == "causal_tracing" and d["noise"]["positions"] == ref["noised_positions"]
assert d["noise"]["samples"] == ref["samples"] and d["noise"]["seed"] is None and d["noise"]["std"] is None
assert abs(d["noise"]["embedding_std"] / ref["embedding_std"] - 1) < 1e-5
assert abs(d["p_clean"] - ref["p_clean"]) < 1e-4
assert np.allclose(d["p_corr_per_sample"], ref["p_corr"], atol=1e-4, rtol=0)
worst = 0
for k in ("resid_pre", "attn_out", "mlp_out"):
    for key, suffix in (("sweeps", ""), ("sweeps_normalized", "_norm")):
        a, b = np.array(d[key][k], dtype=float), np.load(f"{g}/trace_{k}{suffix}.npy")
        worst = max(worst, np.abs(a - b).max())
assert worst < 1e-4, worst
print(f"max |ours - reference| = {worst:.2e}")
PYEOF
expect_ok "trace by substring" -- "$BIN" "${P[@]}" "${TRACE[@]}" --corrupt-noise LORD --seeds 3 --seed 5 --name s1 --out "$TMP/tr"
expect_ok "trace by position" -- "$BIN" "${P[@]}" "${TRACE[@]}" --corrupt-noise 1 --seeds 3 --seed 5 --name s2 --out "$TMP/tr"
check "substring and positions: same tokens, same noise, same sweeps" -- "$PY" - "$TMP/tr/$J/patch_s1.json" "$TMP/tr/$J/patch_s2.json" <<'PYEOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
assert a["noise"]["positions"] == b["noise"]["positions"] == [1]
assert a["noise"]["samples"] == 3 and a["noise"]["seed"] == 5
assert abs(a["noise"]["std"] - 3 * a["noise"]["embedding_std"]) < 1e-9
assert a["sweeps"] == b["sweeps"] and a["sweeps_normalized"] == b["sweeps_normalized"]
assert list(a["sweeps"]) == ["resid_pre", "attn_out", "mlp_out"]
# restoring the noised token's clean embedding (resid_pre, layer 0) restores p_clean
assert abs(a["sweeps"]["resid_pre"][0][1] - a["p_clean"]) < 1e-5
PYEOF
expect_ok "trace np2" -- timeout -s KILL 120 "$MPIRUN" -np 2 "$BIN" "${P[@]}" "${TRACE[@]}" --corrupt-noise LORD --seeds 3 \
  --seed 5 --name s1 --out "$TMP/tr2"
check "trace np2 JSON identical to np1" -- cmp "$TMP/tr/$J/patch_s1.json" "$TMP/tr2/$J/patch_s1.json"

# ---- bad input ---------------------------------------------------------------------------
o=(--out "$TMP/np1")
keep=$(md5sum < "$f1")
N=(--name "$(basename "$f1" .json | sed 's/^patch_//')")   # failures must leave this result intact
expect_fail2 "different lengths" "same number of tokens|clean has 8|corrupt has 9|\"[\",\"[\"" -- \
  "$BIN" "${P[@]}" --clean "x = foo(1, 2" --corrupt "x = foo[[1, 2" --target ")" --distractor "]" "${N[@]}" "${o[@]}"
expect_fail2 "target of two tokens" "--target ' God Moses' is 2 tokens|\" God\",\" Moses\"" -- \
  "$BIN" "${P[@]}" "${PAIR[@]:0:4}" --target " God Moses" --distractor "]" "${N[@]}" "${o[@]}"
expect_fail2 "layer out of range" "layer 9 out of range|0..3" -- "$BIN" "${P[@]}" "${PAIR[@]}" --layers 9 "${N[@]}" "${o[@]}"
expect_fail2 "same prompts" "same logit difference" -- \
  "$BIN" "${P[@]}" --clean "x = foo(1, 2" --corrupt "x = foo(1, 2" --target ")" --distractor "]" "${N[@]}" "${o[@]}"
long=$(printf 'a %.0s' $(seq 1 1100))
expect_fail2 "longer than the context" "context of 1024" -- \
  "$BIN" "${P[@]}" --clean "$long" --corrupt "$long" --target ")" --distractor "]" "${N[@]}" "${o[@]}"
expect_fail2 "unknown sweep" "unknown sweep 'heads'" -- "$BIN" "${P[@]}" "${PAIR[@]}" --sweep resid_pre,heads "${N[@]}" "${o[@]}"
expect_fail2 "no distractor" "needs --distractor" -- "$BIN" "${P[@]}" "${PAIR[@]:0:6}" "${N[@]}" "${o[@]}"
expect_fail2 "both corruptions" "exactly one of" -- "$BIN" "${P[@]}" "${PAIR[@]}" --corrupt-noise 1 "${N[@]}" "${o[@]}"
expect_fail2 "noise position out of range" "position 7 out of range|0..3" -- \
  "$BIN" "${P[@]}" "${TRACE[@]}" --corrupt-noise 7 "${N[@]}" "${o[@]}"
expect_fail2 "noise substring absent" "'Moses' is neither" -- "$BIN" "${P[@]}" "${TRACE[@]}" --corrupt-noise Moses "${N[@]}" "${o[@]}"
expect_fail2 "noise file of the wrong shape" "noise must be f32" -- \
  "$BIN" "${P[@]}" "${TRACE[@]}" --corrupt-noise 1-2 --noise-file "$G/noise.npy" "${N[@]}" "${o[@]}"
expect_fail2 "bad name" "--name 'a/b'" -- "$BIN" "${P[@]}" "${PAIR[@]}" --name a/b "${o[@]}"
check "a failed command left the earlier result intact and no other file" -- \
  test "$(md5sum < "$f1")" = "$keep" -a "$(ls "$TMP/np1/$J" | wc -l)" = 1
finish
