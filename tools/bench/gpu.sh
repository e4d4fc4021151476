#!/usr/bin/env bash
# gpu.sh — issue 19's GPU checks and benchmarks in one go, for the ~15 minutes of device
# time a session may be lent (BENCHMARKS.md "GPU (issue 19)", docs/cuda.md "First thing
# to do on a GPU"). Everything is time-boxed (TP_GPU_BUDGET, default 480 s in all);
# a step that fails or runs out of time is recorded and the rest still runs.
#
#   [TP_COMMIT=<hash>] bash tools/bench/gpu.sh [--quick] [--no-build] [--budget SECONDS]
#
#   1. build    fresh CMake build with CUDA into $WORK/build (-j$(nproc), only the
#               targets used here); TP_BUILD_DIR=DIR reuses DIR instead (incremental).
#               nvidia-smi and the toolchain versions go to the log.
#   2. tests    test_cuda, test_cuda_parity, test_capture_device, test_sae (outputs kept;
#               a failure is FAIL in the summary, never a stop).
#   3. benches  each beside its baseline in the same run:
#      a. linear   bench_gpu: the backend's bf16 linear at m 4096/8192/16384 on the
#                  OLMo-2-1B shapes vs cublasGemmEx on the same operands, and both as a
#                  fraction of the GPU's bf16 dense peak (goal >= 50 %).
#      b. capture  `transpolmo capture --device cuda` on a random 4-layer 1B-shaped bf16
#                  checkpoint (make_random_model.py) vs capture_hf.py --device cuda
#                  --dtype bf16 (HF transformers + forward hooks, same documents), and
#                  ours on the CPU (goal: ours on the GPU >= 3x HF on the GPU).
#      c. sae      bench_sae --device cuda (TopK, d 2048, F 16384, k 32, batch 4096) vs
#                  sae_saelens.py --device cuda (goal >= 2x); SAELens is not on the device
#                  machine unless carried as wheels in .whl/ (installed into $WORK/site).
#   4. $OUT/gpu_summary.md (markdown table: check, result, ratio, goal met?), and
#      $OUT/gpu_results.jsonl, $OUT/gpu_logs.tar.gz (every step's log); the summary is
#      printed last. $OUT defaults to /tmp/tp-gpu/out (the device tool sets it).
#
# No GPU (nvidia-smi sees none, or TP_GPU=0): the same steps as a dry run — tests run
# (their GPU parts print "skipped: no GPU"), the GPU runs report "skipped: no GPU", and
# the baselines run on the CPU against the bundled tiny model / small SAE rows, so the
# parsing and the summary are exercised; the summary says DRY RUN.
#
# Python: $TP_REF_PY, else python3 when it imports torch (the device machine's does),
# else /opt/transpolmo-ref/bin/python. MPI: the C programs run as singletons (no
# mpiexec), one GPU.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${TP_GPU_WORK:-/tmp/tp-gpu}
OUT=${OUT:-$WORK/out}
BUDGET=${TP_GPU_BUDGET:-480}
QUICK=0 BUILD_FRESH=1
while [ $# -gt 0 ]; do
    case $1 in
        --quick) QUICK=1; shift ;;
        --no-build) BUILD_FRESH=0; shift ;;
        --budget) BUDGET=$2; shift 2 ;;
        *) sed -n '2,9p' "$0" >&2; exit 2 ;;
    esac
