#!/usr/bin/env bash
# patch.sh — activation patching: TranspOLMo vs TransformerLens 3.9 on the bundled model,
# same prompts, same threads, in one run.
#
#   tools/bench/patch.sh [--rounds R] [--threads N] [--model DIR]
#
# The prompt: a Python snippet of 89 tokens ending in "x = foo(1, 2" (clean) or
# "x = foo[1, 2" (corrupt), target ")", distractor "]". Two sweeps:
#   resid_pre  every (layer, position): 4 x 89 = 356 patched runs
#   z          every (layer, head), all positions: 4 x 8 = 32 patched runs
# ours: `transpolmo circuits-patch --sweep <s>`, the whole command's wall time (model
#   load, tokenizing, the clean and corrupted runs, the sweep, the JSON) —
#   forward.threads=N;
# TransformerLens: tools/bench/patch_tl.py, the wall time of patching.get_act_patch_resid_pre
#   / get_act_patch_attn_head_out_all_pos alone (one full forward per cell; boot and clean
#   cache not counted) — torch.set_num_threads(N).
# Each run waits for < 15 % CPU use by others first and reports `others`, the share of the
# CPUs other processes used while it ran. Ratio = median over rounds of TL seconds / ours.
# TransformerLens's values are checked against ours (max |difference| printed).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BENCH_NAME=patch
. "$ROOT/tools/bench/lib.sh"
ROUNDS=3
THREADS=${THREADS:-1}
MODEL=$ROOT/models/olmo2-tiny
while [ $# -gt 0 ]; do
    case $1 in
        --rounds) ROUNDS=$2; shift 2 ;;
        --threads) THREADS=$2; shift 2 ;;
        --model) MODEL=$2; shift 2 ;;
        *) echo "usage: $0 [--rounds R] [--threads N] [--model DIR]" >&2; exit 2 ;;
    esac
done
export OPENBLAS_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS
LOG=$DIR/patch
mkdir -p "$LOG"
cmake --build "$BUILD" --target transpolmo >/dev/null
BIN=$BUILD/transpolmo

CLEAN='def area(width, height):
    """Return the area of a rectangle."""
    return width * height


def scale(points, factor):
    result = []
    for x, y in points:
        result.append((x * factor, y * factor))
    return result


if __name__ == "__main__":
    print(area(3, 4))
    x = foo(1, 2'
CORRUPT=${CLEAN/foo(1, 2/foo[1, 2}
ARGS=(--model "$MODEL" --clean "$CLEAN" --corrupt "$CORRUPT" --target ")" --distractor "]")
echo "# patch.sh $(date -u '+%F %T') UTC, $(nproc) CPUs, threads $THREADS, load $(loadavg), $ROUNDS rounds"
echo "# $(git -C "$ROOT" rev-parse --short HEAD), $BIN"

declare -A T
for r in $(seq 1 "$ROUNDS"); do
    for s in resid_pre z; do
        wait_quiet >/dev/null
        la=$(loadavg)
        o=$(run_measured "$LOG/ours-$s-$r.txt" "$BIN" circuits-patch "${ARGS[@]}" --sweep "$s" --name "bench_$s" \
            --set forward.threads="$THREADS" --out "$LOG/run")
        ours=$(cut -d' ' -f1 "$LOG/ours-$s-$r.txt.time")
        T[ours-$s-$r]=$ours
        wait_quiet >/dev/null
        la2=$(loadavg)
        o2=$(run_measured "$LOG/tl-$s-$r.txt" "$PY" "$ROOT/tools/bench/patch_tl.py" "${ARGS[@]}" --sweep "$s" \
             --threads "$THREADS" --ours "$LOG/run/results/circuits/patch_bench_$s.json")
        tl=$(jq -r .seconds "$LOG/tl-$s-$r.txt")
        T[tl-$s-$r]=$tl
        printf 'round %s %-9s ours %7.2f s (load %s, others %s)  TransformerLens %7.2f s (load %s, others %s)  ratio %5.1f  cells %s  max|diff| %s\n' \
            "$r" "$s" "$ours" "$la" "$o" "$tl" "$la2" "$o2" "$(awk -v a="$tl" -v b="$ours" 'BEGIN{print a/b}')" \
            "$(jq -r .cells "$LOG/tl-$s-$r.txt")" "$(jq -r .max_abs_diff_vs_ours "$LOG/tl-$s-$r.txt")"
    done
done
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2)}'; }
for s in resid_pre z; do
    mo=$(for r in $(seq 1 "$ROUNDS"); do echo "${T[ours-$s-$r]}"; done | median)
    mt=$(for r in $(seq 1 "$ROUNDS"); do echo "${T[tl-$s-$r]}"; done | median)
    mr=$(for r in $(seq 1 "$ROUNDS"); do awk -v a="${T[tl-$s-$r]}" -v b="${T[ours-$s-$r]}" 'BEGIN{print a/b}'; done | median)
    printf 'median %-9s ours %7.2f s  TransformerLens %7.2f s  ratio %5.1f x\n' "$s" "$mo" "$mt" "$mr"
done
