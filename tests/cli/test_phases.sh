#!/usr/bin/env bash
# The phase list as scripts see it (`transpolmo phases [--json]`), per-command help,
# and jobs/pipeline.sh running the phases the binary lists.
. "$(dirname "$0")/lib.sh"
SRC=${TP_SOURCE_DIR:?}

check() {   # check NAME CONDITION...
  local name=$1; shift
  if "$@"; then passes=$((passes + 1)); echo "ok   $name"; else failures=$((failures + 1)); echo "FAIL $name"; fi
}

list=$("$BIN" phases 2>/dev/null | tr '\n' ' ')
check "phases lists inspect capture geometry sae circuits verify document in order (got: $list)" \
  test "${list% }" = "inspect capture geometry sae circuits verify document"
"$BIN" phases --json > "$TMP/phases.json" 2>/dev/null
check "phases --json gives name, outputs, needs and config_section of each" /usr/bin/python3 - "$TMP/phases.json" <<'PY'
import json, sys
ps = json.load(open(sys.argv[1]))
names = [p["name"] for p in ps]
assert names[:5] == ["inspect", "capture", "geometry", "sae", "circuits"], names
for i, p in enumerate(ps):
    assert p["outputs"] and p["help"], p
    assert all(n in names[:i] for n in p["needs"]), p   # needs run before
    assert p["config_section"] in (None, p["name"]), p
assert ps[2]["needs"] == ["capture"] and "results/geometric_analysis.json" in ps[2]["outputs"]
PY

for c in run capture geometry circuits forward phases; do
  out=$("$BIN" "$c" --help 2>&1); rc=$?
  check "$c --help exits 0 with its usage" test $rc -eq 0 -a -n "$(printf '%s' "$out" | grep "usage: transpolmo $c")"
done
out=$("$BIN" help sae 2>&1); rc=$?
check "help sae names its outputs" test $rc -eq 0 -a -n "$(printf '%s' "$out" | grep 'results/sae_summary.json')"
"$BIN" help nope >/dev/null 2>&1; rc=$?
check "help of an unknown command exits 2" test $rc -eq 2
expect_fail "unknown command" "unknown command 'nope'" -- "$BIN" nope

# jobs/pipeline.sh runs what `phases` lists, one step each (a fake binary records them).
cat > "$TMP/fake" <<SH
#!/bin/sh
if [ "\$1" = phases ]; then printf 'one\ntwo\n'; exit 0; fi
echo "\$1" >> "$TMP/ran"
SH
chmod +x "$TMP/fake"
TP_BIN="$TMP/fake" bash "$SRC/jobs/pipeline.sh" -n 1 "$SRC/configs/default.yaml" > /dev/null 2>&1
check "jobs/pipeline.sh runs the phases the binary lists ($(tr '\n' ' ' < "$TMP/ran" 2>/dev/null))" \
  test "$(tr '\n' ' ' < "$TMP/ran" 2>/dev/null)" = "one two "
finish
