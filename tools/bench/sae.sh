#!/usr/bin/env bash
# sae.sh — the SAE benchmark of issue 7: our trainer (sae_train_step, np=1 and np=2) vs
# SAELens (PyPI sae-lens, its SAETrainer.step) on the same rows, architecture, size,
# batch and number of steps, same machine, same run.
#
#   tools/bench/sae.sh [--rounds 3] [--archs "topk relu"] [--rows 32768] [--dim 512]
#                      [--d-sae 4096] [--k 32] [--batch 4096] [--steps 30] [--warmup 3]
#                      [--profile 7] [--perf] [--start-load X]
#
# Do not wrap it in flock: it takes $TP_BENCH_LOCK (default /tmp/tp-bench.lock, shared
# with the other benchmarks) itself around each measured run, so that other agents'
# benchmarks can run between ours but never during one.
#
# Rows: tools/bench/make_sae_rows.py writes ROWS × DIM f32 rows (seeded sparse sums of
# 4·DIM "true" feature directions + a mean + noise) to $TP_BENCH_DIR/sae/ once; both
# sides read that file (not timed). Step t trains on batch t mod (ROWS/BATCH).
# Each round runs, per architecture, in an order that rotates from round to round:
#   c-np1    mpiexec --bind-to none -np 1 bench_sae, OPENBLAS_NUM_THREADS=2 (a lone
#            rank is bound to one core by default, which halves a 2-thread OpenBLAS);
#   c-np2    mpiexec -np 2 bench_sae (default binding), OPENBLAS_NUM_THREADS=1: each
#            rank its half of every batch, one MPI_Allreduce of the gradient per step;
#   saelens  tools/bench/sae_saelens.py, torch.set_num_threads(2) (OMP/MKL/OPENBLAS=2).
# Both sides time `steps` steps after `warmup` untimed ones (start-up, file reading and
# initialisation excluded); rows/s = steps · batch / wall time of those steps. See the
# comments at the top of bench_sae.c and sae_saelens.py for exactly what a step is.
# After the rounds (--profile S > 0): bench_sae --profile S at np=1 and np=2 for each
# architecture: the step split into sae_forward / sae_backward / allreduce /
# sae_apply_step, and the dense GEMMs alone on the same shapes. --perf: `perf record`
# of one np=1 TopK run, the top symbols.
#
# Noise: before each run the script waits (up to $QUIET_WAIT s) until other processes use
# < 15 % of the CPUs over 2 s, and records `others`, the share of the CPUs other processes
# used during the run (/proc/stat busy time minus the run's own CPU time); a run with
# others > $OTHERS_MAX (0.05) is run again (up to $RETRIES times; the last try is kept and
# the summary says so). Results: $LOG/results.jsonl; the summary is the median over rounds.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BENCH_NAME=sae.sh
. "$ROOT/tools/bench/lib.sh"
BIN=$BUILD/bench_sae
LOCK=${TP_BENCH_LOCK-/tmp/tp-bench.lock}
ROUNDS=3 ARCHS="topk relu" ROWS=32768 DIM=512 DSAE=0 K=32 BATCH=4096 STEPS=30 WARMUP=3 PROFILE=7 PERF=0
while [ $# -gt 0 ]; do
    case $1 in
        --rounds) ROUNDS=$2; shift 2 ;;
        --archs) ARCHS=$2; shift 2 ;;
        --rows) ROWS=$2; shift 2 ;;
        --dim) DIM=$2; shift 2 ;;
        --d-sae) DSAE=$2; shift 2 ;;
        --k) K=$2; shift 2 ;;
        --batch) BATCH=$2; shift 2 ;;
        --steps) STEPS=$2; shift 2 ;;
        --warmup) WARMUP=$2; shift 2 ;;
        --profile) PROFILE=$2; shift 2 ;;
        --perf) PERF=1; shift ;;
        --start-load) START_LOAD=$2; shift 2 ;;
        *) sed -n '2,9p' "$0" >&2; exit 2 ;;
    esac
done
[ "$DSAE" -gt 0 ] || DSAE=$((8 * DIM))
export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1} OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}
export OMPI_MCA_btl=${OMPI_MCA_btl:-self,vader} OMPI_MCA_rmaps_base_oversubscribe=${OMPI_MCA_rmaps_base_oversubscribe:-1}
export OMPI_MCA_btl_vader_backing_directory=${OMPI_MCA_btl_vader_backing_directory:-/tmp}
WORK=$DIR/sae
LOG=$WORK/logs
mkdir -p "$LOG"
RES=$LOG/results.jsonl
: > "$RES"
nice cmake --build "$BUILD" --target bench_sae >/dev/null

measure_summary() {
    grep '^{' "$1" | jq -r 'if .kind == "train" then "rows/s \(.rows_per_s | floor)  step median \(.step_s_median * 1000 | floor) ms  loss \(.loss_first) -> \(.loss_last)"
        else "fwd \(.forward_s) bwd \(.backward_s) allreduce \(.allreduce_s) apply \(.apply_s) enc_gemm \(.enc_gemm_alone_s)" end' | tr '\n' ';'
}

ROWSF=$WORK/rows-${ROWS}x${DIM}.npy
echo "# TranspOLMo SAE benchmark (issue 7) — $(date -u +%FT%TZ)"
echo "# CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs; rows $ROWS x $DIM f32, d_sae $DSAE, k $K," \
     "batch $BATCH, $STEPS timed steps after $WARMUP, rounds $ROUNDS; $("$MPIRUN" --version | head -1);" \
     "sae-lens $("$PY" -c 'import importlib.metadata as m; print(m.version("sae-lens"))')"
