#!/usr/bin/env bash
# Phase 5 on the bundled model: `circuits` (the phase) and its subcommands trace, heads,
# weights, dla write the files docs/circuits.md describes with their keys; the head scores
# are the same JSON for 1 and 2 ranks; bad input (a prompt longer than the context, a
# target that is not one token, a layer or head out of range, an empty or missing prompts
# file, a missing option) is one error line, exit code 2, and nothing written.
. "$(dirname "$0")/lib.sh"
MPIRUN=${MPIEXEC:-mpiexec}
SRC=${TP_SOURCE_DIR:?}
M=${TP_BUNDLED_MODEL:-$SRC/models/olmo2-tiny}
PY=/usr/bin/python3
common=(--model "$M" --set data.corpus="$SRC/data/corpus/heldout.jsonl" --num-samples 8 --set data.seq_len=32
        --set circuits.heads.corpus_docs=6 --set circuits.heads.synthetic=4 --set circuits.heads.synthetic_len=10
        --set circuits.weights.baseline_samples=2)
circ() { "$BIN" circuits "${common[@]}" "$@"; }   # the test's options last: they win
circ_np() { local np=$1; shift; timeout -s KILL 240 "$MPIRUN" -np "$np" "$BIN" circuits "${common[@]}" "$@"; }
check() {   # check NAME CONDITION...
  local name=$1; shift
  if "$@"; then passes=$((passes + 1)); echo "ok   $name"; else failures=$((failures + 1)); echo "FAIL $name"; fi
}
rc_of() { "$@" >/dev/null 2>&1; echo $?; }
# keys FILE KEY... : the JSON object at FILE has every KEY (dotted paths into objects)
keys() {
  $PY - "$@" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
for k in sys.argv[2:]:
    o = doc
    for part in k.split("."):
        assert isinstance(o, dict) and part in o, f"{sys.argv[1]}: no key {k}"
        o = o[part]
PY
}

# ---- help: the subcommands are listed, each has its options ----------------------------------
out=$("$BIN" circuits --help 2>&1)
check "circuits --help lists the subcommands" test -n "$(printf '%s' "$out" | grep -E '^  trace ')" \
  -a -n "$(printf '%s' "$out" | grep -E '^  heads ')" -a -n "$(printf '%s' "$out" | grep -E '^  dla ')"
out=$("$BIN" help circuits 2>&1)
check "help circuits lists them too" test -n "$(printf '%s' "$out" | grep -E '^  weights ')"
out=$("$BIN" circuits trace --help 2>&1); rc=$?
check "circuits trace --help gives its options" test $rc -eq 0 -a -n "$(printf '%s' "$out" | grep -- '--prompt')" \
  -a -n "$(printf '%s' "$out" | grep '^usage: transpolmo circuits trace')"
out=$("$BIN" help circuits dla 2>&1)
check "help circuits dla gives its options" test -n "$(printf '%s' "$out" | grep -- '--distractor')"
check "help of an unknown subcommand exits 2" test "$(rc_of "$BIN" circuits nope --help)" -eq 2
expect_fail "unknown subcommand suggests the nearest" "unknown subcommand 'trce'|did you mean 'trace'" -- circ trce --out "$TMP/x"
expect_fail "unknown option of a subcommand" "circuits trace: unknown option '--promt'|did you mean '--prompt'" -- \
  circ trace --promt hi --out "$TMP/x"

# ---- trace -------------------------------------------------------------------------------------
expect_ok "trace" -- circ trace --prompt "The cat sat on the mat" --name cat --out "$TMP/r"
T=$TMP/r/results/circuits/trace
check "trace JSON has its keys" keys "$T/cat.json" model.n_heads prompts settings.trace_top tokens layers definitions
check "trace: per head pattern and statistics, 4 layers" $PY - "$T/cat.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["tokens"][0]["text"] == "<|endoftext|>" and [t["text"] for t in d["tokens"][1:3]] == ["The", " cat"], d["tokens"]
assert len(d["layers"]) == 4 and all(len(l["heads"]) == 8 for l in d["layers"])
h = d["layers"][1]["heads"][3]
for k in ("entropy", "entropy_per_query", "mean_attended_distance", "attention_to_first_token", "top_sources", "pattern"):
    assert k in h, k
