#!/usr/bin/env bash
# `circuits attribute` on the bundled model: EAP and EAP-IG write attribute_<id>.json
# (every edge ranked, node scores that add up their edges, LD clean/corr, definitions)
# and the top-K graph <id>.json/.dot/.svg; np=1 and np=2 write the same JSON; bad input
# (prompts of different token lengths, a target of several tokens, a bad --ig-steps, a
# bad --pairs line) is one error line, exit code 2, and nothing written. --pairs: the
# mean of the pairs, the same JSON for np=1 and np=2, the run's SAE features as nodes.
. "$(dirname "$0")/lib.sh"
MPIRUN=${MPIEXEC:-mpiexec}
SRC=${TP_SOURCE_DIR:?}
M=${TP_BUNDLED_MODEL:-$SRC/models/olmo2-tiny}
PY=/usr/bin/python3
CLEAN="The cat sat on the mat. The cat sat on the"
CORR="The dog ran in the box. The cat sat on the"
att() { "$BIN" circuits attribute --model "$M" "$@"; }
check() {
  local name=$1; shift
  if "$@"; then passes=$((passes + 1)); echo "ok   $name"; else failures=$((failures + 1)); echo "FAIL $name"; fi
}

out=$("$BIN" circuits --help 2>&1)
check "circuits --help lists attribute" test -n "$(printf '%s' "$out" | grep -E '^  attribute ')"

expect_ok "attribute (EAP)" -- att --clean "$CLEAN" --corrupt "$CORR" --target " mat" --distractor " box" --top 12 \
  --name cat --out "$TMP/r1"
R=$TMP/r1/results/circuits
check "attribute: JSON, graph json/dot/svg" test -s "$R/attribute_cat.json" -a -s "$R/cat.json" -a -s "$R/cat.dot" \
  -a -s "$R/cat.svg"
check "attribute JSON: ranked edges, nodes = sum of their edges, definitions" $PY - "$R/attribute_cat.json" "$R/cat.json" <<'PY'
import json, sys
d, g = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
for k in ("model", "settings", "prompts", "metric", "definitions", "target", "distractor", "nodes", "edges"):
    assert k in d, k
assert d["method"] == "EAP" and d["ig_steps"] == 0
assert d["prompts"]["clean"]["tokens"] == d["prompts"]["corrupt"]["tokens"]
# 4 layers x 8 heads: embed -> 37 nodes; a head of layer l -> m<l>, 9 nodes per later layer, logits;
# m<l> -> 9 nodes per later layer, logits
L, H = 4, 8
n = 37 + sum(H * (1 + (L - 1 - l) * (H + 1) + 1) + (L - 1 - l) * (H + 1) + 1 for l in range(L))
assert len(d["edges"]) == n, (len(d["edges"]), n)
mags = [abs(e["score"]) for e in d["edges"]]
assert mags == sorted(mags, reverse=True)
diff = d["metric"]["ld_clean_minus_corr"]
e0 = d["edges"][0]
assert abs(e0["normalized"] - e0["score"] / diff) < 1e-7 * abs(e0["normalized"])  # 9 digits in the JSON
for nd in d["nodes"]:
    s = sum(e["score"] for e in d["edges"] if e["source"] == nd["node"])
    assert abs(s - nd["score"]) < 1e-5 * (1 + sum(abs(e["score"]) for e in d["edges"] if e["source"] == nd["node"])), nd
assert 1 <= len(g["edges"]) <= 12 and any(x["id"] == "logits" for x in g["nodes"])
assert g["method"] == "EAP" and "definitions" in g
PY
check "svg is an SVG" grep -q "<svg" "$R/cat.svg"

expect_ok "attribute (EAP-IG, 2 ranks)" -- timeout -s KILL 240 "$MPIRUN" -np 2 "$BIN" circuits attribute --model "$M" \
  --clean "$CLEAN" --corrupt "$CORR" --target " mat" --ig-steps 3 --name ig --out "$TMP/r2"
expect_ok "attribute (EAP-IG, 1 rank)" -- att --clean "$CLEAN" --corrupt "$CORR" --target " mat" --ig-steps 3 --name ig \
  --out "$TMP/r3"
check "np=1 and np=2 write the same JSON" cmp -s "$TMP/r2/results/circuits/attribute_ig.json" \
  "$TMP/r3/results/circuits/attribute_ig.json"
