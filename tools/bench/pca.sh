#!/usr/bin/env bash
# pca.sh — the PCA benchmark of issues 6 and 19: distributed PCA (cov method: Gram
# accumulation in f64, or in f32 blocks summed in f64 (--grams), + MPI_Allreduce +
# ScaLAPACK pdsyevd) vs NumPy and scikit-learn on the same rows, np=1 → 2 scaling.
#
#   tools/bench/pca.sh [--rounds 5] [--rows 200000] [--dim 2048] [--seed 6] [--k 100]
#                      [--grams f64,f32] [--svd-rows 5000] [--no-explore] [--skl-full-rounds 1]
#                      [--start-load X]
#
# Do not wrap it in flock: it takes $TP_BENCH_LOCK (default /tmp/tp-bench.lock, shared
# with the other benchmarks) itself around each measured run, so that other agents'
# benchmarks can run between ours but never during one.
#
# Rows: tools/bench/make_pca_rows.py writes ROWS × DIM f32 rows (seeded; low-rank +
# power-law spectrum in a random basis + 4 large-mean "massive activation" channels) to
# $TP_BENCH_DIR/pca/rows-NxD.npy once (1.6 GB at 200k × 2048); every side reads that file
# (C: each rank pread()s its contiguous slice; read time not counted on either side).
# Each round runs, in this order (one process each):
#   py     tools/bench/pca_numpy.py, OPENBLAS/OMP/MKL_NUM_THREADS=2: np.cov (f64) +
#          numpy.linalg.eigh, sklearn PCA(svd_solver="covariance_eigh") (and "full" in
#          the last --skl-full-rounds rounds: ~5 min at 200k rows); writes NumPy's
#          covariance for the C eig timing and checks the C spectra of the previous round.
#   c-np1  mpiexec --bind-to none -np 1 bench_pca, OPENBLAS_NUM_THREADS=2 (a lone rank is
#          bound to one core by default, which halves a 2-thread OpenBLAS here).
#   c-np2  mpiexec -np 2 bench_pca (default binding, grid 1×2), OPENBLAS_NUM_THREADS=1.
#   c-np1-f32, c-np2-f32  the same with bench_pca --gram f32 (when --grams has f32).
# bench_pca times the cov method as a caller streams rows (accumulate, then
# pca_accum_finish) and then the ScaLAPACK eigensolver alone on NumPy's covariance.
# After the rounds: the svd method (pdgesvd) on the first --svd-rows rows at np=1 and 2
# (0 skips it), and --explore (default): the eigensolver alone over nb 32/64/128,
# pdsyevd/pdsyevr, grid 1×2 and 2×1, 1 and 2 BLAS threads, LAPACK dsyevd in one process,
# with numpy eigh (1 and 2 threads) in the same window.
#
# Noise: before each run the script waits (up to $QUIET_WAIT s) until other processes use
# < 15 % of the CPUs over 2 s, and records `others`, the share of the CPUs other processes
# used during the run (/proc/stat busy time minus the run's own CPU time); a run with
# others > $OTHERS_MAX (0.05) is run again (up to $RETRIES times; the last try is kept and
# the summary says so). Results: $LOG/results.jsonl (every JSON line, with round, run,
# others, load); the summary is the median over the rounds, then scikit-learn
# covariance_eigh ÷ each C total round by round (the runs of a round are back to back,
# so on a shared machine these paired ratios are steadier than the medians). Parity:
# pca_numpy.py compares the C spectra written the round before (the same computation)
# and scikit-learn's with NumPy's f64 eigh; after the rounds one more untimed NumPy run
# checks the last round's C spectra.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BENCH_NAME=pca.sh
. "$ROOT/tools/bench/lib.sh"
BIN=$BUILD/bench_pca
LOCK=${TP_BENCH_LOCK-/tmp/tp-bench.lock}
ROUNDS=5 ROWS=200000 DIM=2048 SEED=6 K=100 SVD_ROWS=5000 EXPLORE=1 SKL_FULL_ROUNDS=1 GRAMS=f64,f32
while [ $# -gt 0 ]; do
    case $1 in
        --rounds) ROUNDS=$2; shift 2 ;;
        --rows) ROWS=$2; shift 2 ;;
        --dim) DIM=$2; shift 2 ;;
        --seed) SEED=$2; shift 2 ;;
        --k) K=$2; shift 2 ;;
        --grams) GRAMS=$2; shift 2 ;;
        --svd-rows) SVD_ROWS=$2; shift 2 ;;
        --no-explore) EXPLORE=0; shift ;;
        --skl-full-rounds) SKL_FULL_ROUNDS=$2; shift 2 ;;
        --start-load) START_LOAD=$2; shift 2 ;;
        *) sed -n '2,9p' "$0" >&2; exit 2 ;;
    esac
