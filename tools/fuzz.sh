#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/fuzz_*.c; clang, ASan + UBSan, CUDA off)
# into build-fuzz/ and fuzzes each for a fixed time, one after the other.
#   usage: tools/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default 20 s, every target)
# The corpus each run grows is kept in build-fuzz/corpus/<target>/ (the next run starts
# from it and the committed seeds in tests/fuzz/corpus/<target>/). An input that
# crashes, leaks or times out is written to tests/fuzz/regressions/<target>/: commit
# it with the fix, and ctest's fuzz.<target> replays it from then on. Prints one line
# of libFuzzer's final numbers per target; exits 1 if any target found something.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-20}
shift || true
build=${TP_FUZZ_BUILD_DIR:-$root/build-fuzz}
if ! command -v clang >/dev/null; then
  echo "fuzz: clang is missing (tools/install-deps.sh installs it)" >&2
  exit 1
fi
cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER=clang -DTP_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" --target fuzz_all -j"$(nproc)"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in "$root"/tests/fuzz/fuzz_*.c; do t=$(basename "$f" .c); targets+=("${t#fuzz_}"); done
fi
# Open MPI (fuzz_store_attrs initialises it) keeps allocations until exit by design.
export LSAN_OPTIONS=suppressions=$root/tests/fuzz/lsan.supp:print_suppressions=0
export ASAN_OPTIONS=abort_on_error=1:detect_leaks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader \
  OMPI_MCA_btl_vader_backing_directory=/tmp OMPI_MCA_plm_rsh_agent= OPENBLAS_NUM_THREADS=1
failed=()
printf '%-16s %10s %8s %8s %8s %8s %s\n' target execs exec/s cov ft corpus result
for t in "${targets[@]}"; do
  work=$build/corpus/$t
  found=$root/tests/fuzz/regressions/$t
  mkdir -p "$work" "$found"
  log=$build/fuzz-$t.log
  rc=0
  (cd "$build" && ./tests/fuzz/fuzz_"$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
     -print_final_stats=1 -artifact_prefix="$found/" "$work" "$root/tests/fuzz/corpus/$t") >"$log" 2>&1 || rc=$?
  done_line=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$done_line")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$done_line")
  corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9A-Za-z]*\).*/\1/p' <<<"$done_line")
  result=ok
  if [ "$rc" -ne 0 ]; then
    result="FOUND (rc $rc): $(grep -E 'ERROR|SUMMARY|Test unit written' "$log" | head -n 3 | tr '\n' ' ')"
    failed+=("$t")
  fi
  printf '%-16s %10s %8s %8s %8s %8s %s\n' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$result"
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: ${failed[*]} found inputs that fail (logs: $build/fuzz-<target>.log; inputs: tests/fuzz/regressions/)" >&2
  exit 1
fi
