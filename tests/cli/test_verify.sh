#!/usr/bin/env bash
# Phase 7 on the bundled model: a small run (capture, SAEs at resid_post 1 and 2, the
# circuits phase with the induction task of the library), then `verify` on 1 and 2
# ranks: the same results/verification.json; its keys, an estimate {mean, ci95_low,
# ci95_high, n} wherever one is due, the induction heads (L3H0, L3H1 by their stripe)
# and the previous-token head L1H3 verified, detection scores that follow from their
# counts; a run with --skip-sae or without the catalog verifies heads and circuits and
# says what it skipped; verify before circuits and a bad setting are one error line.
. "$(dirname "$0")/lib.sh"
MPIRUN=${MPIEXEC:-mpiexec}
SRC=${TP_SOURCE_DIR:?}
M=${TP_BUNDLED_MODEL:-$SRC/models/olmo2-tiny}
PY=/usr/bin/python3
mkdir -p "$TMP/lib" && cp "$SRC/configs/circuits/induction.yaml" "$TMP/lib/"
RUN=(--model "$M" --set data.corpus="$SRC/data/corpus/heldout.jsonl" --num-samples 24 --set data.seq_len=64
     --set forward.batch_size=4 --set capture.hooks=hook_resid_post --layers 1,2 --set sae.num_epochs=2
     --set sae.batch_size=256 --set sae.chunk_rows=128 --set sae.window_chunks=4 --set sae.hidden_dim=256
     --set sae.k=16 --set sae.aux_k=32 --set sae.eval.num_samples=2 --set circuits.library.dir="$TMP/lib"
     --set circuits.heads.corpus_docs=8)
V=(--set verify.features.per_sae=3 --set verify.features.contexts=8 --set verify.features.random_contexts=10
   --set verify.heads.prompts=8 --set verify.circuits.pairs=4 --set verify.stat_docs=4 --set verify.bootstrap=200)
expect_ok "capture" -- "$BIN" capture "${RUN[@]}" --out "$TMP/r1"
expect_ok "sae" -- "$BIN" sae "${RUN[@]}" --out "$TMP/r1"
cp -r "$TMP/r1" "$TMP/pre"   # a run before circuits
expect_ok "circuits" -- "$BIN" circuits "${RUN[@]}" --out "$TMP/r1"
cp -r "$TMP/r1" "$TMP/r2" && cp -r "$TMP/r1" "$TMP/skip" && cp -r "$TMP/r1" "$TMP/nocat"
expect_ok "verify (1 rank)" -- "$BIN" verify "${RUN[@]}" "${V[@]}" --out "$TMP/r1"
expect_ok "verify (2 ranks)" -- timeout -s KILL 240 "$MPIRUN" -np 2 "$BIN" verify "${RUN[@]}" "${V[@]}" --out "$TMP/r2"
J=results/verification.json
if cmp -s "$TMP/r1/$J" "$TMP/r2/$J"; then passes=$((passes + 1)); echo "ok   np=1 and np=2 write the same JSON"
else failures=$((failures + 1)); echo "FAIL np=1 and np=2 differ"; diff <($PY -m json.tool "$TMP/r1/$J") <($PY -m json.tool "$TMP/r2/$J") | head -20; fi

expect_ok "the JSON: keys, estimates, the induction and previous-token heads verified" -- $PY - "$TMP/r1/$J" <<'PY'
import json, math, sys
d = json.load(open(sys.argv[1]))
assert d["schema"] == "transpolmo.verification/1"
for k in ("model", "settings", "features", "heads", "circuits", "skipped", "summary", "definitions", "statistics"):
    assert k in d, k
def est(e, what):
    assert set(("mean", "ci95_low", "ci95_high", "n")) <= set(e), (what, e)
    assert e["n"] >= 1, (what, e)
    assert e["ci95_low"] <= e["mean"] + 1e-12 and e["mean"] <= e["ci95_high"] + 1e-12, (what, e)
S = d["summary"]
assert len(d["features"]) == 2 and [f["hook"] for f in d["features"]] == ["blocks.1.hook_resid_post", "blocks.2.hook_resid_post"]
nv = nd = 0
for f in d["features"]:
    for k in ("hook", "sae_dir", "tested", "verified", "described", "criterion", "items"):
        assert k in f, k
    assert f["tested"] == len(f["items"]) == 3
    assert f["verified"] == sum(i["verified"] for i in f["items"])
    assert f["described"] == sum(i["description"]["passes"] for i in f["items"])
    nv += f["verified"]; nd += f["described"]
    for it in f["items"]:
        de = it["description"]
        for k in ("rule", "kind", "detection", "simulation", "passes"):
            assert k in de, k
        det = de["detection"]
        assert det["n"] == det["tp"] + det["fp"] + det["tn"] + det["fn"] > 0
        assert abs(det["accuracy"] - (det["tp"] + det["tn"]) / det["n"]) < 1e-9
        p = det["tp"] / (det["tp"] + det["fp"]) if det["tp"] + det["fp"] else 0.0
        r = det["tp"] / (det["tp"] + det["fn"]) if det["tp"] + det["fn"] else 0.0
        assert abs(det["precision"] - p) < 1e-9 and abs(det["recall"] - r) < 1e-9
        assert abs(det["f1"] - (2 * p * r / (p + r) if p + r else 0.0)) < 1e-9
        assert de["simulation"]["n"] > 0 and de["kind"] in ("token", "bigram", "domain")
        a = it["ablation"]
        for side in ("top_contexts", "random_contexts"):
            est(a[side]["delta_ce"], "delta_ce"); est(a[side]["kl"], "kl")
        assert a["passes"] == (a["top_contexts"]["kl"]["mean"] > a["random_contexts"]["kl"]["ci95_high"])
        st = it["steering"]
        assert st is not None and len(st["tokens"]) == 5
        est(st["delta_logprob"], "steer")
        assert it["verified"] == (a["passes"] and st["passes"])