OPENBLAS_NUM_THREADS=2 "$PY" "$ROOT/tools/bench/make_sae_rows.py" --rows "$ROWS" --dim "$DIM" --out "$ROWSF" 2>&1 | sed 's/^/# /'
wait_start_load
cat "$ROWSF" > /dev/null   # into the page cache

COMMON=(--npy "$ROWSF" --d-sae "$DSAE" --k "$K" --batch "$BATCH")
C1=(env OPENBLAS_NUM_THREADS=2 OMP_NUM_THREADS=1 "$MPIRUN" --bind-to none -np 1 "$BIN")
C2=(env OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 "$MPIRUN" -np 2 "$BIN")
PYENV=(env OPENBLAS_NUM_THREADS=2 OMP_NUM_THREADS=2 MKL_NUM_THREADS=2)
run_one() {   # IMPL ARCH ROUND
    case $1 in
        c-np1) measure "$2-c-np1" "$3" "${C1[@]}" "${COMMON[@]}" --arch "$2" --steps "$STEPS" --warmup "$WARMUP" ;;
        c-np2) measure "$2-c-np2" "$3" "${C2[@]}" "${COMMON[@]}" --arch "$2" --steps "$STEPS" --warmup "$WARMUP" ;;
        saelens) measure "$2-saelens" "$3" "${PYENV[@]}" "$PY" "$ROOT/tools/bench/sae_saelens.py" "${COMMON[@]}" \
                     --arch "$2" --steps "$STEPS" --warmup "$WARMUP" --threads 2 ;;
    esac
}
IMPLS=(c-np1 c-np2 saelens)
for r in $(seq 1 "$ROUNDS"); do
    for arch in $ARCHS; do
        for i in 0 1 2; do run_one "${IMPLS[$(( (i + r - 1) % 3 ))]}" "$arch" "$r"; done
    done
done

if [ "$PROFILE" -gt 0 ]; then
    echo "# profile: the step split into phases, $PROFILE steps each"
    for arch in $ARCHS; do
        measure "$arch-prof-np1" 1 "${C1[@]}" "${COMMON[@]}" --arch "$arch" --steps 2 --warmup 1 --profile "$PROFILE"
        measure "$arch-prof-np2" 1 "${C2[@]}" "${COMMON[@]}" --arch "$arch" --steps 2 --warmup 1 --profile "$PROFILE"
    done
fi
if [ "$PERF" = 1 ] && command -v perf > /dev/null; then
    echo "# perf: one np=1 TopK run ($STEPS steps), top symbols (self time)"
    lock
    OPENBLAS_NUM_THREADS=2 perf record -q -o "$LOG/perf-topk.data" -- "$BIN" "${COMMON[@]}" --arch topk \
        --steps "$STEPS" --warmup "$WARMUP" > "$LOG/perf-topk.txt" 2>&1 || true
    unlock
    perf report -q -i "$LOG/perf-topk.data" --no-children --sort symbol > "$LOG/perf-topk.report" 2>/dev/null || true
    sed -n '1,20s/^/  /p' "$LOG/perf-topk.report"   # (not `| head`: SIGPIPE under pipefail)
fi

echo
"$PY" - "$RES" "$OTHERS_MAX" <<'EOF'
import json, statistics as st, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
omax = float(sys.argv[2])
train = [r for r in rows if r["kind"] == "train"]
print(f"## Summary: median over rounds of rows/s (= steps x batch / timed wall); others max "
      f"{max(r['others'] for r in train):.2f} (kept runs above {omax}: {sum(r['others'] > omax for r in train)})")
print(f"  {'arch':<6} {'impl':<9} {'rows/s':>9} {'step ms':>8} {'n':>2} {'ours/SAELens':>13} {'np2/np1':>8} {'eff.':>5}  others")
for arch in dict.fromkeys(r["arch"] for r in train):
    med = {}
    for impl, run in (("c-np1", f"{arch}-c-np1"), ("c-np2", f"{arch}-c-np2"), ("saelens", f"{arch}-saelens")):
        v = [r for r in train if r["run"] == run]
        if v:
            med[impl] = (st.median(r["rows_per_s"] for r in v), st.median(r["step_s_median"] for r in v), len(v),
                         max(r["others"] for r in v))
    base = med.get("saelens", (float("nan"),))[0]
    one = med.get("c-np1", (float("nan"),))[0]
    for impl, (rps, sm, n, o) in med.items():
        ratio = f"{rps / base:.2f}" if impl != "saelens" else "1.00"
        sc = f"{rps / one:.2f}" if impl == "c-np2" else "-"
        ef = f"{rps / one / 2:.2f}" if impl == "c-np2" else "-"
        print(f"  {arch:<6} {impl:<9} {rps:9.0f} {sm * 1000:8.1f} {n:>2} {ratio:>13} {sc:>8} {ef:>5}  {o:.2f}")
prof = [r for r in rows if r["kind"] == "profile"]
if prof:
    print("## Profile (ms per step, median; rank 0): forward / backward / allreduce / apply / step;"
          " encoder GEMM alone; all dense GEMMs alone; memset of the gradient")
    for r in prof:
        f = lambda k: r[k] * 1000
        print(f"  {r['arch']:<6} np={r['ranks']} rows/rank {r['n_local']}: {f('forward_s'):7.1f} {f('backward_s'):7.1f} "
              f"{f('allreduce_s'):6.1f} {f('apply_s'):6.1f} = {f('step_s'):7.1f};  enc GEMM {f('enc_gemm_alone_s'):6.1f}, "
              f"dense GEMMs {f('dense_gemms_alone_s'):7.1f}, memset {f('grad_memset_alone_s'):5.1f}  (others {r['others']})")
sl = [r for r in train if r["impl"] == "saelens"]
if sl:
    print(f"  (SAELens {sl[0]['sae_lens']}, torch {sl[0]['torch']})")
EOF
echo "Logs: $LOG"