check "EAP-IG says so" $PY -c "import json,sys; d=json.load(open(sys.argv[1])); assert d['method']=='EAP-IG' and d['ig_steps']==3 and d['distractor'] is None" "$TMP/r3/results/circuits/attribute_ig.json"

# several pairs over the ranks, with the features of the run's SAEs as nodes
SAE=(--model "$M" --set data.corpus="$SRC/data/corpus/heldout.jsonl" --num-samples 24 --set data.seq_len=64
     --set forward.batch_size=4 --set capture.hooks=hook_resid_post --layers 1,2 --set sae.num_epochs=2
     --set sae.batch_size=256 --set sae.chunk_rows=128 --set sae.window_chunks=4 --set sae.hidden_dim=256
     --set sae.k=16 --set sae.aux_k=32 --set sae.eval.num_samples=2)
expect_ok "capture for the SAEs" -- "$BIN" capture "${SAE[@]}" --out "$TMP/s1"
expect_ok "SAEs at resid_post 1, 2" -- "$BIN" sae "${SAE[@]}" --out "$TMP/s1"
cp -r "$TMP/s1" "$TMP/s2"
cat > "$TMP/pairs.jsonl" <<'JSONL'
{"clean": "The cat sat on the mat. The cat sat on the", "corrupt": "The dog ran in the box. The cat sat on the", "target": " mat", "distractor": " box"}

{"clean": "A bird flew to the tree. A bird flew to the", "corrupt": "A big dog sat in the box. A bird flew to the", "target": " tree"}
{"clean": "In the beginning God created the heaven", "corrupt": "In the beginning God created the earth"}
JSONL
expect_ok "attribute --pairs (1 rank)" -- att --pairs "$TMP/pairs.jsonl" --target " and" --sae-features 4 --name multi \
  --out "$TMP/s1"
expect_ok "attribute --pairs (2 ranks)" -- timeout -s KILL 240 "$MPIRUN" -np 2 "$BIN" circuits attribute --model "$M" \
  --pairs "$TMP/pairs.jsonl" --target " and" --sae-features 4 --name multi --out "$TMP/s2"
check "--pairs: np=1 and np=2 write the same JSON" cmp -s "$TMP/s1/results/circuits/attribute_multi.json" \
  "$TMP/s2/results/circuits/attribute_multi.json"
expect_ok "each pair alone" -- bash -c "for i in 1 2 3; do sed -n \"\$((i == 1 ? 1 : i + 1))p\" '$TMP/pairs.jsonl' > '$TMP/p'\$i.jsonl; \
  '$BIN' circuits attribute --model '$M' --pairs '$TMP/p'\$i.jsonl --target ' and' --sae-features 0 --name one\$i \
  --out '$TMP/s1' || exit 1; done"
check "--pairs: the mean of the pairs, each pair's metric, feature nodes and edges" $PY - "$TMP/s1/results/circuits" <<'PY'
import json, sys
R = sys.argv[1]
d = json.load(open(R + "/attribute_multi.json"))
one = [json.load(open(f"{R}/attribute_one{i}.json")) for i in (1, 2, 3)]
assert d["n_pairs"] == 3 and d["prompts"]["n_pairs"] == 3 and d["target"] is None
tg = [p["target"]["text"] for p in d["prompts"]["pairs"]]
assert tg == [" mat", " tree", " and"], tg
assert d["prompts"]["pairs"][1]["distractor"] is None and d["prompts"]["pairs"][0]["distractor"]["text"] == " box"
for k in ("ld_clean", "ld_corr"):
    mean = sum(o["metric"][k] for o in one) / 3
    assert abs(d["metric"][k] - mean) < 1e-6 * (1 + abs(mean)), (k, d["metric"][k], mean)
    assert all(abs(p[k] - o["metric"][k]) < 1e-7 * (1 + abs(p[k])) for p, o in zip(d["prompts"]["pairs"], one))
edge = {(e["source"], e["target"]): e["score"] for e in d["edges"]}
for o in one:
    assert o["features"] is None   # --sae-features 0
acc = {}
for o in one:
    for e in o["edges"]:
        acc[(e["source"], e["target"])] = acc.get((e["source"], e["target"]), 0) + e["score"] / 3
