#!/usr/bin/env bash
# `transpolmo features query` (docs/features.md) on a hand-written catalog of schema /2
# (one feature per line) with its index made here by Python from the documented format,
# the same catalog without an index, with a stale index, and as an old /1 catalog
# (indented JSON): every filter (layer, hook, feature, token, density range, domain,
# dead) picks the same features from each; the default output is a table, --json one
# object per feature with "layer" and "hook" in front, --fields picks columns, --sort
# orders (nulls last), --limit cuts after sorting; with a fresh index the catalog is not
# parsed (a byte changed outside the feature lines goes unnoticed) and only the printed
# lines are read; a query outside the catalog's coverage (layer, hook, domain, feature
# id) is an error (exit 2), no match is "no feature matches" and exit 0; bad input is
# one error line and a non-zero exit.
. "$(dirname "$0")/lib.sh"
PY=${PYTHON:-python3}
R=$TMP/run
mkdir -p "$R/results"
CAT=$R/results/features_catalog.json
IDX=$R/results/features_catalog.index.tsv
cat > "$CAT" <<'JSON'
{
"schema":"transpolmo.features_catalog/2",
"coverage":{"documents":12,"rows":200,"by_domain":{"prose":{"rows":100},"python":{"rows":100}}},
"saes":[
{
"hook":"blocks.0.hook_resid_post",
"layer":0,
"d_sae":4,
"rows":100,
"domain_rows":{"prose":50,"python":50},
"dead_features":[3],
"dense_features":[0],
"features":[
{"id":0,"fires":60,"density":0.6,"mean_activation":1.0,"max_activation":3.0,"activation_mass":60.0,"top_contexts":[{"row":5,"activation":3.0,"token_id":7,"token":" the","context":"in⟦ the⟧ end","domain":"prose"}],"promotes":[{"token_id":9,"token":" end","logit":2.0}],"domain_profile":{"prose":0.7,"python":0.3},"top_domain":"prose","monosemanticity":{"score":0.4,"token_purity":0.4,"domain_purity":0.1}},
{"id":1,"fires":5,"density":0.05,"mean_activation":2.0,"max_activation":4.0,"activation_mass":10.0,"top_contexts":[{"row":8,"activation":4.0,"token_id":11,"token":"def","context":"\n⟦def⟧ f","domain":"python"}],"promotes":[{"token_id":12,"token":" __init__","logit":3.5}],"domain_profile":{"python":0.9,"prose":0.1},"monosemanticity":{"score":0.9,"token_purity":1.0,"domain_purity":0.5}},
{"id":2,"fires":20,"density":0.2,"mean_activation":0.5,"max_activation":1.0,"activation_mass":10.5,"top_contexts":[{"row":9,"activation":1.0,"token_id":13,"token":"import","context":"⟦import⟧\tos","domain":"python"}],"promotes":[{"token_id":7,"token":" the","logit":1.5}],"domain_profile":{"python":0.55,"prose":0.45},"top_domain":"python","monosemanticity":{"score":0.2,"token_purity":0.2,"domain_purity":0.0}},
{"id":3,"fires":0,"density":0.0,"mean_activation":null,"max_activation":null}
]
},
{
"hook":"blocks.2.hook_resid_post",
"layer":2,
"d_sae":2,
"rows":100,
"domain_rows":{"prose":50,"python":50},
"dead_features":[],
"dense_features":[],
"features":[
{"id":0,"fires":10,"density":0.1,"mean_activation":1.0,"max_activation":2.0,"activation_mass":10.0,"top_contexts":[{"row":1,"activation":2.0,"token_id":14,"token":"def","context":"⟦def⟧ g","domain":"python"}],"domain_profile":{"python":1.0},"top_domain":"python","monosemanticity":{"score":1.0,"token_purity":1.0,"domain_purity":1.0}},
{"id":1,"fires":30,"density":0.3,"mean_activation":1.0,"max_activation":2.0,"activation_mass":30.0,"domain_profile":{"prose":0.6,"python":0.4},"top_domain":"prose"}
]
}
]
}
JSON

