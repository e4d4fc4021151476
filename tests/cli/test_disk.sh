#!/usr/bin/env bash
# A full disk and a read-only run directory in every phase (issue 17). Each phase in
# turn reruns (its marker removed, `transpolmo <phase>`) on a copy of a complete run
# that sits on a small tmpfs: with about half of the largest file it writes left free
# (it fails in the middle of that file), with nothing free, and with the tmpfs
# remounted read-only. Each time: a non-zero exit (no crash, no hang), exactly one
# error line naming a path inside the run directory and the OS error, no marker for
# the phase, no *.tmp left behind, every JSON file of the run still parses, and every
# file byte-identical afterwards, except
#   - an output of the failing phase itself, which may have been replaced by a
#     complete new version before the failure (outputs are written to *.tmp and
#     renamed one by one, README.md), and
#   - activations.h5, which capture and geometry write in place (docs/store.md): its
#     data must still be the complete run's (store_compare).
# Capture's rerun writes only small files beside the store it reopens, so its
# half-full cases are these: it starts a store from nothing (np 1, and np 2: a
# multi-rank run ends too, no rank with more than one line) and stops in the middle
# of the rows; geometry writes /pca into a store that has none; SAE training starts
# over and fails at its first checkpoint; and capture's outputs fit but the run's
# config.yaml, written after them, does not. The two new-store cases then get the
# space back and must resume to the complete run's store. The run directory has a
# long path, as on a cluster's scratch: messages keep the OS error whatever its length.
#
# TP_DISK_PHASES="capture sae" and TP_DISK_CASES=<regex of case names> run a subset.
#
# The mounts are made in a private mount namespace (unshare -m): they vanish with it
# and never reach the host's mount table. Without the right to mount (no root or
# CAP_SYS_ADMIN) the test is skipped (exit 77, SKIP_RETURN_CODE in tests/CMakeLists.txt).
. "$(dirname "$0")/lib.sh"
MPIRUN=${MPIEXEC:-mpiexec}
SRC=${TP_SOURCE_DIR:?}
M=${TP_BUNDLED_MODEL:-$SRC/models/olmo2-tiny}
STORE_COMPARE=${TP_STORE_COMPARE:?}
# test_pipeline.sh's small configuration, with a lighter verify (fewer features,
# prompts and resamples): the verify phase runs four times here.
small=(--model "$M" --set data.corpus="$SRC/data/corpus/heldout.jsonl" --num-samples 24 --set data.seq_len=64
       --set forward.batch_size=4 --set capture.hooks=hook_resid_post --layers 1,2 --set sae.num_epochs=2
       --set sae.batch_size=256 --set sae.chunk_rows=128 --set sae.window_chunks=4 --set sae.hidden_dim=256
       --set sae.k=16 --set sae.aux_k=32 --set sae.eval.num_samples=2 --set sae.checkpoint_every=5
       --set circuits.library.dir="$SRC/configs/circuits"
       --set verify.features.per_sae=1 --set verify.features.contexts=2 --set verify.features.random_contexts=2
       --set verify.heads.prompts=2 --set verify.heads.length=4 --set verify.circuits.pairs=1
       --set verify.bootstrap=10 --set verify.stat_docs=1)
MNT=$TMP/mnt
# The copy's run directory, as long as paths on a cluster's scratch are: messages must
# keep the OS error however long the path they name.
RUN=$MNT/scratch/project-transpolmo/user/runs/olmo2-tiny-issue-17-reliability-disk-faults-small-configuration-np1
mkdir -p "$MNT"
if ! unshare -m bash -c 'mount -t tmpfs -o size=1m tmpfs "$1" && mount -o remount,ro "$1"' _ "$MNT" 2>/dev/null; then
  echo "skipped: cannot mount tmpfs (needs root / CAP_SYS_ADMIN)"
  exit 77
fi
check() {
  local name=$1; shift
  if "$@"; then passes=$((passes + 1)); echo "ok   $name"; else failures=$((failures + 1)); echo "FAIL $name"; fi
}