worst = max(abs(edge[k] - v) / (1e-6 + abs(v)) for k, v in acc.items() if abs(v) > 1e-3)
assert worst < 1e-5, worst
f = d["features"]
assert [s["hook"] for s in f["saes"]] == ["blocks.1.hook_resid_post", "blocks.2.hook_resid_post"], f["saes"]
assert all(s["features_kept"] == 4 and s["d_sae"] == 256 for s in f["saes"])
assert len(f["nodes"]) == 8 and all(n["node"].startswith("f") for n in f["nodes"])
mags = [abs(n["score"]) for n in f["nodes"]]
assert mags == sorted(mags, reverse=True)
for n in f["nodes"]:   # out-edges add up to the node score (the g_v downstream of the point add up to dm/dx_P)
    out = [e["score"] for e in f["edges"] if e["source"] == n["node"]]
    assert out and abs(sum(out) - n["score"]) < 1e-5 * (1e-3 + sum(map(abs, out))), n
    assert any(e["target"] == n["node"] for e in f["edges"])
    layer = int(n["node"][1:].split(".")[0])
    for e in f["edges"]:
        if e["target"] == n["node"] and e["source"] != "embed":
            assert int(e["source"][1:].split(".")[0]) <= layer, e
assert "definitions" in f and f["per_point"] == 4
PY
expect_ok "discover in a run with SAEs" -- "$BIN" circuits discover --model "$M" --prompt "$CLEAN" --name disc \
  --set data.corpus="$SRC/data/corpus" \
  --out "$TMP/s1"
check "discover: the features block, feature nodes as strong as the circuit's weakest edge" $PY - \
  "$TMP/s1/results/circuits/disc.json" <<'PY'
import json, sys
g = json.load(open(sys.argv[1]))
f = g["features"]
assert [s["hook"] for s in f["saes"]] == ["blocks.1.hook_resid_post", "blocks.2.hook_resid_post"]
assert g["settings"]["discover"]["sae_features"] == 8 and len(f["nodes"]) == 16
kinds = {n["id"]: n["kind"] for n in g["nodes"]}
comp = [abs(e["weight"]) for e in g["edges"] if kinds[e["source"]] != "feature" and kinds[e["target"]] != "feature"]
feat = [e for e in g["edges"] if "feature" in (kinds[e["source"]], kinds[e["target"]])]
assert comp and all(abs(e["weight"]) >= min(comp) for e in feat)
named = {n["node"] for n in f["nodes"]}
assert all(i in named for i, k in kinds.items() if k == "feature")
PY
expect_fail "a bad --pairs line names file and line" "badpairs.jsonl line 2: needs string keys" -- bash -c \
  "printf '{\"clean\": \"a b\", \"corrupt\": \"a c\", \"target\": \" b\"}\n{\"clean\": 3}\n' > '$TMP/badpairs.jsonl' && \
   '$BIN' circuits attribute --model '$M' --pairs '$TMP/badpairs.jsonl' --out '$TMP/bad'"
expect_fail "--pairs with --clean" "not both" -- att --pairs "$TMP/pairs.jsonl" --clean "$CLEAN" --target " mat" \
  --out "$TMP/bad"


expect_fail "prompts of different token lengths show both token lists" \
  "--clean is 7 tokens|'The', ' cat'|but --corrupt is 5|same length" -- \
  att --clean "The cat sat on the mat" --corrupt "The dog ran home" --target " mat" --out "$TMP/bad"
check "... exit code 2" test "$(att --clean "The cat sat on the mat" --corrupt "The dog ran home" --target " mat" \
  --out "$TMP/bad" >/dev/null 2>&1; echo $?)" -eq 2
expect_fail "a target of two tokens shows them" "--target ' Mary' is 2 tokens|' M'|'ary'" -- \
  att --clean "$CLEAN" --corrupt "$CORR" --target " Mary" --out "$TMP/bad"
expect_fail "a bad --ig-steps" "--ig-steps 'x': expected an integer" -- \
  att --clean "$CLEAN" --corrupt "$CORR" --target " mat" --ig-steps x --out "$TMP/bad"
expect_fail "missing --corrupt" "--corrupt" -- att --clean "$CLEAN" --target " mat" --out "$TMP/bad"
check "failed commands wrote nothing" test ! -e "$TMP/bad/results/circuits"
finish
