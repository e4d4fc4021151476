#!/usr/bin/env bash
# Phase 6 on the bundled model: a small run (inspect, capture, geometry, tiny SAEs,
# circuits), then `document`: the documentation validates against its JSON Schema,
# every evidence pointer resolves, its head classes, tasks and labels are the results'
# own, summary.json agrees with it, the score is its stated arithmetic; without a
# verification every verified flag is null, with the format fixture
# tests/data/document/verification.json they follow it (and the resume hash changes);
# `query` answers from it, as a table and --json, and refuses what cannot match.
. "$(dirname "$0")/lib.sh"
SRC=${TP_SOURCE_DIR:?}
M=${TP_BUNDLED_MODEL:-$SRC/models/olmo2-tiny}
PY=/usr/bin/python3
SCHEMA=$SRC/docs/schema/model_documentation.schema.json
CHECK="$(dirname "$0")/check_document.py"
R=$TMP/r
common=(--model "$M" --set data.corpus="$SRC/data/corpus/heldout.jsonl" --num-samples 12 --set data.seq_len=32
        --set forward.batch_size=4 --set capture.hooks=hook_resid_post
        --set sae.num_epochs=2 --set sae.batch_size=128 --set sae.chunk_rows=64 --set sae.window_chunks=4
        --set sae.eval_fraction=0.2 --set sae.hidden_dim=256 --set sae.k=8 --set sae.aux_k=32 --set sae.eval.num_samples=2
        --set geometry.id.k=5 --set geometry.local.k=5 --set geometry.kmeans.k=4 --set geometry.pca.components=16
        --set circuits.heads.corpus_docs=6 --set circuits.heads.synthetic=4 --set circuits.heads.synthetic_len=10
        --set circuits.weights.baseline_samples=2 --set circuits.library.dir="$SRC/configs/circuits")
check() {
  local name=$1; shift
  if "$@"; then passes=$((passes + 1)); echo "ok   $name"; else failures=$((failures + 1)); echo "FAIL $name"; fi
}

out=$("$BIN" phases)
check "document is the last phase" test "$(printf '%s\n' "$out" | tail -1)" = document
expect_fail "document without results/architecture.json" "architecture.json|transpolmo inspect" -- \
  "$BIN" document --out "$TMP/empty"
for p in inspect capture geometry sae circuits; do expect_ok "$p" -- "$BIN" "$p" "${common[@]}" --out "$R"; done
expect_ok "document" -- "$BIN" document "${common[@]}" --out "$R"
for f in model_documentation.json model_documentation.md summary.json; do
  check "docs/findings/$f written" test -s "$R/docs/findings/$f"
done
if $PY -c "import jsonschema" 2>/dev/null; then
  check "schema, evidence, agreement with the results, no verification" $PY "$CHECK" "$SCHEMA" "$R"
else
  failures=$((failures + 1)); echo "FAIL python3-jsonschema is missing (tools/install-deps.sh)"
fi
check "the report says nothing was verified" grep -q "Nothing was verified by intervention" "$R/docs/findings/model_documentation.md"
check "the report cites evidence" grep -q '`results/circuits/head_scores.json#/classes/0`' "$R/docs/findings/model_documentation.md"

# with a verification (the format fixture)
mkdir -p "$TMP/v" && cp -r "$R/." "$TMP/v/" && cp "$DATA/document/verification.json" "$TMP/v/results/"
expect_ok "document with results/verification.json" -- "$BIN" document "${common[@]}" --out "$TMP/v"
check "verified flags follow results/verification.json" $PY "$CHECK" "$SCHEMA" "$TMP/v" --verified
check "results/verification.json is part of the resume hash" \
  test "$(cat "$R/.phases/document.done")" != "$(cat "$TMP/v/.phases/document.done")"

# query
q() { "$BIN" query "$@" 2>/dev/null; }
check "query heads --class previous_token lists L1H3" test -n "$(q heads --class previous_token --out "$TMP/v" | grep -E '^L1H3 +previous_token .* yes$')"
n_doc=$($PY -c "import json,sys; d=json.load(open(sys.argv[1])); print(len(d['heads']['by_class'].get('bos', [])))" "$R/docs/findings/model_documentation.json")
check "query heads --class bos --json: one line per bos head" test "$(q heads --class bos --json --out "$R" | grep -c '"class":"bos"')" = "$n_doc"
check "query circuits --task brackets --json" $PY -c "
import json, sys
rows = [json.loads(l) for l in sys.stdin]
assert len(rows) == 1 and rows[0]['task'] == 'brackets' and rows[0]['verified'] is True, rows" < <(q circuits --task brackets --json --out "$TMP/v")
check "query layers --geometry" test "$(q layers --geometry manifold --json --out "$R" | grep -c '"hook"')" = \
  "$($PY -c "import json,sys; print(sum('manifold' in (l['label'] or '') for l in json.load(open(sys.argv[1]))['geometry']['layers']))" "$R/docs/findings/model_documentation.json")"
check "query features --domain code: every row's top domain" $PY -c "
import json, sys
rows = [json.loads(l) for l in sys.stdin]
assert rows and all(r['top_domain'] == 'code' and 'hook' in r for r in rows), len(rows)" < <(q features --domain code --json --out "$R")
check "query features --token ' to' --verified" test "$(q features --token ' to' --verified --json --out "$TMP/v" | grep -c '"id":0,')" = 1
check "query features --limit 2" test "$(q features --limit 2 --out "$R" | wc -l)" = 3
expect_fail "query over a missing run" "no documentation|transpolmo document" -- "$BIN" query heads --out "$TMP/none"
expect_fail "query heads: unknown class" "unknown class 'nope'|previous_token" -- "$BIN" query heads --class nope --out "$R"
expect_fail "query circuits: unknown task" "unknown task 'nope'|brackets" -- "$BIN" query circuits --task nope --out "$R"
expect_fail "query: unknown subject" "unknown subject 'bogus'" -- "$BIN" query bogus --out "$R"
expect_fail "query: a filter of another subject" "--class is a filter of heads only" -- "$BIN" query circuits --class bos --out "$R"
expect_fail "query: layer out of range" "--layer 9|0..3" -- "$BIN" query layers --layer 9 --out "$R"
check "query errors exit 2" test "$("$BIN" query heads --class nope --out "$R" >/dev/null 2>&1; echo $?)" = 2
check "a failed query leaves no run folder" test ! -e "$TMP/none"
finish