done
[ -n "${TP_BUILD_DIR:-}" ] && BUILD_FRESH=0
BUILD=${TP_BUILD_DIR:-$WORK/build}
LOGS=$WORK/logs
STEPS=$WORK/steps.jsonl
RES=$WORK/results.jsonl
rm -rf "$LOGS" "$WORK/cap" "$WORK/sae"
mkdir -p "$OUT" "$LOGS" "$WORK"
: > "$STEPS"
: > "$RES"
exec 3>&1 4>&2 > >(tee "$LOGS/gpu.log") 2>&1
TEE_PID=$!
T0=$SECONDS
# the checkout that travels to the device machine may have no .git: TP_COMMIT=<hash> names it
COMMIT=${TP_COMMIT:-$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')}
cd "$ROOT"   # the tests read tests/data and models/ relative to it
NP=$(nproc)
export PATH=$PATH:/usr/local/cuda/bin
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader \
       OMPI_MCA_btl_vader_backing_directory=/tmp OMPI_MCA_plm_rsh_agent= OMPI_MCA_ess_singleton_isolated=1 \
       TOKENIZERS_PARALLELISM=true HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1

if [ "${TP_GPU:-1}" != 0 ] && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
    GPU=1 GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
else
    GPU=0 GPU_NAME="none"
fi

if [ -n "${TP_REF_PY:-}" ]; then PY=$TP_REF_PY
elif python3 -c 'import torch, numpy' 2>/dev/null; then PY=python3
else PY=/opt/transpolmo-ref/bin/python; fi
if compgen -G "$ROOT/.whl/*.whl" > /dev/null; then   # carried wheels (sae-lens): docs/cuda.md
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" \
        "$ROOT"/.whl/*.whl > "$LOGS/wheels.log" 2>&1 && export PYTHONPATH=$WORK/site${PYTHONPATH:+:$PYTHONPATH}
fi

left() { echo $((BUDGET - (SECONDS - T0))); }

# record NAME STATUS SECONDS NOTE: one line of steps.jsonl (STATUS PASS / FAIL / SKIP / TIMEOUT).
record() {
    local note=${4//\"/\'}
    printf '{"step":"%s","status":"%s","seconds":%s,"note":"%s"}\n' "$1" "$2" "$3" "${note//$'\n'/ }" >> "$STEPS"
    printf '== %-22s %-7s %4ss  %s\n' "$1" "$2" "$3" "$4"
}

# step NAME LIMIT CMD...: CMD under `timeout` (LIMIT, cut to the budget left minus 20 s),
# output to $LOGS/NAME.log; sets RC and records PASS / FAIL / TIMEOUT. Never exits.
step() {
    local name=$1 lim=$2 t0=$SECONDS room; shift 2
    room=$(( $(left) - 20 ))
    [ "$room" -lt "$lim" ] && lim=$room
    if [ "$lim" -lt 5 ]; then RC=124; record "$name" SKIP 0 "out of time (budget ${BUDGET}s)"; return; fi
    echo "-- $name (limit ${lim}s): $*" | cut -c1-300
    if timeout -k 10 "$lim" "$@" > "$LOGS/$name.log" 2>&1; then RC=0; else RC=$?; fi
    local dt=$((SECONDS - t0)) st=PASS note
    note=$( (grep -v '^\s*$' "$LOGS/$name.log" || true) | tail -1 | cut -c1-160)
    if [ "$RC" = 124 ] || [ "$RC" = 137 ]; then st=TIMEOUT note="killed at ${lim}s"
    elif [ "$GPU" = 0 ] && grep -q 'no GPU' "$LOGS/$name.log"; then st=SKIP   # dry run: refused for want of a GPU
    elif [ "$RC" != 0 ]; then st=FAIL note="exit $RC: $note"
    elif grep -qE '"skipped"|^skipped=' "$LOGS/$name.log"; then   # a program that said why it did not run
        st=SKIP
        # ... for want of a GPU, on a GPU machine: it did not see the GPU
        if [ "$GPU" = 1 ] && grep -q 'no GPU' "$LOGS/$name.log"; then st=FAIL note="saw no GPU on a GPU machine: $note"; fi
    fi
    record "$name" "$st" "$dt" "$note"
}

echo "# TranspOLMo GPU checks (issue 19) — $(date -u +%FT%TZ), commit $COMMIT"
echo "# GPU: $GPU_NAME; $NP CPUs; budget ${BUDGET}s; quick=$QUICK; python $PY; work $WORK; out $OUT"
{ nvidia-smi 2>&1 || echo "nvidia-smi: not available"; nvcc --version 2>&1 | tail -2; cmake --version | head -1
  "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.is_available())' 2>&1
  "$PY" -c 'import transformers; print("transformers", transformers.__version__)' 2>&1
  "$PY" -c 'import sae_lens; print("sae_lens", sae_lens.__version__)' 2>&1 | tail -1
  for m in mpi hdf5-openmpi scalapack-openmpi openblas lapacke yaml-0.1 jansson libpcre2-8 check libgvc cairo; do
      pkg-config --exists "$m" 2>/dev/null && echo "pkg-config $m: yes" || echo "pkg-config $m: MISSING"; done
} > "$LOGS/env.log" 2>&1 || true
grep -E 'NVIDIA-SMI|H100|H200|MiB|release|^torch|^transformers|^sae_lens|MISSING' "$LOGS/env.log" | head -20 || true
MISSING=$(sed -n 's/^pkg-config \(.*\): MISSING$/\1/p' "$LOGS/env.log" | tr '\n' ' ')
if [ -n "$MISSING" ]; then record deps FAIL 0 "pkg-config modules missing here (the build needs them): $MISSING"
else record deps PASS 0 "every pkg-config module the build needs is here"; fi

# ---- 1. build -----------------------------------------------------------------------
TARGETS=(transpolmo bench_gpu bench_sae test_cuda test_cuda_parity test_capture_device test_sae npy_allclose store_compare)
if [ "$BUILD_FRESH" = 1 ]; then
    rm -rf "$BUILD"
    step configure 120 cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release
    [ "$RC" = 0 ] && step build 300 cmake --build "$BUILD" -j"$NP" --target "${TARGETS[@]}"
else
    step build 300 cmake --build "$BUILD" -j"$NP" --target "${TARGETS[@]}"
fi
if [ "$BUILD_FRESH" = 1 ] && ! grep -q 'CUDA backend: ON' "$LOGS/configure.log" 2>/dev/null; then
    echo "!! the configure step did not find CUDA (see configure.log)"
fi
HAVE() { [ -x "$BUILD/$1" ]; }

# ---- 2. correctness -------------------------------------------------------------------
TENV=(env TP_TEST_DATA="$ROOT/tests/data" TP_SOURCE_DIR="$ROOT" TP_BINARY="$BUILD/transpolmo"
      TP_NPY_ALLCLOSE="$BUILD/tests/npy_allclose" TP_STORE_COMPARE="$BUILD/tests/store_compare"
      OPENBLAS_NUM_THREADS=4 CK_DEFAULT_TIMEOUT=600)
for t in test_cuda test_cuda_parity test_capture_device test_sae; do
    if HAVE "tests/$t"; then
        step "$t" 150 "${TENV[@]}" "$BUILD/tests/$t"   # (run from the repo root: relative test data)
        # a GPU test that skips on a GPU machine did not run: FAIL
        if [ "$GPU" = 1 ] && grep -q 'skipped: no GPU' "$LOGS/$t.log"; then
            record "$t" FAIL 0 "skipped its GPU tests on a GPU machine: $(grep -m1 'skipped: no GPU' "$LOGS/$t.log")"
        fi
    else
        record "$t" FAIL 0 "not built"
    fi
done

# ---- 3a. linear vs cuBLAS vs peak ----------------------------------------------------------
if HAVE bench_gpu; then
    MS="4096 8192 16384"; [ "$QUICK" = 1 ] && MS=8192
    step bench_linear 120 "$BUILD/bench_gpu" --m "$MS" --type bf16 --reps 10 --rounds 3
    grep '^{' "$LOGS/bench_linear.log" >> "$RES" || true
else
    record bench_linear FAIL 0 "bench_gpu not built"
fi

# ---- 3b. capture: ours (GPU, CPU) vs HF transformers + hooks ------------------------------
CAP=$WORK/cap
mkdir -p "$CAP"
if [ "$GPU" = 1 ]; then
    LAYERS=4 NS=256 SEQ=512 BATCH=32; [ "$QUICK" = 1 ] && NS=96
    M=$CAP/olmo2-1b-L$LAYERS-bf16
    step make_model 120 "$PY" "$ROOT/tools/bench/make_random_model.py" "$LAYERS" bf16 "$M"
    [ ! -d "$M" ] || ln -sfn "$ROOT/tests/data/tokenizers/cl100k-dolma2/tokenizer.json" "$M/tokenizer.json"
    NS_CPU=$((NS / 4))
else   # dry run: the bundled tiny model
    M=$ROOT/models/olmo2-tiny NS=64 SEQ=256 BATCH=8 NS_CPU=64
fi
capture_ours() {   # NAME DEVICE SAMPLES
    step "$1" 150 env OPENBLAS_NUM_THREADS="$NP" OMP_NUM_THREADS=1 "$BUILD/transpolmo" capture --device "$2" \
        --model "$M" --set data.corpus="$ROOT/data/corpus/train.jsonl" --num-samples "$3" --set data.seed=1234 \
        --set data.seq_len="$SEQ" --set data.packing=split --set forward.batch_size="$BATCH" \
        --set forward.threads="$NP" --set capture.hooks=hook_resid_post --set capture.dtype=f32 \
        --set log.progress=never --out "$CAP/$1"
    local s=$CAP/$1/results/capture_summary.json
    if [ -f "$s" ]; then
        "$PY" -c 'import json,sys; s=json.load(open(sys.argv[1])); print(json.dumps({"bench":"capture","impl":sys.argv[2],
            "rows":s["rows"],"wall_s":s["wall_s"],"rows_per_s":s["rows"]/s["wall_s"]}))' "$s" "$1" >> "$RES" || true
    elif grep -q 'no GPU' "$LOGS/$1.log"; then
        echo "{\"bench\":\"capture\",\"impl\":\"$1\",\"skipped\":\"no GPU\"}" >> "$RES"
    fi
}
if [ -f "$M/config.json" ]; then   # the HF baseline runs even when our build failed
    if HAVE transpolmo; then
        capture_ours capture_ours_gpu cuda "$NS"
        capture_ours capture_ours_cpu cpu "$NS_CPU"
    else
        record capture_ours FAIL 0 "transpolmo not built"
    fi
    HFDEV=cpu HFDT=f32; [ "$GPU" = 1 ] && HFDEV=cuda HFDT=bf16
    if "$PY" -c 'import torch, transformers, h5py, tokenizers' 2>/dev/null; then
        step capture_hf 180 env OMP_NUM_THREADS="$NP" "$PY" "$ROOT/tools/bench/capture_hf.py" --model "$M" \
            --corpus "$ROOT/data/corpus/train.jsonl" --num-samples "$NS" --seed 1234 --seq-len "$SEQ" \
            --batch "$BATCH" --threads "$NP" --hooks hook_resid_post --out "$CAP/hf.h5" --json "$CAP/hf.json" \
            --device "$HFDEV" --dtype "$HFDT"
        [ ! -f "$CAP/hf.json" ] || "$PY" -c 'import json,sys; s=json.load(open(sys.argv[1])); s.update(bench="capture",
            impl="capture_hf_"+sys.argv[2]); print(json.dumps(s))' "$CAP/hf.json" "$HFDEV" >> "$RES" || true
        rm -f "$CAP/hf.h5"
    else
        record capture_hf SKIP 0 "skipped: no torch/transformers/h5py in $PY on this machine"
    fi
    rm -f "$CAP"/capture_ours_*/activations.h5
