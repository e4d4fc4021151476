#!/usr/bin/env bash
# bf16.sh — forward.bf16_compute: the C forward pass of a BF16 checkpoint on the
# AVX512-BF16 kernel against our f32 forward, paired, on a random OLMo-2-1B-shaped model.
#
#   tools/bench/bf16.sh [--layers 16] [--pairs 5] [--reps 2] [--seq 512] [--no-accuracy]
#
# 1. Random checkpoints (tools/bench/make_random_model.py, NumPy; the bf16 one is the
#    f32 one rounded), LAYERS layers, in $TP_BENCH_DIR (default /tmp/tp-bench).
# 2. Speed: PAIRS rounds; each runs, in an order rotating per round, bench_forward on
#      on   the bf16 checkpoint, --bf16-compute on (VDPBF16PS, X rounded to bf16)
#      off  the bf16 checkpoint, --bf16-compute off (widened to f32 while packing)
#      f32  the f32 checkpoint (the f32 path)
#    T=SEQ, B=1, logits at every position, one capture, 2 threads, REPS passes after a
#    warm-up (median_s), each run after the machine is quiet (< 15 % busy, waiting at
#    most QUIET_WAIT seconds, default here 60). Per round the ratios off/on and f32/on;
#    printed: their medians over all rounds and over the quiet rounds (others < 0.10 in
#    each of the round's runs; `others` is the share of the CPUs other processes used
#    during a run, lib.sh), since the machine may be shared.
# 3. Memory: peak RSS (ru_maxrss) of the `on` runs against the bf16 weight bytes
#    (goal: <= bf16 weights + 1 GiB).
# 4. Accuracy: `transpolmo forward` on 64 tokens of the bf16 checkpoint with
#    forward.bf16_compute on and off, and Hugging Face transformers on the same
#    checkpoint in bfloat16 and in float32 (bf16_accuracy.py): max |a - b| / max |b| of the
#    logits for each pair.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BENCH_NAME=bf16
QUIET_WAIT=${QUIET_WAIT:-60}
. "$ROOT/tools/bench/lib.sh"
LAYERS=16 PAIRS=5 REPS=2 SEQ=512 ACCURACY=1
while [ $# -gt 0 ]; do
    case $1 in
        --layers) LAYERS=$2; shift 2 ;;
        --pairs) PAIRS=$2; shift 2 ;;
        --reps) REPS=$2; shift 2 ;;
        --seq) SEQ=$2; shift 2 ;;
        --no-accuracy) ACCURACY=0; shift ;;
        *) echo "usage: $0 [--layers 16] [--pairs 5] [--reps 2] [--seq 512] [--no-accuracy]" >&2; exit 2 ;;
    esac
done
export OPENBLAS_NUM_THREADS=2 OPENBLAS_THREAD_TIMEOUT=4
LOG=$DIR/logs-bf16
mkdir -p "$LOG"
cmake --build "$BUILD" --target bench_forward transpolmo >/dev/null
for dt in f32 bf16; do
    m=$DIR/L$LAYERS-$dt
    [ -s "$m/model.safetensors" ] || /usr/bin/python3 "$ROOT/tools/bench/make_random_model.py" "$LAYERS" "$dt" "$m" >/dev/null
done
kv() { grep -o "\b$2=[^ ]*" "$1" | tail -1 | cut -d= -f2; }

echo "# bf16 compute benchmark — $(date -u +%FT%TZ), $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs"
echo "# $LAYERS layers (OLMo-2-1B shapes), T=$SEQ, 2 threads, $PAIRS rounds of on/off/f32, $REPS passes each"
declare -A ckpt=([on]=bf16 [off]=bf16 [f32]=f32) mode=([on]=on [off]=off [f32]=auto)
r_off=() r_f32=() q_off=() q_f32=() rss=()
for p in $(seq 1 "$PAIRS"); do
    case $((p % 3)) in 1) order="on off f32" ;; 2) order="off f32 on" ;; *) order="f32 on off" ;; esac
    line="round=$p" quiet=1
    declare -A t=()
    for w in $order; do
        out=$LOG/$w-r$p.txt
        wait_quiet >/dev/null
        o=$(run_measured "$out" "$BUILD/bench_forward" --model "$DIR/L$LAYERS-${ckpt[$w]}" --seq "$SEQ" --threads 2 \
            --reps "$REPS" --bf16-compute "${mode[$w]}" --no-profile --no-ceiling)
        t[$w]=$(kv "$out" median_s)
        line="$line $w=${t[$w]}s(others=$o)"
        awk -v o="$o" 'BEGIN { exit !(o >= 0.10) }' && quiet=0
        [ "$w" = on ] && rss+=("$(kv "$out" peak_rss_mb)") && bf16_mb=$(awk -v f="$(kv "$out" f32_weights_mb)" 'BEGIN { print f / 2 }') \
            && gemm=$(sed -n 's/.*gemm=//p' "$out")
    done
    r_off+=("$(awk -v a="${t[off]}" -v b="${t[on]}" 'BEGIN { printf "%.3f", a / b }')")
    r_f32+=("$(awk -v a="${t[f32]}" -v b="${t[on]}" 'BEGIN { printf "%.3f", a / b }')")
    [ "$quiet" = 1 ] && q_off+=("${r_off[-1]}") && q_f32+=("${r_f32[-1]}")
    echo "$line off/on=${r_off[-1]} f32/on=${r_f32[-1]} quiet=$quiet"
done
med() { printf '%s\n' "$@" | sort -g | awk '{ r[NR] = $1 } END { printf "%.3f", (NR % 2) ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2 }'; }
echo "speed-up of bf16 compute (median over $PAIRS rounds): over the f32 checkpoint $(med "${r_f32[@]}")x, over the bf16 checkpoint widened to f32 $(med "${r_off[@]}")x (goal >= 1.6); linear_gemm=$gemm"
[ ${#q_f32[@]} -gt 0 ] && echo "  over the ${#q_f32[@]} quiet rounds: f32/on $(med "${q_f32[@]}")x, off/on $(med "${q_off[@]}")x"
echo "memory: peak RSS of the bf16-compute runs $(med "${rss[@]}") MiB (median; all: ${rss[*]}), bf16 weights $bf16_mb MiB, RSS - weights $(awk -v r="$(med "${rss[@]}")" -v w="$bf16_mb" 'BEGIN { printf "%.0f", r - w }') MiB (goal <= 1024)"

if [ "$ACCURACY" = 1 ]; then
    m=$DIR/L$LAYERS-bf16
    ids=$(/usr/bin/python3 -c 'import random; r = random.Random(7); print(",".join(str(r.randrange(1, 100000)) for _ in range(64)))')
    for b in on off; do
        "$BUILD/transpolmo" forward --model "$m" --ids "$ids" --set forward.bf16_compute=$b --set forward.threads=2 \
            --logits-out "$LOG/logits-$b.npy" --out "$LOG/run" > "$LOG/forward-$b.txt" 2>&1
    done
    "$PY" "$ROOT/tools/bench/bf16_accuracy.py" --model "$m" --ids "$ids" --c-on "$LOG/logits-on.npy" \
        --c-off "$LOG/logits-off.npy" 2> "$LOG/accuracy.err"
fi
echo "Logs: $LOG"
