#!/usr/bin/env bash
# More bad input (issue 17, defects 4-6): a clear one-line error naming the file and
# the problem, a non-zero exit, earlier results intact; and inputs that used to hang
# (deep YAML, one huge document) finish quickly.
. "$(dirname "$0")/lib.sh"
export LC_ALL=C
SRC=${TP_SOURCE_DIR:?}
M=${TP_BUNDLED_MODEL:-$SRC/models/olmo2-tiny}
CORPUS=$SRC/data/corpus/heldout.jsonl

model() {  # model <name>: a private model dir (weights linked, config and tokenizer copied)
  local d=$TMP/$1; rm -rf "$d"; mkdir -p "$d"
  ln -s "$M/model.safetensors" "$d/model.safetensors"
  cp "$M/config.json" "$M/tokenizer.json" "$d/"; echo "$d"
}
setcfg() {  # setcfg <dir> <key> <json value>: one key of config.json
  /usr/bin/python3 -c "import json,sys; p=sys.argv[1]+'/config.json'; c=json.load(open(p)); c[sys.argv[2]]=json.loads(sys.argv[3]); json.dump(c, open(p,'w'))" "$@"
}
small=(--set data.corpus="$CORPUS" --num-samples 4 --set data.seq_len=32 --set forward.batch_size=2)
ev() { "$BIN" eval --model "$1" "${small[@]}" "${@:2}"; }

expect_ok "good eval" -- ev "$M" --out "$TMP/run"
cp "$TMP/run/results/eval.json" "$TMP/eval.before"

# ---- the fault-injection switch is checked, so a test cannot silently not fault ----
insp() { env TP_FAULT="$1" "$BIN" inspect --model "$M" --out "$TMP/fault"; }
expect_fail "TP_FAULT: unknown phase" "TP_FAULT=caputre.unit|no phase 'caputre'" -- insp caputre.unit
expect_fail "TP_FAULT: unknown point" "TP_FAULT=capture.unti|no point 'unti'|start, outputs, unit" rc=2 -- insp capture.unti
expect_fail "TP_FAULT: malformed" "TP_FAULT=capture|<phase>.<point>" -- insp capture
expect_fail "TP_FAULT: count 0" "TP_FAULT=sae.step@0|count after '@'" -- insp sae.step@0
expect_fail "TP_FAULT: unknown action" "TP_FAULT=sae.step/boom|unknown action 'boom'" -- insp sae.step/boom
expect_fail "TP_FAULT: fail action" "injected fault (TP_FAULT=inspect.layer@2/fail) on rank 0" -- insp inspect.layer@2/fail
out=$(insp inspect.layer/term 2>&1); rc=$?
if [ $rc -eq 143 ] && printf '%s' "$out" | grep -q "^transpolmo: error: terminated by SIGTERM in phase inspect: it is not marked complete" \
   && [ ! -e "$TMP/fault/.phases/inspect.done" ]; then
  passes=$((passes + 1)); echo "ok   TP_FAULT=inspect.layer/term: exit 143, one line"
else failures=$((failures + 1)); echo "FAIL TP_FAULT=inspect.layer/term: exit $rc: $out"; fi

# ---- 6: misleading messages ------------------------------------------------------
mkdir -p "$TMP/adir"
expect_fail "tokenize a directory" "$TMP/adir|directory" rc=1 -- "$BIN" tokenize --model "$M" --file "$TMP/adir"

m=$(model vocabstr)
/usr/bin/python3 -c "
import json,sys; p=sys.argv[1]+'/tokenizer.json'; t=json.load(open(p)); v=t['model']['vocab']
k=sorted(v, key=lambda k: v[k])[5]; v[k]=str(v[k]); json.dump(t, open(p,'w')); open(sys.argv[1]+'/key','w').write(k)" "$m"
expect_fail "vocab id as a string" "$m/tokenizer.json|'$(cat "$m/key")'|\"5\"" rc=1 -- \
  "$BIN" tokenize --model "$m" --text "hello"

expect_fail "run.name escapes runs/" "run.name|../.." rc=2 -- "$BIN" eval --model "$M" "${small[@]}" --set run.name=../..
expect_fail "run.name with a slash" "run.name|a/b" -- "$BIN" eval --model "$M" "${small[@]}" --set run.name=a/b