T = len(d["tokens"])
assert len(h["pattern"]) == T and all(abs(sum(r) - 1) < 1e-5 for r in h["pattern"])
assert all(h["pattern"][i][j] == 0 for i in range(T) for j in range(i + 1, T))
assert h["top_sources"][0]["token"] in [t["text"] for t in d["tokens"]]
PY
check "trace: one well-formed SVG per layer" $PY - "$T/cat" <<'PY'
import sys, os, xml.dom.minidom
files = sorted(os.listdir(sys.argv[1]))
assert files == [f"layer_{l}.svg" for l in range(4)], files
for f in files:
    doc = xml.dom.minidom.parse(os.path.join(sys.argv[1], f))
    texts = [t.firstChild.data for t in doc.getElementsByTagName("text") if t.firstChild]
    assert "<|endoftext|>" in texts and " cat" in texts, texts[:5]
    assert len(doc.getElementsByTagName("rect")) >= 8 * 28
PY
expect_ok "trace --heads 1.3,2.0" -- circ trace --prompt "a b a b" --heads 1.3,2.0 --name sel --out "$TMP/r"
check "trace --heads keeps those heads only" $PY -c "
import json; d = json.load(open('$T/sel.json'))
assert [(l['layer'], [h['head'] for h in l['heads']]) for l in d['layers']] == [(1, [3]), (2, [0])], d['layers']"
expect_ok "trace --layers 2" -- circ trace --prompt "x y" --layers 2 --name lay --out "$TMP/r"
check "trace --layers traces that layer" $PY -c "
import json; d = json.load(open('$T/lay.json')); assert [l['layer'] for l in d['layers']] == [2]"

# ---- heads: schema, classes, np=1 == np=2 --------------------------------------------------------
H=results/circuits/head_scores.json
expect_ok "heads" -- circ heads --out "$TMP/h1"
check "heads JSON has the issue's keys and ours" keys "$TMP/h1/$H" n_layers n_heads scores.previous_token \
  scores.duplicate_token scores.induction scores.bos scores.self scores.local scores.entropy classes model prompts.items \
  settings null_baselines.induction induction_stripe scores_by_set.text scores_by_set.synthetic best definitions
check "heads: scores are [L][H]; the previous-token head of layer 1 is labelled; the induction stripe peaks at L3H0" \
  $PY - "$TMP/h1/$H" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for k, v in d["scores"].items():
    assert len(v) == d["n_layers"] and all(len(r) == d["n_heads"] for r in v), k
assert d["prompts"]["count"] == 10 and d["prompts"]["synthetic"] == 4, d["prompts"]
prev = [c for c in d["classes"] if c["class"] == "previous_token"]
assert prev and prev[0]["layer"] == 1, d["classes"]
# The bundled model's induction head (MODEL_CARD.md: stripe 0.92 at L = 50): 0.89 here, every
# head of layers 0-2 below 0.09; the stage-1 model (no induction head) peaks at 0.10.
b = d["best"]["induction_stripe"]
assert (b["layer"], b["head"]) == (3, 0) and b["score"] > 0.5, b
# with text and synthetic prompts together the induction class is decided on the synthetic ones
ind = [c for c in d["classes"] if c["class"] == "induction"]
assert ind and (ind[0]["layer"], ind[0]["head"]) == (3, 0) and ind[0]["basis"] == "synthetic", d["classes"]
syn = d["scores_by_set"]["synthetic"]["scores"]["induction"][3][0]
assert abs(ind[0]["score"] - syn) < 1e-6 and ind[0]["score"] > d["scores"]["induction"][3][0], (ind[0], syn)
assert all(c["basis"] == "all" for c in d["classes"] if c["class"] not in ("induction", "duplicate_token"))
for c in d["classes"]:
    for k in ("layer", "head", "class", "score", "threshold", "null_baseline", "examples"):
        assert k in c, k
    assert c["score"] >= c["threshold"] and c["score"] - c["null_baseline"] >= d["settings"]["null_margin"]
    assert c["examples"] and c["examples"][0]["weight"] > 0