done
export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1} OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}
export OMPI_MCA_btl=${OMPI_MCA_btl:-self,vader} OMPI_MCA_rmaps_base_oversubscribe=${OMPI_MCA_rmaps_base_oversubscribe:-1}
export OMPI_MCA_btl_vader_backing_directory=${OMPI_MCA_btl_vader_backing_directory:-/tmp}
WORK=$DIR/pca
LOG=$WORK/logs
mkdir -p "$LOG"
RES=$LOG/results.jsonl
: > "$RES"
cmake --build "$BUILD" --target bench_pca >/dev/null

ROWSF=$WORK/rows-${ROWS}x${DIM}.npy
COV=$WORK/cov-${ROWS}x${DIM}.npy
need=$(( ROWS * DIM * 4 / 1024 / 1024 * 2 ))   # the file, and page cache headroom (MiB)
[ -f "$ROWSF" ] || [ "$(df -Pm "$WORK" | awk 'NR == 2 { print $4 }')" -gt "$need" ] || {
    echo "pca.sh: not enough free disk in $WORK for $ROWS x $DIM rows" >&2; exit 1; }

measure_summary() {
    grep '^{' "$1" | jq -r '[.kind, (.routine // ""), (to_entries | map(select(.key | test("_s$")) |
        "\(.key)=\(.value)") | join(" "))] | join(" ")' | tr '\n' ';'
}

echo "# TranspOLMo PCA benchmark (issue 6) — $(date -u +%FT%TZ)"
echo "# CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs; rows $ROWS x $DIM f32, seed $SEED, k $K," \
     "rounds $ROUNDS; $("$MPIRUN" --version | head -1)"
OPENBLAS_NUM_THREADS=2 OMP_NUM_THREADS=2 "$PY" "$ROOT/tools/bench/make_pca_rows.py" --rows "$ROWS" --dim "$DIM" \
    --seed "$SEED" --out "$ROWSF" 2>&1 | sed 's/^/# /'
wait_start_load
cat "$ROWSF" > /dev/null   # into the page cache: no side pays for the first read

PYENV=(env OPENBLAS_NUM_THREADS=2 OMP_NUM_THREADS=2 MKL_NUM_THREADS=2)
C1=(env OPENBLAS_NUM_THREADS=2 OMP_NUM_THREADS=1 "$MPIRUN" --bind-to none -np 1 "$BIN")
C2=(env OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 "$MPIRUN" -np 2 "$BIN")
CRUNS=() PREFIXES=()   # run names: c-np1, c-np2 (f64), c-np1-f32, c-np2-f32
for g in ${GRAMS//,/ }; do
    sfx=; [ "$g" = f64 ] || sfx=-$g
    CRUNS+=("c-np1$sfx" "c-np2$sfx")
    PREFIXES+=(--c-prefix "$WORK/c-np1$sfx" --c-prefix "$WORK/c-np2$sfx")
done
rm -f "$WORK"/c-np*.npy   # no parity against an older build's spectra
for r in $(seq 1 "$ROUNDS"); do
    what=numpy,skl-cov
    [ "$r" -gt $((ROUNDS - SKL_FULL_ROUNDS)) ] && what=$what,skl-full
    measure py "$r" "${PYENV[@]}" "$PY" "$ROOT/tools/bench/pca_numpy.py" --npy "$ROWSF" --k "$K" --what "$what" \
        --cov-out "$COV" "${PREFIXES[@]}"
    for run in "${CRUNS[@]}"; do
        g=${run#c-np?}; g=${g#-}; g=${g:-f64}
        case $run in c-np1*) C=("${C1[@]}") ;; *) C=("${C2[@]}") ;; esac
        eig=(); [ "$g" = f64 ] && eig=(--eig-cov "$COV")   # the eigensolver alone: once per round is enough
        measure "$run" "$r" "${C[@]}" --npy "$ROWSF" --k "$K" --gram "$g" "${eig[@]}" --out "$WORK/$run"
    done