m=$(model maxpos); setcfg "$m" max_position_embeddings -1
expect_fail "max_position_embeddings -1" "$m/config.json|max_position_embeddings" rc=1 -- ev "$m" --out "$TMP/run"
m=$(model maxpos16); setcfg "$m" max_position_embeddings 16
out=$(ev "$m" --out "$TMP/maxpos16" 2>&1); rc=$?
n=$(printf '%s\n' "$out" | grep -c "exceed max_position_embeddings = 16")
if [ $rc -eq 0 ] && [ "$n" -eq 1 ]; then passes=$((passes+1)); echo "ok   seq_len > max_position_embeddings warned once"
else failures=$((failures+1)); echo "FAIL seq_len > max_position_embeddings: exit $rc, $n warnings: $out"; fi

m=$(model hidden); setcfg "$m" hidden_size 1000000000
expect_fail "config.json size vs checkpoint" "config.json|embed_tokens|shape" rc=1 -- ev "$m" --out "$TMP/run"
m=$(model layers); setcfg "$m" num_hidden_layers 100000000
expect_fail "config.json layers vs checkpoint" "config.json|num_hidden_layers" rc=1 -- ev "$m" --out "$TMP/run"

m=$(model noeos); setcfg "$m" eos_token_id null
expect_fail "pack without EOS" "pack|EOS|config.json" rc=2 -- ev "$m" --set data.packing=pack --out "$TMP/run"

printf '{"text": "a"}\n{"text": "b"}\n' > "$TMP/tiny.jsonl"
expect_fail "eval of one-token documents" "$TMP/tiny.jsonl|nothing to evaluate|2 of the 2" rc=1 -- \
  "$BIN" eval --model "$M" --set data.corpus="$TMP/tiny.jsonl" --num-samples 4 --out "$TMP/run"

# --verbose places: relative to the source root, never src/src/.
out=$("$BIN" eval --model "$TMP/none" --verbose --out "$TMP/run" 2>&1 | grep 'error:')
if printf '%s' "$out" | grep -qE '\(at src/[a-z_/]+\.c:[0-9]+\)$' && ! printf '%s' "$out" | grep -q 'src/src/'; then
  passes=$((passes+1)); echo "ok   --verbose place: $out"
else failures=$((failures+1)); echo "FAIL --verbose place: $out"; fi

# ---- 5: hangs ---------------------------------------------------------------------
/usr/bin/python3 -c "print('data:\n  x: ' + '['*200000 + ']'*200000)" > "$TMP/deep.yaml"
expect_fail "deep YAML flow nesting" "$TMP/deep.yaml|deeper than 64" rc=2 -- timeout 20 "$BIN" eval --config "$TMP/deep.yaml" --out "$TMP/run"
/usr/bin/python3 -c "
for i in range(100): print('  '*i + 'k%d:' % i)" > "$TMP/deep_block.yaml"
expect_fail "deep YAML block nesting" "$TMP/deep_block.yaml|deeper than 64" -- timeout 20 "$BIN" eval --config "$TMP/deep_block.yaml" --out "$TMP/run"

# One 20 MB document among four: cut (and logged), so eval stays quick.
/usr/bin/python3 -c "
import json
print(json.dumps({'text': 'the cat sat on the mat. ' * 850000}))
for i in range(3): print(json.dumps({'text': 'a short document number %d.' % i}))" > "$TMP/huge.jsonl"
t0=$(date +%s)
out=$(timeout 120 "$BIN" eval --model "$M" --set data.corpus="$TMP/huge.jsonl" --num-samples 4 --set data.seq_len=64 \
      --set data.max_doc_tokens=1000 --out "$TMP/huge" 2>&1); rc=$?
t1=$(date +%s)
if [ $rc -eq 0 ] && printf '%s' "$out" | grep -q "huge.jsonl:1 .*cut to its first 1000 tokens" && [ $((t1 - t0)) -lt 60 ]; then
  passes=$((passes+1)); echo "ok   huge document cut ($((t1 - t0)) s)"
else failures=$((failures+1)); echo "FAIL huge document (exit $rc, $((t1 - t0)) s): $out"; fi

# Cut documents are cut the same way on any number of ranks: the same store.
MPIRUN=${MPIEXEC:-mpiexec}
cut=(--model "$M" --set data.corpus="$CORPUS" --num-samples 8 --set data.seq_len=16 --set forward.batch_size=2
     --set capture.hooks=hook_resid_post --set data.max_doc_tokens=20)
