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
# Both sides time the sweep alone, wall and CPU (every thread of the process):
# ours: `transpolmo circuits patch --sweep <s>`, its log line "N cells in X s (CPU Y s)":
#   from the end of the clean run (untimed on both sides) to the last cell: the corrupted
#   run with its per-layer caches, then the sweep; also the whole command's wall time
#   (process start, MPI init, model, tokenizer, clean run, JSON). forward.threads=N.
# TransformerLens: tools/bench/patch_tl.py, patching.get_act_patch_resid_pre /
#   get_act_patch_attn_head_out_all_pos alone (one full forward per cell; boot, clean
#   cache and LD_corr not counted). torch.set_num_threads(N).
# Each run waits for < 15 % CPU use by others first and reports `others`, the share of the
# CPUs other processes used while it ran. Ratios: medians over rounds of TL / ours, of the
# sweep's wall time and of its CPU time. TransformerLens's values are checked against
# ours (max |difference| printed).
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
        o=$(run_measured "$LOG/ours-$s-$r.txt" "$BIN" circuits patch "${ARGS[@]}" --sweep "$s" --name "bench_$s" \
            --set forward.threads="$THREADS" --out "$LOG/run")
        whole=$(cut -d' ' -f1 "$LOG/ours-$s-$r.txt.time")
        line=$(grep -o 'cells in [0-9.]* s (CPU [0-9.]* s' "$LOG/ours-$s-$r.txt.err")
        ours=$(echo "$line" | awk '{print $3}') ocpu=$(echo "$line" | awk '{print $6}')
        T[ours-$s-$r]=$ours T[ocpu-$s-$r]=$ocpu
        wait_quiet >/dev/null
        la2=$(loadavg)
        o2=$(run_measured "$LOG/tl-$s-$r.txt" "$PY" "$ROOT/tools/bench/patch_tl.py" "${ARGS[@]}" --sweep "$s" \
             --threads "$THREADS" --ours "$LOG/run/results/circuits/patch_bench_$s.json")
        tl=$(jq -r .seconds "$LOG/tl-$s-$r.txt") tcpu=$(jq -r .cpu_seconds "$LOG/tl-$s-$r.txt")
        T[tl-$s-$r]=$tl T[tcpu-$s-$r]=$tcpu
        printf 'round %s %-9s ours %6.2f s CPU %6.2f (whole command %5.2f s; load %s, others %s)  TL %6.2f s CPU %6.2f (load %s, others %s)  ratio %5.1f, CPU %5.1f  cells %s  max|diff| %.1e\n' \
            "$r" "$s" "$ours" "$ocpu" "$whole" "$la" "$o" "$tl" "$tcpu" "$la2" "$o2" \
            "$(awk -v a="$tl" -v b="$ours" 'BEGIN{print a/b}')" "$(awk -v a="$tcpu" -v b="$ocpu" 'BEGIN{print a/b}')" \
            "$(jq -r .cells "$LOG/tl-$s-$r.txt")" "$(jq -r .max_abs_diff_vs_ours "$LOG/tl-$s-$r.txt")"
    done
done
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2)}'; }
med() { for r in $(seq 1 "$ROUNDS"); do echo "${T[$1-$2-$r]}"; done | median; }
ratio() { for r in $(seq 1 "$ROUNDS"); do awk -v a="${T[$1-$3-$r]}" -v b="${T[$2-$3-$r]}" 'BEGIN{print a/b}'; done | median; }
for s in resid_pre z; do
    printf 'median %-9s ours %6.2f s CPU %6.2f  TransformerLens %6.2f s CPU %6.2f  ratio %5.1f x, CPU %5.1f x\n' "$s" \
        "$(med ours $s)" "$(med ocpu $s)" "$(med tl $s)" "$(med tcpu $s)" "$(ratio tl ours $s)" "$(ratio tcpu ocpu $s)"
done
