#!/usr/bin/env bash
# `transpolmo tokenize` end to end: text, file and stdin to the ids `tokenizers` gives
# (tests/data/tokenizers/*/golden.json), ids back to the exact text, --model DIR,
# invalid UTF-8 (error naming the byte offset, or replaced), and one-line errors.
. "$(dirname "$0")/lib.sh"
TOKDIR=$DATA/tokenizers/cl100k-dolma2
TOK=$TOKDIR/tokenizer.json

# expect_out NAME WANT -- command...: stdout must be exactly WANT.
expect_out() {
  local name=$1 want=$2
  shift 3
  local got
  got=$("$@" 2>"$TMP/err")
  if [ $? -eq 0 ] && [ "$got" = "$want" ]; then passes=$((passes + 1)); echo "ok   $name"
  else failures=$((failures + 1)); echo "FAIL $name: got '$got', want '$want'"; cat "$TMP/err"; fi
}

# cl100k_base: "Hello world" is [9906, 1917] (tiktoken's well-known ids).
expect_out "text to ids" "9906,1917" -- "$BIN" tokenize --tokenizer "$TOK" --text "Hello world"
expect_out "ids to text" "Hello world" -- "$BIN" tokenize --tokenizer "$TOK" --ids 9906,1917
expect_out "--model DIR" "9906,1917" -- "$BIN" tokenize --model "$TOKDIR" --text "Hello world"
expect_out "special token" "9906,100257,1917" -- "$BIN" tokenize --tokenizer "$TOK" --text "Hello<|endoftext|> world"
expect_out "skip special" "Hello world" -- "$BIN" tokenize --tokenizer "$TOK" --ids 9906,100257,1917 --skip-special
expect_out "show tokens" "$(printf '9906\tHello\n1917\t\xc4\xa0world')" -- "$BIN" tokenize --tokenizer "$TOK" --text "Hello world" --show-tokens
expect_out "empty text" "" -- "$BIN" tokenize --tokenizer "$TOK" --text ""

# Every 16th golden case of every tokenizer (all of them are in test_tokenizer.c; each
# run here pays MPI start-up) through --file, and back through --ids.
for g in "$DATA"/tokenizers/*/golden.json; do
  d=$(dirname "$g")
  [ -f "$d/tokenizer.json" ] || continue
  python3 - "$g" "$TMP/cases" <<'EOF'
import json, os, sys
g = json.load(open(sys.argv[1], encoding="utf-8"))
os.makedirs(sys.argv[2], exist_ok=True)
for i, c in enumerate(g["encode"]):
    if i % 16:
        continue
    open(os.path.join(sys.argv[2], "%03d.txt" % i), "wb").write(c["text"].encode("utf-8"))
    open(os.path.join(sys.argv[2], "%03d.ids" % i), "w").write(",".join(map(str, c["ids"])))
    open(os.path.join(sys.argv[2], "%03d.dec" % i), "wb").write(c["decoded"].encode("utf-8"))
EOF
  bad=0; n=0
  for t in "$TMP"/cases/*.txt; do
    base=${t%.txt}; n=$((n + 1))
    got=$("$BIN" tokenize --tokenizer "$d/tokenizer.json" --file "$t" 2>&1)
    if [ "$got" != "$(cat "$base.ids")" ]; then bad=$((bad + 1)); echo "  $(basename "$d") $(basename "$t"): ids differ"; continue; fi
    [ -s "$base.ids" ] || continue
    "$BIN" tokenize --tokenizer "$d/tokenizer.json" --ids "$(cat "$base.ids")" > "$TMP/out" 2>&1
    if ! cmp -s "$TMP/out" "$base.dec"; then bad=$((bad + 1)); echo "  $(basename "$d") $(basename "$t"): decoded text differs"; fi
  done
  rm -rf "$TMP/cases"
  if [ $bad -eq 0 ] && [ $n -gt 0 ]; then passes=$((passes + 1)); echo "ok   $(basename "$d"): $n golden cases via --file and --ids"
  else failures=$((failures + 1)); echo "FAIL $(basename "$d"): $bad of $n cases differ"; fi
done

printf 'caf\xc3\xa9 \xff!' > "$TMP/bad.txt"
expect_fail "invalid UTF-8" "byte offset 6|bad.txt" rc=1 -- "$BIN" tokenize --tokenizer "$TOK" --file "$TMP/bad.txt"
ids=$("$BIN" tokenize --tokenizer "$TOK" --file "$TMP/bad.txt" --replace-invalid 2>/dev/null)
want=$("$BIN" tokenize --tokenizer "$TOK" --text "$(printf 'caf\xc3\xa9 \xef\xbf\xbd!')" 2>/dev/null)
if [ -n "$ids" ] && [ "$ids" = "$want" ]; then passes=$((passes + 1)); echo "ok   --replace-invalid gives the ids of U+FFFD"
else failures=$((failures + 1)); echo "FAIL --replace-invalid: '$ids' vs '$want'"; fi
expect_out "stdin" "9906,1917" -- bash -c "printf 'Hello world' | '$BIN' tokenize --tokenizer '$TOK' --file -"

expect_fail "no input" "exactly one of --text" -- "$BIN" tokenize --tokenizer "$TOK"
expect_fail "two inputs" "exactly one of --text" -- "$BIN" tokenize --tokenizer "$TOK" --text a --ids 1
expect_fail "bad ids" "--ids|non-negative" -- "$BIN" tokenize --tokenizer "$TOK" --ids 1,x
expect_fail "id out of range" "100278|index 1" -- "$BIN" tokenize --tokenizer "$TOK" --ids 1,100278
expect_fail "missing tokenizer" "$TMP/none.json" -- "$BIN" tokenize --tokenizer "$TMP/none.json" --text a
printf '{"model":{"type":"Unigram","vocab":[]},"decoder":{"type":"ByteLevel"}}' > "$TMP/uni.json"
expect_fail "unsupported model" "model 'Unigram'|uni.json" -- "$BIN" tokenize --tokenizer "$TMP/uni.json" --text a
expect_fail "unknown option" "--nope" -- "$BIN" tokenize --tokenizer "$TOK" --text a --nope
finish
