#!/usr/bin/env bash
# tokenizer.sh — C tokenizer vs Hugging Face `tokenizers` (Rust) on the same text, one
# thread each, and a parity check of every id.
#
#   tools/bench/tokenizer.sh [--tokenizer FILE] [--mb 4] [--reps 3] [--rounds 2] [--fuzz]
#
# Text: the first --mb MB of documents of data/corpus/train.jsonl (JSON lines, "text"),
# else the Python standard library sources cut into 4 KB documents. Both sides encode
# each document with one single-threaded `encode` call (Rust: Tokenizer.encode per
# document with RAYON_NUM_THREADS=1, TOKENIZERS_PARALLELISM=false — never
# encode_batch, which is parallel), after one untimed warm-up pass over all documents
# (both keep a word cache), then the median of --reps timed passes. The rounds
# alternate C and Rust; on a shared machine load only slows a run down, so the summary
# gives each side's best round and the median of the per-round ratios. Tokenizer: the
# cl100k-dolma2 one of tests/data (OLMo-2's structure, 100k vocabulary) by default.
# The ids of the warm-up passes must be equal, or the script fails. --fuzz replaces the
# text by --mb MB of random documents drawn from adversarial pieces (scripts, digits,
# Unicode spaces, emoji, combining marks, contractions, added-token fragments): a
# parity check over inputs no corpus has, not a speed figure.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PY=${TP_REF_PY:-/opt/transpolmo-ref/bin/python}
BUILD=${TP_BUILD_DIR:-$ROOT/build}
DIR=${TP_BENCH_DIR:-/tmp/tp-bench}/tokenizer
TOK=$ROOT/tests/data/tokenizers/cl100k-dolma2/tokenizer.json
MB=4
REPS=3
ROUNDS=2
FUZZ=0
while [ $# -gt 0 ]; do
    case $1 in
        --tokenizer) TOK=$2; shift 2 ;;
        --mb) MB=$2; shift 2 ;;
        --reps) REPS=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --fuzz) FUZZ=1; shift ;;
        *) echo "usage: $0 [--tokenizer FILE] [--mb N] [--reps R] [--rounds N] [--fuzz]" >&2; exit 2 ;;
    esac
done
export RAYON_NUM_THREADS=1 RAYON_RS_NUM_CPUS=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=1
mkdir -p "$DIR"
cmake --build "$BUILD" --target bench_tokenizer >/dev/null
BENCH=$BUILD/bench_tokenizer
TEXT=$DIR/text.jsonl

"$PY" - "$ROOT" "$MB" "$TEXT" "$FUZZ" <<'EOF'
import glob, json, os, random, sys
root, mb, out, fuzz = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
limit = int(mb * 1e6)
corpus = os.path.join(root, "data", "corpus", "train.jsonl")
docs, total = [], 0
if fuzz:
    src = "random pieces (seed 7)"
    rng = random.Random(7)
    pieces = ["a", "Z", "word", "WORD", " ", "  ", "\t", "\n", "\r\n", "\r", "\u00a0", "\u2003", "\u3000",
              "\u0085", "\u2028", "\u200b", "\ufeff", "\u180e", "\x0b", "\x00", "1", "22", "333", "4444",
              "\u0661\u0662", "\u00bd", "\u00b2", "'s", "'S", "'ll", "'LL", "'t", "'\u017f", "'", "\u2019",
              ".", ",", "!?", "...", "---", "(", ")", "{}", "<", ">", "|", "|||", "<|", "|>", "_", "$",
              "\u00e9", "e\u0301", "\u0303", "\u4e2d\u6587", "\u65e5\u672c", "\ud55c", "\u0627\u0644",
              "\u05e2", "\u0939\u093f", "\u0e20", "\u03a9", "\u0416", "\u0130", "\u00df", "\u01c5",
              "\U0001d518", "\U00010348", "\U0001f642", "\U0001f44d\U0001f3fd", "\u200d", "\U0001f1e7",
              "\ufe0f", "<|endoftext|>", "<|pad|>", "|||EMAIL_ADDRESS|||", "<|im_start|>", "\ufffd"]
    while total < limit:
        d = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 400)))
        docs.append(d)
        total += len(d.encode())
elif os.path.exists(corpus):
    src = corpus
    for line in open(corpus, encoding="utf-8"):
        if total >= limit:
            break
        t = json.loads(line)["text"]
        docs.append(t)
        total += len(t.encode())
