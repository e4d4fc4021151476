#!/usr/bin/env bash
# The bundled model against transformers: `transpolmo eval` per-token losses and
# mean loss (1e-4 relative), `transpolmo generate` greedy ids token for token on
# five prompts, and tokenizer ids of the prompts. Goldens: tools/reference/
# make_golden_bundled.py -> tests/data/bundled (TP_BUNDLED_GOLDEN, TP_BUNDLED_MODEL
# override the locations).
. "$(dirname "$0")/lib.sh"
SRC=${TP_SOURCE_DIR:?}
G=${TP_BUNDLED_GOLDEN:-$DATA/bundled}
M=${TP_BUNDLED_MODEL:-$SRC/models/olmo2-tiny}
CLOSE=${TP_NPY_ALLCLOSE:?}
if [ ! -f "$G/generate.json" ] || [ ! -f "$M/config.json" ]; then
  echo "FAIL bundled model or its goldens missing ($M, $G)"; exit 1
fi
seq_len=$(sed -n 's/.*"seq_len": *\([0-9]*\).*/\1/p' "$G/eval.json")
expect_ok "eval" -- "$BIN" eval --model "$M" --set data.corpus="$G/sample.jsonl" --num-samples 1000000 \
  --set data.seq_len="$seq_len" --out "$TMP/run" --per-token-out "$TMP/pt.npy"
expect_ok "per-token losses match transformers" -- "$CLOSE" "$TMP/pt.npy" "$G/per_token_loss.npy" 1e-4
want=$(sed -n 's/.*"loss": *\([0-9.e+-]*\).*/\1/p' "$G/eval.json")
got=$(sed -n 's/.*"loss": *\([0-9.e+-]*\),*$/\1/p' "$TMP/run/results/eval.json" | head -1)
if awk -v a="$got" -v b="$want" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-4 * b) }'; then
  passes=$((passes+1)); echo "ok   mean loss $got vs transformers $want"
else failures=$((failures+1)); echo "FAIL mean loss $got vs transformers $want"; fi

# generate.json: one case per line group; pull prompt_ids and generated_ids with sed.
n=0
while IFS='|' read -r pids gids; do
  n=$((n+1))
  out=$("$BIN" generate --model "$M" --ids "$pids" --max-new 24 2>/dev/null | sed -n 's/^ids: //p')
  if [ "$out" = "$gids" ]; then passes=$((passes+1)); echo "ok   greedy case $n: $out"
  else failures=$((failures+1)); echo "FAIL greedy case $n: got $out want $gids"; fi
done < <(tr -d ' \n' < "$G/generate.json" | grep -o '"prompt_ids":\[[0-9,]*\],"generated_ids":\[[0-9,]*\]' |
         sed 's/"prompt_ids":\[\([0-9,]*\)\],"generated_ids":\[\([0-9,]*\)\]/\1|\2/')
[ $n -eq 5 ] || { failures=$((failures+1)); echo "FAIL expected 5 generate cases, found $n"; }
finish