# The index of a catalog, as docs/features.md defines it (an implementation apart from
# the C one: the reader must accept it).
make_index() {
  $PY - "$1" "$2" <<'PYEOF'
import json, os, sys
cat, idx = sys.argv[1], sys.argv[2]
raw = open(cat, "rb").read()
doc = json.loads(raw)
spans, pos, inside = [], 0, False
for ln in raw.split(b"\n"):
    if ln == b'"features":[': inside = True
    elif inside and ln == b"]": inside = False
    elif inside:
        body = ln[:-1] if ln.endswith(b",") else ln
        spans.append((pos, len(body)))
    pos += len(ln) + 1
def esc(s): return s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
def js(v): return esc(json.dumps(v, separators=(",", ":"), ensure_ascii=False))
def num(v):
    if v is None: return ""
    return str(v) if isinstance(v, int) and not isinstance(v, bool) else "%.9g" % v
def distinct(lst):
    out = []
    for e in lst:
        t = e.get("token")
        if isinstance(t, str) and t not in out: out.append(t)
    return out
st = os.stat(cat)
meta = [{"hook": L["hook"], "layer": L["layer"], "d_sae": L["d_sae"], "rows": L["rows"],
         "domain_rows": L["domain_rows"], "features": len(L["features"])} for L in doc["saes"]]
cols = ["sae", "hook", "layer", "feature", "fires", "density", "mean_activation", "max_activation", "dead", "dense",
        "top_domain", "top_domain_share", "top_token", "top_context", "top_tokens", "promoted_tokens",
        "domain_profile", "offset", "length"]
out = ["# transpolmo.features_index/1\tcatalog_bytes=%d\tcatalog_mtime_ns=%d\tcatalog_schema=%s\tsaes=%s"
       % (st.st_size, st.st_mtime_ns, esc(doc["schema"]), js(meta)), "\t".join(cols)]
k = 0
for i, L in enumerate(doc["saes"]):
    for f in L["features"]:
        dp = f.get("domain_profile")
        td = f.get("top_domain") or (max(dp, key=lambda d: dp[d]) if dp else None)
        tc = f.get("top_contexts")
        t0 = tc[0] if tc else {}
        row = [str(i), esc(L["hook"]), num(L["layer"]), num(f["id"]), num(f["fires"]), num(f["density"]),
               num(f.get("mean_activation")), num(f.get("max_activation")), "1" if f["fires"] == 0 else "0",
               "1" if f["id"] in L["dense_features"] else "0", esc(td or ""), num(dp[td]) if td else "",
               esc(t0.get("token", "")), esc(t0.get("context", "")), js(distinct(tc)) if tc is not None else "",
               js(distinct(f["promotes"])) if "promotes" in f else "", js(dp) if dp is not None else "",
               str(spans[k][0]), str(spans[k][1])]
        k += 1
        out.append("\t".join(row))
open(idx, "w", encoding="utf-8").write("\n".join(out) + "\n")
PYEOF
}
make_index "$CAT" "$IDX" || { echo "FAIL making the index"; exit 1; }
# The same catalog as schema /1: indented JSON, no coverage, no index.
V1=$TMP/v1.json
$PY -c 'import json,sys; d=json.load(open(sys.argv[1])); d["schema"]="transpolmo.features_catalog/1"; del d["coverage"]; json.dump(d, open(sys.argv[2],"w"), indent=2, ensure_ascii=False)' "$CAT" "$V1"
# And /2 without an index.
mkdir -p "$TMP/noidx/results" && cp "$CAT" "$TMP/noidx/results/"

ok() { passes=$((passes + 1)); echo "ok   $1"; }
bad() { failures=$((failures + 1)); echo "FAIL $1"; }

