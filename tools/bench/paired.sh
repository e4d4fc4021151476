#!/usr/bin/env bash
# Paired old/new runs of one benchmark: two builds of TranspOLMo side by side, the
# order alternating per pair, each pair after the machine is quiet (lib.sh), so a
# refactor can show it is not slower as a ratio (new / old) in the same session.
#
#   tools/bench/paired.sh OLD_BUILD NEW_BUILD KIND PAIRS
#     KIND: fwd-f32 | fwd-bf16 | fwd-bf16-openblas   bench_forward on a random 2-layer
#                                                    OLMo-2-1B-shaped checkpoint (T=512)
#           sae-topk | sae-relu                      bench_sae on 32768 x 512 rows
#   Inputs are made once under $TP_BENCH_DIR (default /tmp/tp-bench) by
#   tools/bench/make_random_model.py (NumPy) and tools/bench/make_sae_rows.py.
# Prints one line per pair: OLD=... NEW=... (median_s for fwd-*, rows_per_s for sae-*)
# and the share of the CPUs other processes used during each run; then the median of
# the per-pair ratios.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BENCH_NAME=paired
. "$ROOT/tools/bench/lib.sh"
old=${1:?usage: paired.sh OLD_BUILD NEW_BUILD KIND PAIRS}; new=${2:?}; kind=${3:?}; pairs=${4:?}
export OPENBLAS_THREAD_TIMEOUT=4 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mkdir -p "$DIR"
case $kind in
  fwd-f32) m=$DIR/L2-f32 ;;
  fwd-bf16|fwd-bf16-openblas) m=$DIR/L2-bf16 ;;
  sae-*) rows=$DIR/rows-32768x512.npy ;;
  *) echo "paired.sh: unknown kind '$kind'" >&2; exit 2 ;;
esac
if [ -n "${m:-}" ] && [ ! -s "$m/model.safetensors" ]; then
  /usr/bin/python3 "$ROOT/tools/bench/make_random_model.py" 2 "${kind#fwd-}" "$m" >/dev/null; fi
[ -n "${m:-}" ] && [ "$kind" = fwd-bf16-openblas ] && [ ! -s "$m/model.safetensors" ] && exit 1
if [ -n "${rows:-}" ] && [ ! -s "$rows" ]; then
  /usr/bin/python3 "$ROOT/tools/bench/make_sae_rows.py" --rows 32768 --dim 512 --out "$rows" >/dev/null; fi
cmd() {   # cmd BUILD_DIR
  case $kind in
    fwd-f32|fwd-bf16) echo env OPENBLAS_NUM_THREADS=2 "$1/bench_forward" --model "$m" --conversion per_matrix \
        --seq 512 --threads 2 --reps 5 --gemm auto --no-profile --no-ceiling ;;
    fwd-bf16-openblas) echo env OPENBLAS_NUM_THREADS=2 "$1/bench_forward" --model "$m" --conversion per_matrix \
        --seq 512 --threads 2 --reps 5 --gemm openblas --no-profile --no-ceiling ;;
    sae-*) echo env OPENBLAS_NUM_THREADS=2 OMP_NUM_THREADS=1 "$MPIRUN" --bind-to none -np 1 "$1/bench_sae" \
        --npy "$rows" --d-sae 4096 --k 32 --batch 4096 --arch "${kind#sae-}" --steps 20 --warmup 2 ;;
  esac
}
metric() { case $kind in fwd-*) grep -o 'median_s=[0-9.]*' "$1" | cut -d= -f2 ;;
                         sae-*) grep -o '"rows_per_s":[0-9.]*' "$1" | cut -d: -f2 ;; esac; }
out=$DIR/paired.out ratios=()
for p in $(seq 1 "$pairs"); do
  wait_quiet >/dev/null
  order="OLD NEW"; [ $((p % 2)) = 0 ] && order="NEW OLD"
  line="$kind pair=$p"
  declare -A val=()
  for w in $order; do
    [ "$w" = OLD ] && b=$old || b=$new
    # shellcheck disable=SC2046
    o=$(run_measured "$out" $(cmd "$b"))
    val[$w]=$(metric "$out")
    line="$line $w=${val[$w]} ${w}_others=$o"
  done
  echo "$line"
  ratios+=("$(awk -v a="${val[NEW]}" -v b="${val[OLD]}" 'BEGIN { printf "%.4f", a / b }')")
done
printf '%s\n' "${ratios[@]}" | sort -g | awk '{ r[NR] = $1 } END { m = (NR % 2) ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2;
  printf "median new/old = %.3f over %d pairs (%s)\n", m, NR, "fwd: time ratio, lower is faster; sae: rows/s ratio, higher is faster" }'