out=$("$BIN" capture "${cut[@]}" --out "$TMP/cut1" 2>&1); rc=$?
if [ $rc -eq 0 ] && printf '%s' "$out" | grep -q "cut to its first 20 tokens"; then passes=$((passes+1)); echo "ok   capture cuts documents"
else failures=$((failures+1)); echo "FAIL capture cutting documents (exit $rc): $out"; fi
expect_ok "np2 capture with cut documents" -- timeout -s KILL 180 "$MPIRUN" -np 2 "$BIN" capture "${cut[@]}" --out "$TMP/cut2"
if /usr/bin/python3 -c "
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], 'r'); n = np.diff(f['doc_offsets'][:])
assert int(f.attrs['max_doc_tokens']) == 20 and n.max() <= 20, (dict(f.attrs), n)
assert 0 < int(f.attrs['documents_cut']) <= int((n == 20).sum()), (dict(f.attrs), n)" "$TMP/cut1/activations.h5"; then
  passes=$((passes+1)); echo "ok   the store records the cut (max_doc_tokens, documents_cut, /doc_offsets)"
else failures=$((failures+1)); echo "FAIL the store does not record the cut"; fi
o=$("${TP_STORE_COMPARE:?}" "$TMP/cut1/activations.h5" "$TMP/cut2/activations.h5" 2>&1)
if [ $? -eq 0 ]; then passes=$((passes+1)); echo "ok   cut documents: np2 store equals np1 ($o)"
else failures=$((failures+1)); echo "FAIL cut documents: np2 store differs: $o"; fi

# Progress over 2 ranks whose shares differ (rank 0: one long document; rank 1: short
# ones): 100 % only at the end (the last round's line and the closing line), not while
# rank 1 still works (rank 0's rows times the ranks overshot).
/usr/bin/python3 -c "
import json
print(json.dumps({'text': 'the cat sat on the mat and then it slept. ' * 20}))
print(json.dumps({'text': 'hello there my friend'}))
print(json.dumps({'text': 'ok then'}))" > "$TMP/prog.jsonl"
out=$(timeout -s KILL 180 "$MPIRUN" -np 2 "$BIN" capture --model "$M" --set data.corpus="$TMP/prog.jsonl" --num-samples 3 \
      --set data.seq_len=64 --set forward.batch_size=1 --set capture.hooks=hook_resid_post --set log.progress=always \
      --set log.progress_interval=0.000001 --out "$TMP/prog" 2>&1 | grep 'capture: [0-9]*/'); rc=$?
early=$(printf '%s\n' "$out" | head -n -2 | grep -c '(100.0%)')
if [ "$(printf '%s\n' "$out" | grep -c '')" -ge 3 ] && [ "$early" -eq 0 ]; then
  passes=$((passes+1)); echo "ok   capture progress reaches 100 % at the end only"
else failures=$((failures+1)); echo "FAIL capture progress: $early early 100 % lines: $out"; fi

# ---- 4: HDF5 causes ---------------------------------------------------------------
cap=(--model "$M" --set data.corpus="$CORPUS" --num-samples 8 --set data.seq_len=64 --set forward.batch_size=4
     --set capture.hooks=hook_resid_post)
expect_ok "capture" -- "$BIN" capture "${cap[@]}" --out "$TMP/cap"
cp -r "$TMP/cap" "$TMP/trunc"; f=$TMP/trunc/activations.h5
truncate -s $(( $(stat -c %s "$f") / 2 )) "$f"
expect_fail "truncated store" "$f|truncated" rc=1 -- "$BIN" geometry --model "$M" --out "$TMP/trunc"
out=$( (trap '' XFSZ; ulimit -f 10240; "$BIN" capture "${cap[@]}" --num-samples 64 --set data.seq_len=128 --out "$TMP/full") 2>&1 >/dev/null); rc=$?
line=$(printf '%s\n' "$out" | grep 'error:')
if [ $rc -ne 0 ] && printf '%s' "$line" | grep -q "activations.h5" && printf '%s' "$line" | grep -q "File too large"; then
  passes=$((passes+1)); echo "ok   write past the file size limit names the OS error: $line"
else failures=$((failures+1)); echo "FAIL write past the file size limit (exit $rc): $out"; fi

if cmp -s "$TMP/eval.before" "$TMP/run/results/eval.json"; then
  passes=$((passes + 1)); echo "ok   earlier result intact"
else
  failures=$((failures + 1)); echo "FAIL earlier result changed or lost"
fi
finish