else
    record capture FAIL 0 "no model ($M): see make_model.log"
fi

# ---- 3c. SAE training: ours vs SAELens ----------------------------------------------------
SAE=$WORK/sae
mkdir -p "$SAE"
if [ "$GPU" = 1 ]; then
    SROWS=65536 SDIM=2048 SF=16384 SSTEPS=30; [ "$QUICK" = 1 ] && SROWS=32768 SSTEPS=15
else
    SROWS=8192 SDIM=256 SF=2048 SSTEPS=4
fi
step sae_rows 90 "$PY" "$ROOT/tools/bench/make_sae_rows.py" --rows "$SROWS" --dim "$SDIM" --out "$SAE/rows.npy"
SCOMMON=(--npy "$SAE/rows.npy" --d-sae "$SF" --k 32 --batch 4096 --steps "$SSTEPS" --warmup 3 --arch topk)
if [ -f "$SAE/rows.npy" ]; then   # the SAELens baseline runs even when our build failed
    if HAVE bench_sae; then
        step sae_ours_gpu 150 "$BUILD/bench_sae" "${SCOMMON[@]}" --device cuda
    else
        record sae_ours_gpu FAIL 0 "bench_sae not built"
    fi
    { grep -s '^{' "$LOGS/sae_ours_gpu.log" || true; } | sed 's/"impl":"c"/"impl":"sae_ours_gpu"/' >> "$RES"
    if [ "$GPU" = 0 ] && HAVE bench_sae; then   # dry run: our CPU path stands in, so the ratio code runs
        step sae_ours_cpu 90 env OPENBLAS_NUM_THREADS="$NP" "$BUILD/bench_sae" "${SCOMMON[@]}" --device cpu
        { grep '^{' "$LOGS/sae_ours_cpu.log" || true; } | sed 's/"impl":"c"/"impl":"sae_ours_cpu"/' >> "$RES"
    fi
    SLDEV=cpu; [ "$GPU" = 1 ] && SLDEV=cuda
    step sae_saelens 180 env OMP_NUM_THREADS="$NP" "$PY" "$ROOT/tools/bench/sae_saelens.py" "${SCOMMON[@]}" \
        --threads "$NP" --device "$SLDEV"
    { grep '^{' "$LOGS/sae_saelens.log" || true; } | "$PY" -c 'import json,sys