PY
expect_ok "heads, 2 ranks" -- circ_np 2 heads --out "$TMP/h2"
check "heads: the same JSON for 1 and 2 ranks" cmp -s "$TMP/h1/$H" "$TMP/h2/$H"
printf 'The cat sat on the mat.\n\nOne two three one two three\n' > "$TMP/p.txt"
printf '{"text": "The cat sat on the mat."}\n{"text": "One two three one two three"}\n' > "$TMP/p.jsonl"
expect_ok "heads --prompts FILE.txt" -- circ heads --prompts "$TMP/p.txt" --out "$TMP/ht"
expect_ok "heads --prompts FILE.jsonl" -- circ heads --prompts "$TMP/p.jsonl" --out "$TMP/hj"
check "heads: .txt and .jsonl give the same prompts and scores" $PY -c "
import json; a = json.load(open('$TMP/ht/$H')); b = json.load(open('$TMP/hj/$H'))
assert a['prompts']['count'] == 6 and a['prompts']['text'] == 2, a['prompts']
assert a['scores'] == b['scores']"

expect_ok "heads when the run's sample is the whole corpus" -- circ heads --num-samples 100000 --out "$TMP/hall"
check "... the synthetic prompts alone; on them L3H0 is labelled induction" $PY -c "
import json; d = json.load(open('$TMP/hall/$H')); assert d['prompts']['text'] == 0 and d['prompts']['synthetic'] == 4
ind = [(c['layer'], c['head']) for c in d['classes'] if c['class'] == 'induction']
assert (3, 0) in ind, d['classes']
assert [c['induction_stripe'] for c in d['classes'] if c['class'] == 'induction'][0] > 0.5, d['classes']"

# ---- weights and dla -----------------------------------------------------------------------------
W=results/circuits/weight_circuits.json
expect_ok "weights" -- circ weights --out "$TMP/w"
check "weights JSON has its keys" keys "$TMP/w/$W" model prompts settings n_kv_heads kv_head_of_head folding.q_norm \
  folding.post_attention_layernorm composition.q composition.k composition.v composition.baseline.q.mean \
  composition.top.q ov_copying.scores ov_copying.eigenvalues ov_copying.baseline.mean
expect_ok "weights, 2 ranks" -- circ_np 2 weights --out "$TMP/w2"
check "weights: the same JSON for 1 and 2 ranks" cmp -s "$TMP/w/$W" "$TMP/w2/$W"
expect_ok "dla" -- circ dla --prompt "The cat sat on the" --target " mat" --distractor " dog" --name cat --out "$TMP/d"
D=$TMP/d/results/circuits/dla_cat.json
check "dla JSON has its keys, and the pieces add up" $PY - "$D" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for k in ("model", "prompts", "settings", "target", "distractor", "metric", "frozen", "embed", "layers", "components"):
    assert k in d, k
m = d["metric"]
assert abs(m["sum_of_pieces"] - m["value"]) < 1e-4 * (1 + abs(m["value"])), m
assert abs(m["sum_with_heads"] - m["value"]) < 1e-4 * (1 + abs(m["value"])), m
for l in d["layers"]:
    assert abs(sum(l["heads"]) - l["attn_out"]) < 1e-5, l
assert len(d["components"]) == 1 + 4 * 9 and len(d["frozen"]["post_attention_layernorm_scale"]) == 4
PY

# ---- the phase: both files, its marker, `phases` -------------------------------------------------
expect_ok "circuits (the phase)" -- circ --out "$TMP/p"
check "the phase writes head scores, weight circuits and its marker" test -s "$TMP/p/$H" -a -s "$TMP/p/$W" \
  -a -s "$TMP/p/.phases/circuits.done"
