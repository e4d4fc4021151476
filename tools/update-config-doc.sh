#!/usr/bin/env bash
# Regenerates the key table of docs/config.md from the schema (`transpolmo config
# schema`); tests/cli/test_docs.sh fails until the table matches.
#   usage: tools/update-config-doc.sh [BINARY]     (default build/transpolmo)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$root/build/transpolmo}
doc=$root/docs/config.md
table=$(mktemp)
trap 'rm -f "$table" "$doc.tmp"' EXIT
"$bin" config schema > "$table"
# The doc's table is its one block of lines starting with '|': replace it.
awk -v table="$table" '
  /^\|/ { if (!done) { while ((getline line < table) > 0) print line; done = 1 } next }
  { print }' "$doc" > "$doc.tmp"
mv "$doc.tmp" "$doc"
trap 'rm -f "$table"' EXIT
echo "update-config-doc: $(grep -c '^| `' "$doc") keys in $doc"