assert (S["features_tested"], S["features_verified"], S["features_described"]) == (6, nv, nd)
heads = {(h["layer"], h["head"]): h for h in d["heads"]}
for k in ("layer", "head", "class", "task", "verified", "effect", "baseline"):
    assert all(k in h for h in d["heads"]), k
for h in d["heads"]:
    est(h["effect"], "effect"); est(h["baseline"], "baseline"); est(h["difference"], "difference")
    assert h["effect"]["n"] == 8
    assert h["verified"] == (h["difference"]["ci95_low"] > 0)
assert heads[(3, 0)]["class"] == "induction" and heads[(3, 0)]["verified"], heads.get((3, 0))
assert heads[(3, 1)]["verified"], heads[(3, 1)]
assert heads[(1, 3)]["class"] == "previous_token" and heads[(1, 3)]["verified"], heads[(1, 3)]
assert {(3, 0), (3, 1), (3, 4), (3, 5)} <= set(heads)
assert S["heads_tested"] == len(d["heads"]) and S["heads_verified"] == sum(h["verified"] for h in d["heads"])
assert len(d["circuits"]) == 1
c = d["circuits"][0]
for k in ("task", "verified", "faithfulness", "completeness", "heads", "complement", "by_mode"):
    assert k in c, k
est(c["faithfulness"], "faithfulness"); est(c["completeness"], "completeness")
assert set(c["by_mode"]) == {"zero", "mean", "resample"} and c["faithfulness"]["n"] == 4
for h in c["heads"]:
    for m in ("zero", "mean", "resample"):
        est(h[m], m)
assert S["circuits_tested"] == 1
print("features %d/%d verified, %d described; heads %d/%d; circuits %d/1" % (nv, 6, nd, S["heads_verified"], S["heads_tested"], S["circuits_verified"]))
PY

expect_ok "verify --skip-sae" -- "$BIN" verify "${RUN[@]}" "${V[@]}" --skip-sae --out "$TMP/skip"
rm "$TMP/nocat/results/features_catalog.json"
expect_ok "verify without the catalog" -- "$BIN" verify "${RUN[@]}" "${V[@]}" --out "$TMP/nocat"
expect_ok "skips are stated, heads and circuits verified" -- $PY - "$TMP/skip/$J" "$TMP/nocat/$J" <<'PY'
import json, sys
for path, why in zip(sys.argv[1:], ("sae.skip", "features_catalog.json is missing")):
    d = json.load(open(path))
    assert d["features"] == [] and d["summary"]["features_tested"] == 0
    sk = [s for s in d["skipped"] if s["what"] == "features"]
    assert len(sk) == 1 and why in sk[0]["why"], d["skipped"]
    assert d["summary"]["heads_tested"] >= 5 and len(d["circuits"]) == 1
PY
expect_fail "verify before circuits" "head_scores.json|run \`transpolmo circuits\` first" -- \
  "$BIN" verify "${RUN[@]}" "${V[@]}" --out "$TMP/pre"
check_missing() { test ! -e "$TMP/pre/$J"; }
if check_missing; then passes=$((passes + 1)); echo "ok   a refused verify writes nothing"; else failures=$((failures + 1)); echo "FAIL $J written"; fi
expect_fail "a bad verify.heads.mode" "verify.heads.mode|zero" -- "$BIN" verify "${RUN[@]}" --set verify.heads.mode=half \
  --out "$TMP/pre"
# The catalog is read back: a feature id, promoted token id or layer it does not
# have is one error line naming the file and the field (not an out-of-bounds read).
bad_catalog() {  # bad_catalog NAME WORDS PYTHON-EDIT (d = the catalog)
  rm -rf "$TMP/$1"; cp -r "$TMP/skip" "$TMP/$1"; rm -f "$TMP/$1/$J"
  $PY - "$TMP/$1/results/features_catalog.json" "$3" <<'PY'
import json, sys
p = sys.argv[1]; d = json.load(open(p)); s = d["saes"][0]
live = sorted([f for f in s["features"] if f.get("top_contexts") and "activation_mass" in f], key=lambda f: -f["activation_mass"])
f = live[0]; exec(sys.argv[2]); json.dump(d, open(p, "w"))
PY
  expect_fail "$1" "$2" -- "$BIN" verify "${RUN[@]}" "${V[@]}" --out "$TMP/$1"
}
bad_catalog "catalog feature id out of range" "$TMP/catalog feature id out of range/results/features_catalog.json|saes[0]|feature id 1000000|256 latents" 'f["id"] = 10**6'
bad_catalog "catalog promoted token out of range" "features_catalog.json|saes[0]|promotes[0].token_id|token id of the model" \
  'f["promotes"] = [{"token_id": -3, "token": "x"}]'
bad_catalog "catalog layer out of range" "features_catalog.json|saes[0].layer|not a layer" 's["layer"] = 99'
rm -rf "$TMP/badheads"; cp -r "$TMP/skip" "$TMP/badheads"; rm -f "$TMP/badheads/$J"
$PY - "$TMP/badheads/results/circuits/head_scores.json" <<'PY'
import json, sys
p = sys.argv[1]; d = json.load(open(p))
c = [x for x in d["classes"] if x["class"] in ("induction", "previous_token")][0]; c["head"] = 99
json.dump(d, open(p, "w"))
PY
expect_fail "head_scores head out of range" "head_scores.json|classes[|not a head of the model" -- \
  "$BIN" verify "${RUN[@]}" "${V[@]}" --skip-sae --out "$TMP/badheads"
finish