out=$(circ --out "$TMP/p" 2>&1)
check "the phase prints its headline" test -n "$(printf '%s' "$out" | grep 'phase circuits: best previous_token L1H')"

# ---- bad input: one line, exit 2, nothing written ------------------------------------------------
long=$($PY -c "print(' '.join(['word'] * 1500))")
expect_fail "prompt longer than the context" "circuits trace: --prompt|more than the model's context of 1024" -- \
  circ trace --prompt "$long" --out "$TMP/bad"
check "... exits 2" test "$(rc_of circ trace --prompt "$long" --out "$TMP/bad")" -eq 2
expect_fail "target of two tokens" "--target ' matt' is 2 tokens, not one|' m' (id|'att' (id" -- \
  circ dla --prompt "The cat sat on the" --target " matt" --out "$TMP/bad"
check "... exits 2" test "$(rc_of circ dla --prompt "The cat sat on the" --target " matt" --out "$TMP/bad")" -eq 2
expect_fail "distractor equal to the target" "the same token" -- \
  circ dla --prompt "The cat" --target " mat" --distractor " mat" --out "$TMP/bad"
expect_fail "layer out of range (--heads)" "--heads: layer 9 is out of range|layers 0..3" -- \
  circ trace --prompt "a b" --heads 9.0 --out "$TMP/bad"
expect_fail "head out of range (--heads)" "head 8 of layer 1 is out of range|heads 0..7" -- \
  circ trace --prompt "a b" --heads 1.8 --out "$TMP/bad"
check "... exits 2" test "$(rc_of circ trace --prompt "a b" --heads 1.8 --out "$TMP/bad")" -eq 2
expect_fail "layer out of range (--layers)" "layer 7 out of range" -- circ trace --prompt "a b" --layers 7 --out "$TMP/bad"
check "... exits 2" test "$(rc_of circ trace --prompt "a b" --layers 7 --out "$TMP/bad")" -eq 2
expect_fail "bad --heads" "expected LAYER.HEAD pairs" -- circ trace --prompt "a b" --heads 1 --out "$TMP/bad"
: > "$TMP/empty.txt"
expect_fail "empty prompts file" "$TMP/empty.txt: the prompts file has no prompts" -- \
  circ heads --prompts "$TMP/empty.txt" --out "$TMP/bad"
check "... exits 2" test "$(rc_of circ heads --prompts "$TMP/empty.txt" --out "$TMP/bad")" -eq 2
expect_fail "missing prompts file" "$TMP/none.txt: cannot open the prompts file" -- \
  circ heads --prompts "$TMP/none.txt" --out "$TMP/bad"
expect_fail "prompts file of another kind" "a prompts file is .txt" -- circ heads --prompts "$TMP/p.csv" --out "$TMP/bad"
printf '{"prompt": "x"}\n' > "$TMP/bad.jsonl"
expect_fail "jsonl line without text" "$TMP/bad.jsonl:1: expected an object with a string \"text\"" -- \
  circ heads --prompts "$TMP/bad.jsonl" --out "$TMP/bad"
expect_fail "trace without --prompt" "circuits trace: --prompt \"text\" is required" -- circ trace --out "$TMP/bad"
expect_fail "--prompt without a value" "--prompt needs a value" -- circ trace --prompt
expect_fail "empty prompt" "has 0 token(s)" -- circ trace --prompt "" --out "$TMP/bad"
expect_fail "bad --name" "--name '../x'" -- circ trace --prompt "a" --name ../x --out "$TMP/bad"
check "failed commands wrote nothing" test ! -e "$TMP/bad"
cp "$TMP/h1/$H" "$TMP/h_before.json"
expect_fail "a failed heads run" "the prompts file has no prompts" -- circ heads --prompts "$TMP/empty.txt" --out "$TMP/h1"
check "... leaves the earlier head scores intact" cmp -s "$TMP/h_before.json" "$TMP/h1/$H"
finish
