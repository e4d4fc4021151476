#!/usr/bin/env bash
# The store's provenance covers the weights and the corpus (size, mtime, safetensors
# header and sampled blocks: docs/store.md): weights replaced in place after capture,
# or a corpus edited, make a capture rerun refuse to resume into the old store and
# make the phases that read it (geometry, sae, document here; verify calls the same check)
# refuse it, each in one line saying what changed. Unchanged inputs still resume.
. "$(dirname "$0")/lib.sh"
SRC=${TP_SOURCE_DIR:?}
M=$TMP/model; cp -r "${TP_BUNDLED_MODEL:-$SRC/models/olmo2-tiny}" "$M"
C=$TMP/corpus.jsonl; head -c 200000 "$SRC/data/corpus/heldout.jsonl" | sed '$d' > "$C"
common=(--model "$M" --set data.corpus="$C" --num-samples 8 --set data.seq_len=32 --set forward.batch_size=4
        --set capture.hooks=hook_resid_post --layers 1 --set geometry.id.sample=100 --set geometry.local.sample=40
        --set geometry.kmeans.k=3 --set geometry.kmeans.top_tokens=2)
expect_ok "capture" -- "$BIN" capture "${common[@]}" --out "$TMP/r"
expect_ok "capture again (unchanged inputs resume)" -- "$BIN" capture "${common[@]}" --out "$TMP/r"
cp "$TMP/r/activations.h5" "$TMP/store.before"
expect_ok "geometry on unchanged inputs" -- "$BIN" geometry "${common[@]}" --out "$TMP/r"

# Same size, same mtime, one mantissa byte changed near the end of the data: only
# the sampled blocks can see it.
f=$M/model.safetensors; cp -p "$f" "$TMP/weights.orig"
python3 - "$f" <<'PY'
import sys
p = sys.argv[1]; b = bytearray(open(p, 'rb').read()); b[-4] ^= 1; open(p, 'wb').write(b)
PY
touch -r "$TMP/weights.orig" "$f"
expect_fail "capture after weights changed (same size and mtime)" "$TMP/r/activations.h5|weights_fingerprint" rc=2 -- \
  "$BIN" capture "${common[@]}" --out "$TMP/r"
expect_fail "geometry after weights changed (same size and mtime)" "$TMP/r/activations.h5|model weights changed|weights_fingerprint|$M" -- \
  "$BIN" geometry "${common[@]}" --out "$TMP/r"

# Replaced by a modified copy (new file, new mtime): the case of the issue.
cp "$f" "$TMP/weights.mod" && mv "$TMP/weights.mod" "$f"
expect_fail "capture after weights replaced" "$TMP/r/activations.h5|weights_" -- "$BIN" capture "${common[@]}" --out "$TMP/r"
expect_fail "geometry after weights replaced" "$TMP/r/activations.h5|model weights changed" rc=2 -- \
  "$BIN" geometry "${common[@]}" --out "$TMP/r"
expect_fail "sae after weights replaced" "$TMP/r/activations.h5|model weights changed" -- \
  "$BIN" sae "${common[@]}" --out "$TMP/r"
expect_fail "document after weights replaced" "$TMP/r/activations.h5|model weights changed" -- \
  "$BIN" document "${common[@]}" --out "$TMP/r"

# Restored: accepted again. Then the corpus edited.
cp -p "$TMP/weights.orig" "$f"
expect_ok "geometry after weights restored" -- "$BIN" geometry "${common[@]}" --out "$TMP/r"
printf '{"text": "one more document"}\n' >> "$C"
expect_fail "geometry after corpus edited" "$TMP/r/activations.h5|corpus changed|corpus_" rc=2 -- \
  "$BIN" geometry "${common[@]}" --out "$TMP/r"
expect_fail "capture after corpus edited" "$TMP/r/activations.h5|corpus" -- "$BIN" capture "${common[@]}" --out "$TMP/r"

if cmp -s "$TMP/store.before" "$TMP/r/activations.h5" || [ -f "$TMP/r/activations.h5" ]; then
  passes=$((passes + 1)); echo "ok   the store is still there"
else failures=$((failures + 1)); echo "FAIL the store was lost"; fi
finish