# The complete run, one phase command at a time. Per phase: the files it writes (new,
# or changed; not its marker nor the run's config.yaml and versions.json, which must
# not change when it fails) and the largest file it writes anew (a new inode;
# activations.h5, written in place, apart).
REF=$TMP/ref
mapfile -t phases < <("$BIN" phases)
snap() { (cd "$REF" 2>/dev/null && find . -type f -printf '%i %s %T@ %p\n' | sort -k4); }
declare -A largest
touch "$TMP/after"
for p in "${phases[@]}"; do
  cp "$TMP/after" "$TMP/before"
  if ! "$BIN" "$p" "${small[@]}" --out "$REF" > "$TMP/ref_$p.log" 2>&1; then
    echo "FAIL the complete run: phase $p"; cat "$TMP/ref_$p.log"; exit 1
  fi
  snap > "$TMP/after"
  [ "$p" = capture ] && cp "$REF/activations.h5" "$TMP/store_of_capture.h5"
  awk 'FILENAME == ARGV[1] { old[$4] = $1 " " $2 " " $3; next }
       old[$4] != $1 " " $2 " " $3 && $4 !~ /^\.\/(config\.yaml|versions\.json|\.phases\/.*\.done)$/ { print $4 }' \
    "$TMP/before" "$TMP/after" > "$TMP/writes_$p"
  largest[$p]=$(awk 'FILENAME == ARGV[1] { ino[$4] = $1; next }
                     ino[$4] != $1 && $4 != "./activations.h5" && $2 > n { n = $2 } END { print n + 0 }' \
                  "$TMP/before" "$TMP/after")
done

# One case in a private mount namespace: a tmpfs with a copy of the complete run, the
# phase's marker removed, `setup` run in the copy (a shell command), then `mode`:
# free=N (a filler leaves N bytes free) or ro. The phase runs with `np` ranks; what
# the checks need is left in the case's folder, outside the tmpfs. With `resume`, the
# filler then goes and the phase runs again. `extra`: more options for the phase.
fault_case() {
  local dir=$1 p=$2 mode=$3 np=$4 setup=$5 resume=$6 extra=$7
  local run=$RUN
  mount -t tmpfs -o size=48m tmpfs "$MNT" || return 1
  mkdir -p "${run%/*}" && cp -a "$REF" "$run" || return 1
  rm -f "$run/.phases/$p.done"
  (cd "$run" && eval "$setup") || return 1
  if [ "${mode%%=*}" = free ]; then
    local avail
    avail=$(df -B1 --output=avail "$MNT" | tail -1)
    fallocate -l $((avail - ${mode#free=})) "$MNT/filler" || return 1
  fi
  (cd "$run" && find . -type f -exec sha256sum {} + | sort -k2) > "$dir/sums_before"
  if [ "$mode" = ro ]; then mount -o remount,ro "$MNT" || return 1; fi
  local cmd=("$BIN" "$p" "${small[@]}" $extra --out "$run")
  [ "$np" -gt 1 ] && cmd=("$MPIRUN" -np "$np" "${cmd[@]}")
  timeout -s KILL 300 "${cmd[@]}" > "$dir/stdout" 2> "$dir/stderr"
  echo $? > "$dir/rc"
  (cd "$run" && find . -type f -exec sha256sum {} + | sort -k2) > "$dir/sums_after"
  (cd "$run" && find . -name '*.tmp') > "$dir/tmp_files"
  python3 - "$run" > "$dir/bad_json" <<'PY'
import json, os, sys
for root, _, files in os.walk(sys.argv[1]):
    for f in files:
        if f.endswith(".json"):
            try:
                json.load(open(os.path.join(root, f)))
            except ValueError:
                print(os.path.join(root, f))
PY
  if [ -e "$run/.phases/$p.done" ]; then touch "$dir/marker"; fi
  if [ -e "$run/activations.h5" ] && ! cmp -s "$REF/activations.h5" "$run/activations.h5"; then
    "$STORE_COMPARE" "$REF/activations.h5" "$run/activations.h5" > "$dir/store_compare" 2>&1
    echo $? >> "$dir/store_compare"
  fi
  if [ "$resume" = resume ]; then
    rm "$MNT/filler"
    timeout -s KILL 300 "${cmd[@]}" > "$dir/resume_log" 2>&1
    echo $? > "$dir/resume_rc"
    if [ -e "$run/.phases/$p.done" ]; then touch "$dir/resume_marker"; fi
    "$STORE_COMPARE" "$REF/activations.h5" "$run/activations.h5" > "$dir/resume_store_compare" 2>&1
    echo $? >> "$dir/resume_store_compare"
  fi
  return 0
}
export -f fault_case
export REF MNT RUN BIN MPIRUN STORE_COMPARE small_s
small_s=$(printf '%q ' "${small[@]}")

# check_case NAME PHASE MODE NP [SETUP [STORE [EXTRA [WORDS]]]]: the case and its checks.
# STORE=partial: the store is the one being written, resumed by the next run (store.h),
# not compared; resume: the same, and a rerun with the space back ends with the
# complete run's store. WORDS: what the error line must hold (default: the run
# directory and the OS error).
check_case() {
  local name=$1 p=$2 mode=$3 np=$4 setup=${5:-} store=${6:-same} extra=${7:-} words=${8:-}
  local dir=$TMP/case_$name
  mkdir -p "$dir"
  if ! unshare -m bash -c 'eval "small=($small_s)"; fault_case "$@"' _ "$dir" "$p" "$mode" "$np" "$setup" "$store" "$extra"; then
    failures=$((failures + 1)); echo "FAIL $name: could not set the case up"; return
  fi
  local rc os
  rc=$(cat "$dir/rc")
  if [ "$mode" = ro ]; then os="Read-only file system"; else os="No space left on device"; fi
  if [ "$np" -eq 1 ]; then
    expect_fail "$name: exit $rc, one line with the path and '$os'" "${words:-$RUN/}|$os" -- \
      bash -c 'cat "$1" >&2; exit "$2"' _ "$dir/stderr" "$rc"
  else
    # Every rank that met the full disk says so in one line; a rank that mpiexec ends
    # meanwhile may say that it was terminated (core/fault.h); no rank says two things.
    local lines
    lines=$(grep 'error:' "$dir/stderr")
    if [ "$rc" -ne 0 ] && printf '%s\n' "$lines" | grep -F "$RUN/" | grep -qF "$os" &&
       [ -z "$(printf '%s\n' "$lines" | grep -o '^\[rank [0-9]*\]' | sort | uniq -d)" ]; then
      passes=$((passes + 1)); echo "ok   $name: exit $rc, a line with the path and '$os', at most one per rank:"
      printf '%s\n' "$lines" | sed 's/^/       /'
    else
      failures=$((failures + 1)); echo "FAIL $name: exit $rc, error lines:"; cat "$dir/stderr"
    fi
  fi
  check "$name: no crash, no hang (exit $rc < 128)" test "$rc" -lt 128
  check "$name: not marked complete" test ! -e "$dir/marker"
  check "$name: no *.tmp left" test ! -s "$dir/tmp_files"
  check "$name: every JSON file parses" test ! -s "$dir/bad_json"
  # What changed: only the phase's own outputs (replaced whole) and the store.
  local changed bad=
  changed=$(diff <(sort -k2 "$dir/sums_before") <(sort -k2 "$dir/sums_after") | awk '/^[<>]/ { print $3 }' | sort -u)
  for f in $changed; do
    if [ "$f" = ./activations.h5 ]; then
      [ "$store" != same ] && continue
      if [ "$(tail -1 "$dir/store_compare")" != 0 ]; then bad="$bad $f (data: $(head -1 "$dir/store_compare"))"; fi
    elif ! grep -qxF "$f" "$TMP/writes_$p" || ! awk -v f="$f" '$2 == f { n++ } END { exit !n }' "$dir/sums_after"; then
      bad="$bad $f"
    fi
  done
  check "$name: earlier results intact${changed:+ (changed: $(echo $changed))}${bad:+; not allowed:$bad}" test -z "$bad"
  if [ "$store" = resume ]; then
    check "$name: with space again, a rerun completes (exit $(cat "$dir/resume_rc"))" \
      test "$(cat "$dir/resume_rc")" = 0 -a -e "$dir/resume_marker"
    check "$name: ... and its store holds the complete run's data ($(head -1 "$dir/resume_store_compare"))" \
      test "$(tail -1 "$dir/resume_store_compare")" = 0
  fi
}

# Cases that fail for a bug in a file others are changing (NAME -> the bug): one that
# fails is reported as "xfail" and not counted; one that passes fails the test, so that
# it leaves this list once its bug is fixed.
declare -A known_bugs=(
)
run_case() {
  if [ -n "${TP_DISK_CASES:-}" ] && ! [[ $1 =~ $TP_DISK_CASES ]]; then return; fi   # a subset, when debugging
  local before=$failures why=${known_bugs[$1]:-}
  if [ -n "$why" ]; then echo "     $1 is a known bug: the FAIL lines of its checks are expected"; fi
  check_case "$@"
  [ -z "$why" ] && return
  if [ "$failures" -gt "$before" ]; then
    failures=$before; echo "xfail $1: known bug: $why"
  else
    failures=$((failures + 1)); echo "FAIL $1 passes now: take it out of known_bugs"
  fi
}

if [ -n "${TP_DISK_PHASES:-}" ]; then read -r -a phases <<< "$TP_DISK_PHASES"; fi   # a subset, when debugging
for p in "${phases[@]}"; do
  half=$((largest[$p] / 2 / 4096 * 4096))
  if [ "$half" -gt 0 ]; then run_case "$p-half-full" "$p" "free=$half" 1; fi
  run_case "$p-no-space" "$p" free=0 1
  run_case "$p-read-only" "$p" ro 1
  case $p in
    capture)
      # Room for its small outputs and its record, not for the run's config.yaml: made
      # about 3.5 pages long by a long title, it has 4 pages free; .phases/capture.config.yaml
      # takes 3 of them for good (its old version had 1), so the run's own no longer fits.
      base=$("$BIN" config show "${small[@]}" --out "$RUN" | wc -c)
      title=$(head -c $((3 * 4096 + 2048 - base - 79)) /dev/zero | tr '\0' x)
      run_case capture-run-config-full capture free=16384 1 '' same "--set document.title=$title" "$RUN/config.yaml"
      half=$(( $(stat -c %s "$REF/activations.h5") / 2 / 4096 * 4096 ))
      run_case capture-new-store-half-full capture "free=$half" 1 'rm activations.h5' resume
      run_case capture-new-store-half-full-np2 capture "free=$half" 2 'rm activations.h5' resume
      run_case capture-new-store-no-space capture free=0 1 'rm activations.h5' partial
      run_case capture-new-store-read-only capture ro 1 'rm activations.h5' partial ;;
    geometry)
      # the store as capture left it: /pca is new, the file grows by it
      half=$(( ($(stat -c %s "$REF/activations.h5") - $(stat -c %s "$TMP/store_of_capture.h5")) / 2 / 4096 * 4096 ))
      run_case geometry-new-pca-half-full geometry "free=$half" 1 "cp '$TMP/store_of_capture.h5' activations.h5" resume ;;
    sae)
      # training from the start: it fails writing its first checkpoint
      half=$(( $(stat -c %s "$REF"/checkpoints/sae/sae_layer_1/checkpoint-*.safetensors) / 2 / 4096 * 4096 ))
      run_case sae-new-training-half-full sae "free=$half" 1 'rm -r checkpoints' ;;
  esac
done
finish
