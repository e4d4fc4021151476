#!/usr/bin/env bash
# `circuits attribute` on the bundled model: EAP and EAP-IG write attribute_<id>.json
# (every edge ranked, node scores that add up their edges, LD clean/corr, definitions)
# and the top-K graph <id>.json/.dot/.svg; np=1 and np=2 write the same JSON; bad input
# (prompts of different token lengths, a target of several tokens, a bad --ig-steps) is
# one error line, exit code 2, and nothing written.
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
