#!/usr/bin/env bash
# forward.sh — C forward pass vs PyTorch on the same CPU, threads, model, in one run.
#
#   tools/bench/forward.sh [--reps R] [--layers "2 4"] [--no-memory]
#
# 1. Random OLMo-2-0425-1B-shaped checkpoints, f32 and bf16, per layer count (cached in
#    $TP_BENCH_DIR, default /tmp/tp-bench; make_bench_model.py).
# 2. Speed, paired (forward_paired.py): PyTorch f32 (transformers, sdpa), C on the f32
#    checkpoint and C on the bf16 checkpoint (per_matrix), C on the f32 checkpoint with
#    forward.gemm=openblas (the OpenBLAS path, in-run baseline for the kernel), and the GEMM-only sgemm
#    ceiling, one pass each per round, R rounds. T=512, B=1, logits at every position,
#    one hook_resid_post capture, $THREADS threads everywhere. Ratios are medians of
#    per-round ratios, over all rounds and over the quiet ones (other processes used
#    < 10% of the CPUs during every pass of the round).
# 3. Where the time goes: bench_forward alone per checkpoint (per-phase profile from
#    capture-point timestamps, bf16 conversion alone, per-GEMM ceiling, peak RSS), and
#    forward_hf.py alone; `others` = share of the CPUs other processes used meanwhile.
# 4. Memory: the 16-layer (full 1B) model in BF16 and F32, peak RSS of the C forward
#    per conversion mode against the f32 weight size (goal: <= f32 weights + 1 GiB).
#    The 16-layer checkpoints are deleted afterwards (~9 GB); 2/4-layer ones are kept.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PY=${TP_REF_PY:-/opt/transpolmo-ref/bin/python}
DIR=${TP_BENCH_DIR:-/tmp/tp-bench}
BUILD=${TP_BUILD_DIR:-$ROOT/build}
THREADS=${THREADS:-2}
SEQ=512
REPS=7
LAYERS="2 4"
MEMORY=1
QUIET_WAIT=${QUIET_WAIT:-120}
while [ $# -gt 0 ]; do
    case $1 in
        --reps) REPS=$2; shift 2 ;;
        --layers) LAYERS=$2; shift 2 ;;
        --no-memory) MEMORY=0; shift ;;
        *) echo "usage: $0 [--reps R] [--layers \"2 4\"] [--no-memory]" >&2; exit 2 ;;
    esac
done
export OPENBLAS_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS
# OpenBLAS's idle threads spin (sched_yield) for 2^28 cycles (~0.1 s) after each call
# before they sleep; bench_forward alternates OpenBLAS (the ceiling) with forward passes
# whose GEMMs run on TranspOLMo's own thread pool, and a spinning OpenBLAS thread holds
# the core that pool needs (measured: our GEMM at one core's speed right after an
# sgemm). 2^4 cycles makes them sleep at once; large sgemm calls do not notice.
export OPENBLAS_THREAD_TIMEOUT=${OPENBLAS_THREAD_TIMEOUT:-4}
LOG=$DIR/logs
mkdir -p "$LOG"

cmake --build "$BUILD" --target bench_forward >/dev/null
BENCH=$BUILD/bench_forward

kv() { grep -o "\b$2=[^ ]*" "$1" | tail -1 | cut -d= -f2; }

# run_measured OUT CMD...: CMD's stdout to OUT (stderr to OUT.err); prints the share
# of the CPUs that other processes used while it ran.
run_measured() {
    local out=$1; shift
    local a b c d e f g h A B C D E F G H hz ncpu busy
    hz=$(getconf CLK_TCK) ncpu=$(nproc)
    read -r _ a b c d e f g h _ < /proc/stat
    /usr/bin/time -f "%e %U %S" -o "$out.time" "$@" > "$out" 2> "$out.err"
    read -r _ A B C D E F G H _ < /proc/stat
    busy=$(( (A+B+C+F+G+H) - (a+b+c+f+g+h) ))
    awk -v busy="$busy" -v hz="$hz" -v n="$ncpu" '{ o = (busy / hz - $2 - $3) / (n * $1);
        printf "%.2f", (o < 0 ? 0 : o) }' "$out.time"
}

model_dir() { echo "$DIR/olmo2-1b-L$1-$2"; }
make_model() {
    "$PY" "$ROOT/tools/bench/make_bench_model.py" --layers "$1" --dtype "$2" --out "$(model_dir "$1" "$2")" 2>/dev/null
}

