#!/usr/bin/env bash
# scaling.sh — capture, geometry and sae on random 1B- and 7B-shaped models (a few
# layers, so that they fit here) at several rank counts: strong scaling (the same
# documents at every np) and weak scaling (documents ∝ np). Per run: wall time of each
# phase, peak RSS of the largest rank (/usr/bin/time), rows, the store's size. The
# results go to $DIR/scaling/results.jsonl; tools/bench/scaling_report.py turns them
# into docs/scaling.md (tables, SVG plots, the planner's extrapolation).
#
#   tools/bench/scaling.sh [--shapes "1b 7b"] [--np "1 2 4"] [--layers 2] [--docs 16] [--seq 64]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${TP_BINARY:-${TP_BUILD_DIR:-$ROOT/build}/transpolmo}
MPIRUN=${MPIEXEC:-mpiexec}
PY=${TP_PY:-/usr/bin/python3}
DIR=${TP_BENCH_DIR:-/tmp/tp-bench}
SHAPES="1b 7b" NPS="1 2 4" LAYERS=2 DOCS=16 SEQ=64
while [ $# -gt 0 ]; do
  case $1 in
    --shapes) SHAPES=$2; shift 2 ;;
    --np) NPS=$2; shift 2 ;;
    --layers) LAYERS=$2; shift 2 ;;
    --docs) DOCS=$2; shift 2 ;;
    --seq) SEQ=$2; shift 2 ;;
    *) echo "scaling.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl=${OMPI_MCA_btl:-self,vader}
OUT=$DIR/scaling
mkdir -p "$OUT"
RES=$OUT/results.jsonl
: > "$RES"
WORK=$(mktemp -d /tmp/tp_scaling_XXXXXX)
trap 'rm -rf "$WORK"' EXIT
cd "$ROOT"
last=$((LAYERS - 1))
# Small on purpose: every phase of every run, one hook per layer, a small SAE.
ARGS=(--config configs/default.yaml --set data.seq_len="$SEQ" --set forward.batch_size=4
      --set capture.hooks=hook_resid_post --layers "$(seq -s, 0 "$last")" --set sae.expansion=2
      --set sae.hooks=blocks.$last.hook_resid_post --set sae.num_epochs=1 --set sae.eval.num_samples=4
      --set sae.catalog.max_detailed=256 --set geometry.id.sample=500 --set geometry.local.sample=100)
for shape in $SHAPES; do
  M=$DIR/olmo2-$shape-L$LAYERS-bf16-np   # the name plan_check.sh uses for 1b
  if [ ! -f "$M/model.safetensors" ]; then
    "$PY" "$ROOT/tools/bench/make_random_model.py" "$LAYERS" bf16 "$M" "$shape" >&2
    cp "$ROOT/models/olmo2-tiny/tokenizer.json" "$M/"
  fi
  for mode in strong weak; do
    for np in $NPS; do
      docs=$DOCS; [ $mode = weak ] && docs=$((DOCS * np))
      run=$WORK/$shape-$mode-np$np
      thr=$(( $(nproc) / np )); [ $thr -ge 1 ] || thr=1
      for ph in capture geometry sae; do
        t0=$(date +%s.%N)
        if ! timeout -s KILL 3600 "$MPIRUN" -np "$np" --bind-to none sh -c \
            "OPENBLAS_NUM_THREADS=$thr exec /usr/bin/time -f %M -o $run.$ph.rss.\$OMPI_COMM_WORLD_RANK $BIN $ph \"\$@\" --model $M --out $run" \
            sh "${ARGS[@]}" --num-samples "$docs" > "$run.$ph.log" 2>&1; then
          echo "scaling: $shape $mode np$np $ph failed:" >&2; tail -5 "$run.$ph.log" >&2; exit 1
        fi
        t1=$(date +%s.%N)
        kb=$(cat "$run.$ph.rss."* | sort -n | tail -1)
        "$PY" - "$RES" "$run" "$shape" "$mode" "$np" "$ph" "$t0" "$t1" "$kb" "$docs" "$LAYERS" "$(nproc)" <<'PYEOF'
import json, os, sys
res, run, shape, mode, np_, ph, t0, t1, kb, docs, layers, ncpu = sys.argv[1:]
cap = json.load(open(os.path.join(run, "results/capture_summary.json")))
rows = cap["rows"]
store = os.path.getsize(os.path.join(run, "activations.h5"))
rec = {"shape": shape, "mode": mode, "np": int(np_), "phase": ph, "wall_s": float(t1) - float(t0),
       "peak_rss_mib": int(kb) / 1024, "docs": int(docs), "rows": rows, "layers": int(layers),
       "store_bytes": store, "cpus": int(ncpu), "capture_write_mib_per_s": cap.get("write_mib_per_s"),
       "capture_io_share": cap.get("io_share")}
open(res, "a").write(json.dumps(rec) + "\n")
print(f"{shape} {mode:6s} np{np_} {ph:9s} {rec['wall_s']:8.1f} s  {rec['peak_rss_mib']:7.0f} MiB  rows {rows}")
PYEOF
      done
    done
  done
done
echo "results: $RES (tools/bench/scaling_report.py $RES docs/scaling.md)"
