#!/usr/bin/env bash
# `transpolmo features query` on a hand-written catalog (docs/features.md): every
# filter (layer, hook, feature, token, density range, domain, dead, limit) picks the
# features it should, one JSON object per line with "layer" and "hook" in front; bad
# input (no catalog, malformed JSON, not a catalog, a bad option value, an unknown
# subcommand or option, a layer with no SAE) is one error line and a non-zero exit.
. "$(dirname "$0")/lib.sh"
PY=${PYTHON:-python3}
R=$TMP/run
mkdir -p "$R/results"
cat > "$R/results/features_catalog.json" <<'JSON'
{
  "schema": "transpolmo.features_catalog/1",
  "saes": [
    {
      "hook": "blocks.0.hook_resid_post", "layer": 0, "d_sae": 4, "rows": 100,
      "dead_features": [3], "dense_features": [0],
      "features": [
        {"id": 0, "fires": 60, "density": 0.6, "mean_activation": 1.0, "max_activation": 3.0,
         "top_contexts": [{"row": 5, "activation": 3.0, "token_id": 7, "token": " the", "context": "in⟦ the⟧ end", "domain": "prose"}],
         "promotes": [{"token_id": 9, "token": " end", "logit": 2.0}],
         "domain_profile": {"prose": 0.7, "python": 0.3}, "top_domain": "prose"},
        {"id": 1, "fires": 5, "density": 0.05, "mean_activation": 2.0, "max_activation": 4.0,
         "top_contexts": [{"row": 8, "activation": 4.0, "token_id": 11, "token": "def", "context": "\n⟦def⟧ f", "domain": "python"}],
         "promotes": [{"token_id": 12, "token": " __init__", "logit": 3.5}],
         "domain_profile": {"python": 0.9, "prose": 0.1}},
        {"id": 2, "fires": 20, "density": 0.2, "mean_activation": 0.5, "max_activation": 1.0,
         "top_contexts": [{"row": 9, "activation": 1.0, "token_id": 13, "token": "import", "context": "⟦import⟧ os", "domain": "python"}],
         "promotes": [{"token_id": 7, "token": " the", "logit": 1.5}],
         "domain_profile": {"python": 0.55, "prose": 0.45}, "top_domain": "python"},
        {"id": 3, "fires": 0, "density": 0.0, "mean_activation": null, "max_activation": null}
      ]
    },
    {
      "hook": "blocks.2.hook_resid_post", "layer": 2, "d_sae": 2, "rows": 100,
      "dead_features": [], "dense_features": [],
      "features": [
        {"id": 0, "fires": 10, "density": 0.1, "mean_activation": 1.0, "max_activation": 2.0,
         "top_contexts": [{"row": 1, "activation": 2.0, "token_id": 14, "token": "def", "context": "⟦def⟧ g", "domain": "python"}],
         "domain_profile": {"python": 1.0}, "top_domain": "python"},
        {"id": 1, "fires": 30, "density": 0.3, "mean_activation": 1.0, "max_activation": 2.0,
         "domain_profile": {"prose": 0.6, "python": 0.4}, "top_domain": "prose"}
      ]
    }
  ]
}
JSON

q() { "$BIN" features query --out "$R" "$@" 2>/dev/null; }
# Lines of the query as "layer:id" separated by spaces (and checks each line's hook).
ids() {
  q "$@" | $PY -c '
import json, sys
out = []
for line in sys.stdin:
    j = json.loads(line)
    assert j["hook"] == "blocks.%d.hook_resid_post" % j["layer"], line
    out.append("%d:%d" % (j["layer"], j["id"]))
print(" ".join(out))'
}
expect_ids() {
  local name=$1 want=$2
  shift 3
  local got
  got=$(ids "$@")
  if [ "$got" = "$want" ]; then passes=$((passes + 1)); echo "ok   $name: $got"
  else failures=$((failures + 1)); echo "FAIL $name: got '$got', want '$want'"; fi
}