echo "# TranspOLMo forward benchmark — $(date -u +%FT%TZ)"
echo "# CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs; threads=$THREADS seq=$SEQ rounds=$REPS"
echo "# C: $("$BENCH" --model /nonexistent 2>/dev/null | head -1 || true)"
for L in $LAYERS; do for dt in f32 bf16; do make_model "$L" "$dt" >/dev/null; done; done

echo
echo "## Speed, paired rounds (T=$SEQ, B=1, logits at all positions, one resid_post capture)"
for L in $LAYERS; do
    out=$LOG/paired-L$L.txt
    "$PY" "$ROOT/tools/bench/forward_paired.py" --bench "$BENCH" --torch-model "$(model_dir "$L" f32)" \
        --c "$(model_dir "$L" f32):per_matrix" --c "$(model_dir "$L" bf16):per_matrix" \
        --c "$(model_dir "$L" f32):per_matrix:openblas" \
        --seq $SEQ --threads "$THREADS" --reps "$REPS" --quiet-wait "$QUIET_WAIT" \
        > "$out" 2> "$out.err"
    echo "### $L layers"
    grep -v '^round' "$out" | sed 's/^/  /'
    grep '^round' "$out.err" | sed 's/^/  /'
done

for L in $LAYERS; do
    for dt in f32 bf16; do
        out=$LOG/alone-L$L-c-$dt.txt
        others=$(run_measured "$out" "$BENCH" --model "$(model_dir "$L" $dt)" --conversion per_matrix \
                 --seq $SEQ --threads "$THREADS" --reps 5)
        echo
        echo "## Where the time goes: $L layers, C on the $dt checkpoint (per_matrix), others=$others"
        grep -E '^(blas|median_s|pass_s|faults|tokens_per_s|gflop|peak_rss_mb|finite|convert|ceiling_gflop|paired|forward_over)' "$out" | sed 's/^/  /'
        echo "  per phase, summed over layers (median of 5 passes; time since the previous capture point):"
        grep '^phase' "$out" | sed 's/^phase /    /'
        grep -E '^ceiling_[a-z_]+_ms' "$out" | sed 's/^/  GEMM alone: /'
    done
    out=$LOG/alone-L$L-torch.txt
    others=$(run_measured "$out" "$PY" "$ROOT/tools/bench/forward_hf.py" --model "$(model_dir "$L" f32)" \
             --seq $SEQ --threads "$THREADS" --reps 5)
    echo
    echo "## PyTorch alone: $L layers, others=$others"
    sed 's/^/  /' "$out"
done

if [ "$MEMORY" = 1 ]; then
    echo
    echo "## Memory: 16 layers (OLMo-2-0425-1B shapes), C forward T=$SEQ, peak RSS (ru_maxrss)"
    printf '  %-6s %-11s %8s %15s %12s %7s\n' stored conversion RSS_MiB f32_weights_MiB RSS-f32w goal
    for dt in bf16 f32; do
        make_model 16 "$dt" >/dev/null
        modes="per_matrix upfront"
        [ "$dt" = f32 ] && modes="per_matrix"   # nothing to convert: upfront is the same run
        for mode in $modes; do
            out=$LOG/L16-$dt-$mode.txt
            run_measured "$out" "$BENCH" --model "$(model_dir 16 "$dt")" --conversion "$mode" --seq $SEQ \
                --threads "$THREADS" --reps 1 --no-profile --no-ceiling >/dev/null
            rss=$(kv "$out" peak_rss_mb) w=$(kv "$out" f32_weights_mb)
            awk -v d="$dt" -v m="$mode" -v r="$rss" -v w="$w" 'BEGIN {
                printf "  %-6s %-11s %8.0f %15.0f %12.0f %7s\n", d, m, r, w, r - w, (r <= w + 1024 ? "met" : "MISSED") }'
            echo "    $(grep -E '^(load_s|median_s|tokens_per_s)' "$out" | tr '\n' ' ')"
        done
        if [ "$dt" = f32 ]; then
            out=$LOG/L16-torch-f32.txt
            run_measured "$out" "$PY" "$ROOT/tools/bench/forward_hf.py" --model "$(model_dir 16 f32)" \
                --seq $SEQ --threads "$THREADS" --reps 1 >/dev/null
            printf '  %-6s %-11s %8s   (PyTorch f32 reference; %s tok/s)\n' f32 torch \
                "$(kv "$out" peak_rss_mb)" "$(kv "$out" tokens_per_s)"
        fi
        rm -rf "$(model_dir 16 "$dt")"
    done
fi
echo
echo "Logs: $LOG"