# The catalog is one JSON document with a feature per line.
if $PY -c 'import json,sys; json.load(open(sys.argv[1]))' "$CAT" && [ "$(grep -c '^{"id":' "$CAT")" -eq 6 ]; then
  ok "the /2 catalog parses as JSON, 6 feature lines"
else bad "the /2 catalog"; fi
if command -v jq >/dev/null; then
  n=$(jq '.saes[0].features | length' "$CAT")
  [ "$n" = 4 ] && ok "jq reads the catalog" || bad "jq: $n"
fi

# Lines of a --json query as "layer:id" separated by spaces (and checks each line's hook).
ids_of() {
  "$BIN" features query "$@" --json 2>/dev/null | $PY -c '
import json, sys
out = []
for line in sys.stdin:
    j = json.loads(line)
    assert j["hook"] == "blocks.%d.hook_resid_post" % j["layer"], line
    out.append("%d:%d" % (j["layer"], j["id"]))
print(" ".join(out))'
}
SOURCES=("index:--out $R" "no-index:--out $TMP/noidx" "schema-1:--catalog $V1")
expect_ids() {
  local name=$1 want=$2
  shift 3
  for s in "${SOURCES[@]}"; do
    local got
    # shellcheck disable=SC2086
    got=$(ids_of ${s#*:} "$@")
    if [ "$got" = "$want" ]; then passes=$((passes + 1)); echo "ok   ${s%%:*} $name: $got"
    else failures=$((failures + 1)); echo "FAIL ${s%%:*} $name: got '$got', want '$want'"; fi
  done
}

expect_ok "query everything" -- "$BIN" features query --out "$R"
expect_ids "no filter: every feature in catalog order" "0:0 0:1 0:2 0:3 2:0 2:1" --
expect_ids "--layer 2" "2:0 2:1" -- --layer 2
expect_ids "--hook" "0:0 0:1 0:2 0:3" -- --hook blocks.0.hook_resid_post
expect_ids "--feature 1 (every layer)" "0:1 2:1" -- --feature 1
expect_ids "--feature 3 (only layer 0 has one)" "0:3" -- --feature 3
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
expect_ids "--sort density:desc" "0:0 2:1 0:2 2:0 0:1 0:3" -- --sort density:desc
expect_ids "--sort density (asc)" "0:3 0:1 2:0 0:2 2:1 0:0" -- --sort density
expect_ids "--sort mean:desc, ties in catalog order, null last" "0:1 0:0 2:0 2:1 0:2 0:3" -- --sort mean:desc
expect_ids "--sort mean:asc, null last" "0:2 0:0 2:0 2:1 0:1 0:3" -- --sort mean:asc
expect_ids "--sort a feature key (activation_mass), ties in catalog order" "0:0 2:1 0:2 0:1 2:0 0:3" -- --sort activation_mass:desc
expect_ids "--sort a nested key, nulls last in catalog order" "2:0 0:1 0:0 0:2 0:3 2:1" -- --sort monosemanticity.score:desc
expect_ids "--sort text (top_domain)" "0:0 2:1 0:1 0:2 2:0 0:3" -- --sort top_domain
expect_ids "--limit after --sort" "0:0 2:1" -- --sort density:desc --limit 2

# --json: the whole entry, layer and hook first.
line=$("$BIN" features query --out "$R" --layer 0 --feature 0 --json 2>/dev/null)
if printf '%s' "$line" | grep -qF '"context":"in⟦ the⟧ end"' && printf '%s' "$line" | grep -q '^{"layer":0,"hook":"blocks.0.hook_resid_post","id":0,' \
   && [ "$(printf '%s\n' "$line" | grep -c '')" -eq 1 ]; then ok "--json: one line per feature, the whole entry"
else bad "the --json line of layer 0 feature 0: $line"; fi
line=$("$BIN" features query --out "$R" --layer 0 --feature 1 --json --fields id,fires,top_domain,monosemanticity.score,top_tokens 2>/dev/null)
[ "$line" = '{"id":1,"fires":5,"top_domain":"python","monosemanticity.score":0.9,"top_tokens":["def"]}' ] \
  && ok "--json --fields: only those keys" || bad "--json --fields: $line"

# The default table: a header, a row per feature, control characters visible.
out=$("$BIN" features query --out "$R" 2>/dev/null)
head=$(printf '%s\n' "$out" | head -1)
if printf '%s' "$head" | grep -qE '^hook +feature +density +fires +mean +max +top_domain +share +top_token +top_context$' \
   && [ "$(printf '%s\n' "$out" | grep -c '')" -eq 7 ]; then ok "table: header and 6 rows"
else bad "table header/rows: $out"; fi
row=$(printf '%s\n' "$out" | grep -F '\n⟦def⟧ f')
if printf '%s' "$row" | grep -qE '^blocks\.0\.hook_resid_post +1 +0\.05 +5 +2 +4 +python +0\.9 +"def" +\\n⟦def⟧ f$'; then
  ok "table: the row of layer 0 feature 1 (the newline shown as \\n, the token quoted)"
else bad "table row: '$row'"; fi
printf '%s\n' "$out" | grep -qF '⟦import⟧\tos' && ok "table: a tab shown as \\t" || bad "table tab: $out"
dead=$(printf '%s\n' "$out" | grep -E '^blocks\.0\.hook_resid_post +3 ')
printf '%s' "$dead" | grep -qE ' 3 +0 +0 +- +- +- +- +- +-$' && ok "table: a dead feature's nulls as -" || bad "dead row: '$dead'"
out=$("$BIN" features query --out "$R" --fields feature,fires,top_domain --layer 2 2>/dev/null)
want=$(printf 'feature  fires  top_domain\n      0     10  python\n      1     30  prose')
[ "$out" = "$want" ] && ok "table --fields: those columns, numbers right-aligned" || bad "table --fields: '$out'"
out_noidx=$("$BIN" features query --out "$TMP/noidx" 2>/dev/null)
out_idx=$("$BIN" features query --out "$R" 2>/dev/null)
[ "$out_noidx" = "$out_idx" ] && ok "the table from the index is the table from the catalog" || bad "index vs catalog table"

# Where the rows come from: the index when fresh; a byte changed in the catalog's
# coverage line (same size, same mtime) is not seen, since the catalog is not parsed.
err=$("$BIN" features query --out "$R" 2>&1 >/dev/null)
printf '%s' "$err" | grep -q "from the index" && ok "a fresh index is used" || bad "fresh index not used: $err"
cp "$CAT" "$TMP/cat.orig"
$PY - "$CAT" <<'PYEOF'
import os, sys
p = sys.argv[1]; st = os.stat(p)
b = bytearray(open(p, "rb").read()); i = b.index(b'"documents":12')
b[i + 13] = ord("}")     # "documents":1} — the document no longer parses
open(p, "wb").write(bytes(b)); os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
PYEOF
if ! $PY -c 'import json,sys; json.load(open(sys.argv[1]))' "$CAT" 2>/dev/null \
   && [ "$(ids_of --out "$R" --sort density:desc --limit 3)" = "0:0 2:1 0:2" ]; then
  ok "with a fresh index the catalog is not parsed: only the printed lines are read"
else bad "the query parsed the whole catalog"; fi
# A stale index (the catalog changed since): not trusted, the catalog is read. The
# stale index here also lies (every feature dense and dead).
cp "$TMP/cat.orig" "$CAT"
make_index "$CAT" "$IDX"
$PY -c 'import sys; p=sys.argv[1]; L=open(p).read().split("\n"); L=L[:2]+["\t".join(c if k not in (8,9) else "1" for k,c in enumerate(l.split("\t"))) for l in L[2:] if l]; open(p,"w").write("\n".join(L)+"\n")' "$IDX"
touch -d '2001-01-01' "$CAT"
err=$("$BIN" features query --out "$R" --dead 2>&1 >/dev/null)
got=$(ids_of --out "$R" --dead)
if [ "$got" = "0:3" ] && printf '%s' "$err" | grep -q "stale" && printf '%s' "$err" | grep -q "from the catalog"; then
  ok "a stale index is not used: $(printf '%s' "$err" | grep stale)"
else bad "stale index: got '$got', $err"; fi
printf 'not an index\n' > "$IDX"
got=$(ids_of --out "$R" --dead)
err=$("$BIN" features query --out "$R" --dead 2>&1 >/dev/null)
if [ "$got" = "0:3" ] && printf '%s' "$err" | grep -q "not usable"; then ok "an unreadable index: the catalog is read"
else bad "unreadable index: '$got' $err"; fi
make_index "$CAT" "$IDX"

# Coverage: a query that cannot match says why (exit 2); no match is not an error.
expect_fail "a domain no SAE has" "domain 'scripture' is not among the catalog's domains (prose, python)" -- \
  "$BIN" features query --out "$R" --domain scripture
expect_fail "a layer with no SAE" "layer 9 is not among the catalog's layers (0, 2)" -- "$BIN" features query --out "$R" --layer 9
expect_fail "a hook with no SAE" "hook 'blocks.5.hook_mlp_out' is not among the catalog's hooks" -- \
  "$BIN" features query --out "$R" --hook blocks.5.hook_mlp_out
expect_fail "a layer and a hook of different SAEs" "no SAE is on hook 'blocks.2.hook_resid_post' at layer 0" -- \
  "$BIN" features query --out "$R" --layer 0 --hook blocks.2.hook_resid_post
expect_fail "a feature id beyond every SAE" "feature 4 is beyond|0-3 at layer 0, 0-1 at layer 2" -- \
  "$BIN" features query --out "$R" --feature 4
expect_fail "a feature id beyond the SAE asked" "feature 2 is beyond|0-1 at layer 2" -- \
  "$BIN" features query --out "$R" --feature 2 --layer 2
expect_fail "schema /1: a layer with no SAE" "layer 7 is not among" -- "$BIN" features query --catalog "$V1" --layer 7
for args in "--domain scripture" "--layer 9" "--fields densty" "--sort density:up"; do
  # shellcheck disable=SC2086
  "$BIN" features query --out "$R" $args >/dev/null 2>&1
  rc=$?
  [ $rc -eq 2 ] && ok "$args exits 2" || bad "$args exits $rc, not 2"
done
out=$("$BIN" features query --out "$R" --token th 2>"$TMP/err")
rc=$?
if [ $rc -eq 0 ] && [ -z "$out" ] && grep -q "no feature matches" "$TMP/err"; then ok "no match: nothing on stdout, 'no feature matches', exit 0"
else bad "no match: rc $rc, '$out', $(cat "$TMP/err")"; fi

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
expect_fail "an unknown field" "--fields|'densty'|density" -- "$BIN" features query --out "$R" --fields feature,densty
expect_fail "an empty field" "--fields|empty" -- "$BIN" features query --out "$R" --fields feature,,fires
expect_fail "an unknown sort field" "--sort|'weight'" -- "$BIN" features query --out "$R" --sort weight
expect_fail "a bad sort direction" "--sort|asc or desc|'up'" -- "$BIN" features query --out "$R" --sort density:up
expect_fail "unknown subcommand" "unknown subcommand|list" -- "$BIN" features list --out "$R"
expect_fail "no subcommand" "missing subcommand" -- "$BIN" features --out "$R"
expect_fail "unknown option" "--colour" -- "$BIN" features query --out "$R" --colour red
"$BIN" features query --out "$R" --layer abc >/dev/null 2>&1
rc=$?
[ $rc -eq 2 ] && ok "a bad option exits 2" || bad "a bad option exits $rc, not 2"
"$BIN" features query --catalog "$TMP/bad.json" >/dev/null 2>&1
rc=$?
[ $rc -eq 1 ] && ok "a malformed catalog exits 1" || bad "a malformed catalog exits $rc, not 1"
finish