expect_ok "query everything" -- "$BIN" features query --out "$R"
expect_ids "no filter: every feature in catalog order" "0:0 0:1 0:2 0:3 2:0 2:1" -- 
expect_ids "--layer 2" "2:0 2:1" -- --layer 2
expect_ids "--hook" "0:0 0:1 0:2 0:3" -- --hook blocks.0.hook_resid_post
expect_ids "--feature 1 (every layer)" "0:1 2:1" -- --feature 1
expect_ids "--layer 0 --feature 2" "0:2" -- --layer 0 --feature 2
expect_ids "--token the: activating ' the' or promoted ' the'" "0:0 0:2" -- --token the
expect_ids "--token ' the' exactly" "0:0 0:2" -- --token " the"
expect_ids "--token def" "0:1 2:0" -- --token def
expect_ids "--token __init__ (promoted)" "0:1" -- --token __init__
expect_ids "--token th matches no token" "" -- --token th
expect_ids "--density-min 0.2" "0:0 0:2 2:1" -- --density-min 0.2
expect_ids "--density-max 0.1" "0:1 0:3 2:0" -- --density-max 0.1
expect_ids "--density-min 0.1 --density-max 0.3" "0:2 2:0 2:1" -- --density-min 0.1 --density-max 0.3
expect_ids "--domain python (top domain, also when top_domain is absent)" "0:1 0:2 2:0" -- --domain python
expect_ids "--domain prose --domain-min 0.45" "0:0 0:2 2:1" -- --domain prose --domain-min 0.45
expect_ids "--dead" "0:3" -- --dead
expect_ids "--limit 2" "0:0 0:1" -- --limit 2
expect_ids "--limit with a filter" "0:1" -- --domain python --limit 1
expect_ids "--catalog FILE instead of the run dir" "0:3" -- --catalog "$R/results/features_catalog.json" --dead
line=$(q --layer 0 --feature 0)
if printf '%s' "$line" | grep -qF '"context":"in⟦ the⟧ end"' && [ "$(printf '%s\n' "$line" | grep -c '')" -eq 1 ]; then
  passes=$((passes + 1)); echo "ok   one line per feature, the whole entry"
else failures=$((failures + 1)); echo "FAIL the line of layer 0 feature 0: $line"; fi

# Bad input: one error line, non-zero exit.
expect_fail "no catalog" "no features catalog|$TMP/none/results/features_catalog.json" -- "$BIN" features query --out "$TMP/none"
printf '{"saes": [\n  {"features": [}\n' > "$TMP/bad.json"
expect_fail "malformed JSON" "bad.json:2" -- "$BIN" features query --catalog "$TMP/bad.json"
printf '{"layers": []}\n' > "$TMP/other.json"
expect_fail "not a catalog" "other.json|not a features catalog" -- "$BIN" features query --catalog "$TMP/other.json"
expect_fail "--layer not a number" "--layer|abc" -- "$BIN" features query --out "$R" --layer abc
expect_fail "--layer negative" "--layer|-1" -- "$BIN" features query --out "$R" --layer -1
expect_fail "--feature 1.5" "--feature|1.5" -- "$BIN" features query --out "$R" --feature 1.5
expect_fail "--density-min above 1" "--density-min|2" -- "$BIN" features query --out "$R" --density-min 2
expect_fail "--density-min > --density-max" "--density-min|--density-max" -- "$BIN" features query --out "$R" --density-min 0.5 --density-max 0.1
expect_fail "--domain-min without --domain" "--domain-min|--domain NAME" -- "$BIN" features query --out "$R" --domain-min 0.5
expect_fail "--limit 0" "--limit|0" -- "$BIN" features query --out "$R" --limit 0
expect_fail "--token without a value" "--token|needs a value" -- "$BIN" features query --out "$R" --token
expect_fail "a layer without an SAE" "no SAE for layer 7" -- "$BIN" features query --out "$R" --layer 7
expect_fail "unknown subcommand" "unknown subcommand|list" -- "$BIN" features list --out "$R"
expect_fail "no subcommand" "missing subcommand" -- "$BIN" features --out "$R"
expect_fail "unknown option" "--colour" -- "$BIN" features query --out "$R" --colour red
"$BIN" features query --out "$R" --layer abc >/dev/null 2>&1
rc=$?
if [ $rc -eq 2 ]; then passes=$((passes + 1)); echo "ok   a bad option exits 2"
else failures=$((failures + 1)); echo "FAIL a bad option exits $rc, not 2"; fi
finish
