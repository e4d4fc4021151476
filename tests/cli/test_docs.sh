#!/usr/bin/env bash
# docs/config.md's key table is the schema's own output (`transpolmo config schema`):
# a key added to a section (src/settings.c, a phase's own) without regenerating the table fails here.
. "$(dirname "$0")/lib.sh"
SRC=${TP_SOURCE_DIR:?}
"$BIN" config schema > "$TMP/schema.md" 2>/dev/null
grep '^|' "$SRC/docs/config.md" > "$TMP/doc.md"
if cmp -s "$TMP/schema.md" "$TMP/doc.md"; then passes=$((passes+1)); echo "ok   docs/config.md lists every key as the schema does"
else failures=$((failures+1)); echo "FAIL docs/config.md is out of date: regenerate its table with tools/update-config-doc.sh"
  diff "$TMP/doc.md" "$TMP/schema.md" | head -20; fi
# docs/reliability.md's table of bad inputs and faults: every row names a test that
# exists and asserts the exit status the row gives.
if out=$(/usr/bin/python3 "$SRC/tests/cli/check_reliability_table.py" "$SRC/docs/reliability.md" "$SRC/tests/cli" 2>&1); then
  passes=$((passes+1)); echo "ok   docs/reliability.md: $(printf '%s' "$out" | tail -1)"
else failures=$((failures+1)); echo "FAIL docs/reliability.md's table and the tests disagree:"; printf '%s\n' "$out"; fi
finish