done
measure parity 1 "${PYENV[@]}" "$PY" "$ROOT/tools/bench/pca_numpy.py" --npy "$ROWSF" --k "$K" --what numpy \
    "${PREFIXES[@]}"

if [ "$SVD_ROWS" -gt 0 ]; then
    echo "# svd method on the first $SVD_ROWS rows (one run each)"
    measure svd-np1 1 "${C1[@]}" --npy "$ROWSF" --k "$K" --no-cov --svd-rows "$SVD_ROWS"
    measure svd-np2 1 "${C2[@]}" --npy "$ROWSF" --k "$K" --no-cov --svd-rows "$SVD_ROWS"
fi

if [ "$EXPLORE" = 1 ]; then
    echo "# the eigensolver alone on NumPy's covariance: block size, routine, grid, threads (3 reps each)"
    EIG_ARGS=(--npy "$ROWSF" --no-cov --eig-cov "$COV" --reps 3)
    measure numpy-eigh-t2 1 "${PYENV[@]}" "$PY" "$ROOT/tools/bench/pca_numpy.py" --cov-in "$COV" --what eigh --reps 3
    measure numpy-eigh-t1 1 env OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 "$PY" "$ROOT/tools/bench/pca_numpy.py" \
        --cov-in "$COV" --what eigh --reps 3
    for nb in 32 64 128; do   # dsyevd: LAPACK (Debian OpenBLAS) in one process, what a 1x1 grid could call
        rt=pdsyevd,pdsyevr; [ "$nb" = 64 ] && rt=$rt,dsyevd
        measure "eig-np1-t2-nb$nb" 1 "${C1[@]}" "${EIG_ARGS[@]}" --nb "$nb" --eig-routines "$rt"
    done
    measure eig-np1-t1-nb64 1 env OPENBLAS_NUM_THREADS=1 "$MPIRUN" --bind-to none -np 1 "$BIN" "${EIG_ARGS[@]}" --nb 64
    for nb in 32 64 128; do
        measure "eig-np2-1x2-nb$nb" 1 "${C2[@]}" "${EIG_ARGS[@]}" --nb "$nb" --eig-routines pdsyevd,pdsyevr
    done
    measure eig-np2-2x1-nb64 1 "${C2[@]}" "${EIG_ARGS[@]}" --nb 64 --grid 2x1
    measure eig-np2-t2-nb64 1 env OPENBLAS_NUM_THREADS=2 "$MPIRUN" --bind-to none -np 2 "$BIN" "${EIG_ARGS[@]}" --nb 64
fi

echo
"$PY" - "$RES" "$OTHERS_MAX" <<'EOF'
import json, statistics as st, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
omax = float(sys.argv[2])
def med(run, kind, key, **f):
    v = [r[key] for r in rows if r["run"] == run and r["kind"] == kind and key in r
         and all(r.get(a) == b for a, b in f.items())]
    return (st.median(v), len(v)) if v else (float("nan"), 0)
def line(label, v, n, unit="s"):
    print(f"  {label:<58} {v:9.3f} {unit}  (n={n})")
cruns = [x for x in ("c-np1", "c-np2", "c-np1-f32", "c-np2-f32") if any(r["run"] == x for r in rows)]
main = [r for r in rows if r["run"] in ("py", *cruns)]
print(f"## Summary: medians over rounds; others max {max(r['others'] for r in main):.2f} "
      f"(runs above {omax}: {sum(r['others'] > omax for r in main)})")