else:
    src = "/usr/lib/python3.11/**/*.py"
    for path in sorted(glob.glob(src, recursive=True)):
        try:
            text = open(path, encoding="utf-8").read()
        except (UnicodeDecodeError, OSError):
            continue
        for i in range(0, len(text), 4096):
            docs.append(text[i:i + 4096])
            total += len(docs[-1].encode())
        if total >= limit:
            break
with open(out, "w", encoding="utf-8") as f:
    for t in docs:
        f.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")
print("text: %s, %d documents, %.2f MB" % (src, len(docs), total / 1e6))
EOF

run_rust() {
    "$PY" - "$TOK" "$TEXT" "$REPS" "$1" <<'EOF'
import json, statistics, sys, time
import numpy as np
import tokenizers
from tokenizers import Tokenizer
tok_path, text_path, reps, ids_out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
tok = Tokenizer.from_file(tok_path)
docs = [json.loads(l)["text"] for l in open(text_path, encoding="utf-8")]
t = time.perf_counter()
ids = [tok.encode(d).ids for d in docs]
cold = time.perf_counter() - t
flat = np.fromiter((i for doc in ids for i in doc), dtype="<i4")
if ids_out != "-":
    flat.tofile(ids_out)
times = []
for _ in range(reps):
    t = time.perf_counter()
    for d in docs:
        tok.encode(d)
    times.append(time.perf_counter() - t)
med = statistics.median(times)
nbytes = sum(len(d.encode()) for d in docs)
print("version=%s\ndocs=%d\nbytes=%d\ntokens=%d\ncold_s=%.4f\nseconds=%.4f\ntokens_per_s=%.0f\nmb_per_s=%.2f"
      % (tokenizers.__version__, len(docs), nbytes, len(flat), cold, med, len(flat) / med, nbytes / med / 1e6))
EOF
}

kv() { grep "^$2=" "$1" | tail -1 | cut -d= -f2; }
best_c=0; best_r=0; ratios=""
for r in $(seq 1 "$ROUNDS"); do
    ids_c=-; ids_r=-
    if [ "$r" -eq 1 ]; then ids_c=$DIR/ids_c.bin; ids_r=$DIR/ids_rust.bin; fi
    if [ "$ids_c" = - ]; then "$BENCH" --tokenizer "$TOK" --text "$TEXT" --docs --reps "$REPS" > "$DIR/c.$r"
    else "$BENCH" --tokenizer "$TOK" --text "$TEXT" --docs --reps "$REPS" --ids-out "$ids_c" > "$DIR/c.$r"; fi
    run_rust "$ids_r" > "$DIR/rust.$r"
    c=$(kv "$DIR/c.$r" tokens_per_s); rs=$(kv "$DIR/rust.$r" tokens_per_s)
    ratio=$(awk -v c="$c" -v r="$rs" 'BEGIN { printf "%.2f", c / r }')
    ratios="$ratios $ratio"
    echo "round $r: C $c tokens/s ($(kv "$DIR/c.$r" mb_per_s) MB/s), tokenizers $(kv "$DIR/rust.$r" version) $rs tokens/s ($(kv "$DIR/rust.$r" mb_per_s) MB/s), ratio ${ratio}x"
    [ "$c" -gt "$best_c" ] && best_c=$c
    [ "$rs" -gt "$best_r" ] && best_r=$rs
    if [ "$r" -eq 1 ]; then
        if cmp -s "$DIR/ids_c.bin" "$DIR/ids_rust.bin"; then
            echo "parity: all $(kv "$DIR/c.1" tokens) ids of $(kv "$DIR/c.1" docs) documents equal"
        else
            echo "parity: FAILED, ids differ ($DIR/ids_c.bin vs $DIR/ids_rust.bin)" >&2
            exit 1
        fi
    fi
done
echo "tokenizer: $TOK"
echo "C load: $(kv "$DIR/c.1" load_s) s; C cold pass $(kv "$DIR/c.1" cold_s) s, Rust cold pass $(kv "$DIR/rust.1" cold_s) s"
awk -v c="$best_c" -v r="$best_r" 'BEGIN { printf "best: C %d tokens/s, tokenizers %d tokens/s, ratio of bests C/Rust %.2fx\n", c, r, c / r }'
echo "$ratios" | tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { printf "median per-round ratio C/Rust: %.2fx over %d rounds\n", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2), NR }'