for l in sys.stdin: r=json.loads(l); r["impl"]="sae_saelens_"+r.get("device","?"); print(json.dumps(r))' >> "$RES" || true
else
    record sae FAIL 0 "no rows: see sae_rows.log"
fi

# ---- 4. summary ---------------------------------------------------------------------------
"$PY" "$ROOT/tools/bench/gpu_summary.py" --steps "$STEPS" --results "$RES" --gpu "$GPU_NAME" --dry "$((1 - GPU))" \
    --commit "$COMMIT" --wall "$((SECONDS - T0))" \
    --capture-label "$(basename "$M"), $NS documents, seq_len $SEQ, batch $BATCH, hook_resid_post at every layer" \
    > "$OUT/gpu_summary.md" 2> "$LOGS/summary.err" ||
    { echo "gpu_summary.py failed (see summary.err); raw results:"; cat "$STEPS" "$RES"; } > "$OUT/gpu_summary.md"
cp "$STEPS" "$OUT/gpu_steps.jsonl"
cp "$RES" "$OUT/gpu_results.jsonl"
echo
cat "$OUT/gpu_summary.md"
exec 1>&3 2>&4 3>&- 4>&-   # close the tee's pipe and let it finish gpu.log before the tar
wait "$TEE_PID" 2>/dev/null || true
tar -czf "$OUT/gpu_logs.tar.gz" -C "$WORK" logs
exit 0