n = next((r["n"] for r in rows if r["kind"] == "cov"), 0)
print(f"  rows {n}, d {rows[0]['d']}")
npc, npe = med("py", "numpy", "cov_s"), med("py", "numpy", "eigh_s")
sc, sf = med("py", "skl-cov", "fit_s"), med("py", "skl-full", "fit_s")
line("NumPy np.cov (f64)", *npc); line("NumPy linalg.eigh", *npe)
line("sklearn PCA covariance_eigh fit (f32)", *sc); line("sklearn PCA full fit (f32)", *sf)
c = {}
for run in cruns:
    c[run] = {key: med(run, "cov", key) for key in ("accum_s", "finish_s", "reduce_s", "decomp_s", "total_s")}
    c[run]["eig_s"] = med(run, "eig", "eig_s", routine="pdsyevd")
    for key, (v, k) in c[run].items():
        if k: line(f"C {run} {key}", v, k)
print("## Ratios of the medians (> 1: C faster)")
for run in cruns:
    e, fin, tot, acc = c[run]["eig_s"][0], c[run]["finish_s"][0], c[run]["total_s"][0], c[run]["accum_s"][0]
    print(f"  {run}: numpy eigh / C pdsyevd alone {npe[0] / e:.2f}x; numpy eigh / C finish {npe[0] / fin:.2f}x; "
          f"np.cov / C accum {npc[0] / acc:.2f}x; (np.cov+eigh) / C total {(npc[0] + npe[0]) / tot:.2f}x; "
          f"sklearn cov_eigh / C total {sc[0] / tot:.2f}x; sklearn full / C total {sf[0] / tot:.2f}x")
for a, b in (("c-np1", "c-np2"), ("c-np1-f32", "c-np2-f32")):
    for key in ("total_s", "accum_s", "finish_s") if a in c and b in c else ():
        s = c[a][key][0] / c[b][key][0]
        print(f"  {a} -> {b} {key}: speed-up {s:.2f}x, efficiency {s / 2:.2f}")
    if a in c and b in c:
        print(f"  goal decomposition < 5 s: C finish {a} {c[a]['finish_s'][0]:.2f} s, {b} {c[b]['finish_s'][0]:.2f} s")
print("## Paired, round by round: sklearn covariance_eigh fit_s / C total_s (> 1: C faster)")
for rd in sorted({r["round"] for r in main}):
    skl = [r["fit_s"] for r in rows if r["run"] == "py" and r["round"] == rd and r["kind"] == "skl-cov"]
    tot = {r["run"]: r for r in rows if r["run"] in cruns and r["round"] == rd and r["kind"] == "cov"}
    if skl:
        print(f"  round {rd}: sklearn {skl[0]:.2f} s; " + "; ".join(
            f"{run} {tot[run]['total_s']:.2f} s ({skl[0] / tot[run]['total_s']:.2f}x, others {tot[run]['others']})"
            for run in cruns if run in tot))
par = [r for r in rows if r["kind"] == "parity"]
for p in par[-2:]:   # the last round's (scikit-learn) and the check after the rounds (C)
    print(f"## Parity ({p['run']} round {p['round']}): eigenvalues vs NumPy f64 eigh")
    for k_, v in p.items():
        if k_.endswith(("numpy", "skl-cov", "skl-full")): print(f"  {k_}: {json.dumps(v)}")
svd = [r for r in rows if r["kind"] == "svd"]
for r in svd:
    print(f"  svd {r['run']}: n {r['n']} svd_s {r['svd_s']} cov_same_rows_s {r['cov_same_rows_s']} "
          f"max_rel_top10 {r['max_rel_top10']} others {r['others']}")
ex = [r for r in rows if r["run"].startswith(("eig-", "numpy-eigh"))]
if ex:
    print("## Eigensolver alone (median of 3 reps in one process)")
    groups = {}
    for r in ex:
        groups.setdefault((r["run"], r.get("routine", "numpy eigh")), []).append(r["eig_s"] if "eig_s" in r else r["eigh_s"])
    for (run, routine), v in groups.items():
        o = max(r["others"] for r in ex if r["run"] == run)
        print(f"  {run:<20} {routine:<12} {st.median(v):7.3f} s  (others {o})")
EOF
echo "Logs: $LOG"
