#!/usr/bin/env bash
# The cluster path against a real Slurm (docs/clusters.md): a one-node cluster on this
# machine (tools/slurm-local.sh, its state under this test's folder, stopped at the
# end), the small configuration of test_pipeline.sh with 2 tasks.
#   - `submit --dry-run`: a script per phase of `transpolmo phases`, chained sbatch
#     lines, srun --mpi=pmix, --requeue, --signal=B:USR1@<grace>; nothing written.
#   - a chain (`--grace 30`) whose SAE job waits at step 3 (rank 0) and is then given
#     a real time limit (`scontrol update TimeLimit=`, its run time so far + 1 minute;
#     the other phases have none, so a slow machine cannot make them hit it) until
#     Slurm itself sends the warning before the limit (SIGUSR1, 30 s or less before
#     the end: slurmctld checks the limits every 30 s): the SAE checkpoints, exits 75,
#     the job requeues itself and its next run resumes; no job is killed by the limit.
#   - a chain whose capture job is cancelled half-way (`scancel`, rank 0 waiting after
#     its second unit), then requeued (`scontrol requeue`, and the next job's
#     dependency set again: Slurm marks it never satisfied when a job it waits for is
#     cancelled): capture resumes from its complete units.
#   Both end with the results of a plain `mpirun -np 2 transpolmo run` (JSON under
#   results/ and docs/, timings aside) and the same activation store: nothing lost or
#   duplicated.
#   - the watchdog of a phase without safe points (geometry's script, outside Slurm,
#     with stand-ins for srun and scontrol): still running 3/4 of the grace after
#     SIGUSR1, its job is requeued.
#   - the local chain (jobs/chain.sh): skips complete phases, reruns a missing one, and
#     stops at the first phase that fails.
# Exit 77 (skipped) when Slurm is not installed or does not start here.
. "$(dirname "$0")/lib.sh"
MPIRUN=${MPIEXEC:-mpiexec}
SRC=${TP_SOURCE_DIR:?}
M=${TP_BUNDLED_MODEL:-$SRC/models/olmo2-tiny}
PY=/usr/bin/python3
STORE_COMPARE=${TP_STORE_COMPARE:?}
small=(--model "$M" --set data.corpus="$SRC/data/corpus/heldout.jsonl" --num-samples 24 --set data.seq_len=64
       --set forward.batch_size=4 --set capture.hooks=hook_resid_post --layers 1,2 --set sae.num_epochs=2
       --set sae.batch_size=256 --set sae.chunk_rows=128 --set sae.window_chunks=4 --set sae.hidden_dim=256
       --set sae.k=16 --set sae.aux_k=32 --set sae.eval.num_samples=2 --set sae.checkpoint_every=5
       --set circuits.library.dir="$SRC/configs/circuits")
check() {
  local name=$1; shift
  if "$@"; then passes=$((passes + 1)); echo "ok   $name"; else failures=$((failures + 1)); echo "FAIL $name"; fi
}

for c in slurmctld slurmd munged sbatch srun scontrol; do
  if ! command -v "$c" > /dev/null; then
    echo "SKIP: $c not found (Slurm is not installed; tools/install-deps.sh installs slurm-wlm and munge)"
    exit 77
  fi
done
export TP_SLURM_DIR=$TMP/slurm
# A port of its own, so that a cluster the user started (6817) is left alone.
export TP_SLURM_PORT=$((20000 + ($$ % 5000) * 2))
trap '"$SRC/tools/slurm-local.sh" stop > /dev/null 2>&1; rm -rf "$TMP"' EXIT
# ctest's timeout kills this script with SIGKILL: the EXIT trap never runs, and the
# daemons (they detach) would outlive it. A sentinel in a session of its own, holding
# none of ctest's pipes, stops them and removes $TMP once this script is gone.
setsid bash -c 'while kill -0 "$1" 2> /dev/null; do sleep 5; done; "$2/tools/slurm-local.sh" stop; rm -rf "$3"' \
  sentinel $$ "$SRC" "$TMP" < /dev/null > /dev/null 2>&1 &
if ! "$SRC/tools/slurm-local.sh" start > "$TMP/slurm-start.log" 2>&1; then
  echo "SKIP: the local Slurm does not start here:"; cat "$TMP/slurm-start.log"
  exit 77
fi
. "$TP_SLURM_DIR/env"
srun --mpi=list 2>&1 | grep -q pmix || { echo "SKIP: srun has no --mpi=pmix here ($(srun --mpi=list 2>&1 | tr '\n' ' '))"; exit 77; }
t0=$SECONDS

mapfile -t phases < <("$BIN" phases)

# --- dry run --------------------------------------------------------------------------
expect_ok "submit --dry-run" -- "$BIN" submit "${small[@]}" --out "$TMP/dry" --ntasks-per-node 2 --time 30 --dry-run
"$BIN" submit "${small[@]}" --out "$TMP/dry" --ntasks-per-node 2 --time 30 --dry-run > "$TMP/dry.txt" 2> /dev/null
check "--dry-run writes nothing" test ! -e "$TMP/dry"
check "--dry-run: one script per phase, chained sbatch lines, srun --mpi=pmix, --requeue, --signal" \
  $PY - "$TMP/dry.txt" "$TMP/dry" "${phases[@]}" <<'PY'
import re, sys
text, run, phases = open(sys.argv[1]).read(), sys.argv[2], sys.argv[3:]
for k, p in enumerate(phases, 1):
    path = f"{run}/jobs/{k}-{p}.sbatch"
    assert f"#### {path}\n" in text, path
    script = text.split(f"#### {path}\n")[1].split("####")[0]
    for want in ("#SBATCH --requeue", "#SBATCH --signal=B:USR1@120", "#SBATCH --ntasks-per-node=2",
                 "#SBATCH --time=30", f"phase={p}\n", 'srun --mpi=pmix "$bin" "$phase" --skip-complete'):
        assert want in script, (p, want)
    dep = "" if k == 1 else f"--dependency=afterok:$job_{phases[k - 2]} "
    assert f"job_{p}=$(sbatch --parsable {dep}{path})" in text, p
assert f"#### {run}/jobs/chain.sh\n" in text
PY
"$BIN" submit "${small[@]}" --out "$TMP/dry" --mpi pmi2 --dry-run 2> /dev/null | grep -q 'srun --mpi=pmi2 ' 
check "--mpi pmi2 in the scripts" test $? -eq 0
expect_fail "--time shorter than twice the warning" "--time 3|--grace 120" rc=2 -- \
  "$BIN" submit "${small[@]}" --out "$TMP/dry" --time 3 --dry-run
expect_fail "--nodes 0" "--nodes '0'" rc=2 -- "$BIN" submit "${small[@]}" --out "$TMP/dry" --nodes 0 --dry-run
expect_fail "--partition with a quote" "--partition" rc=2 -- "$BIN" submit "${small[@]}" --out "$TMP/dry" --partition "a'b"

# --- the reference: one plain mpirun ---------------------------------------------------
expect_ok "reference: mpirun -np 2 transpolmo run" -- \
  timeout -s KILL 400 "$MPIRUN" -np 2 "$BIN" run "${small[@]}" --out "$TMP/ref"
echo "     (reference run: $((SECONDS - t0)) s since the start)"

# submit_chain OUT [ENV...]: submits (with the options in ${extra[@]}), leaves
# "<phase> <job id>" lines in OUT.ids
extra=()
submit_chain() {
  local out=$1; shift
  env "$@" "$BIN" submit "${small[@]}" --out "$out" --ntasks-per-node 2 "${extra[@]}" > "$out.ids" 2> "$out.submit.log"
}
job_of() { awk -v p="$2" '$1 == p { print $2 }' "$1.ids"; }
# wait_log FILE-GLOB TEXT [SECONDS]: until a job log says TEXT (90 s at most by default)
wait_log() {
  local i
  for i in $(seq 1 $((${3:-90} * 2))); do
    grep -qs "$2" $1 && return 0
    sleep 0.5
  done
  echo "     timed out waiting for '$2' in $1"; return 1
}
# wait_chain OUT: until none of its jobs is pending or running (600 s at most)
wait_chain() {
  local ids i
  ids=$(awk '{ print $2 }' "$1.ids" | paste -sd,)
  for i in $(seq 1 600); do
    [ -z "$(squeue -h -j "$ids" 2> /dev/null)" ] && return 0
    sleep 1
  done
  echo "     timed out waiting for jobs $ids:"; squeue; return 1
}
all_completed() {
  local p j st ok=0
  for p in "${phases[@]}"; do
    j=$(job_of "$1" "$p")
    st=$(scontrol show job "$j" | grep -o 'JobState=[A-Z_]*')
    [ "$st" = JobState=COMPLETED ] || { echo "     $p (job $j): $st"; ok=1; }
  done
  return $ok
}
same_as_reference() {
  $PY "$SRC/tests/cli/same_results.py" "$TMP/ref" "$1" && "$STORE_COMPARE" "$TMP/ref/activations.h5" "$1/activations.h5"
}

# --- chain 1: a real time limit; the SAE checkpoints on Slurm's warning, requeues --
c1=$TMP/c1
extra=(--grace 30)
submit_chain "$c1" TP_FAULT=sae.step@3/pause
extra=()
check "submit: a job per phase, in order ($(awk '{print $1}' "$c1.ids" | paste -sd' '))" \
  test "$(awk '{print $1}' "$c1.ids" | paste -sd' ')" = "${phases[*]}"
check "jobs/submitted.tsv lists them" test "$(cut -f2 "$c1/jobs/submitted.tsv" 2> /dev/null | paste -sd' ')" = "$(awk '{print $2}' "$c1.ids" | paste -sd' ')"
sae=$(job_of "$c1" sae)
check "the scripts carry the warning" grep -q "^#SBATCH --signal=B:USR1@30$" "$c1/jobs/4-sae.sbatch"
check "the SAE job reaches step 3 (rank 0 waits there)" wait_log "$c1/jobs/logs/4-sae-*.out" "waits for a signal" 300
# The limit is set now, so that the warning cannot come before step 3: the job's run
# time so far, rounded up to whole minutes, + 1 minute (at least 60 s left, so the
# warning, 30 s before the end, comes 30-90 s from now).
limit_now() {
  local rt m s
  rt=$(scontrol show job "$sae" | grep -o 'RunTime=[0-9:-]*' | cut -d= -f2)
  IFS=: read -r h m s <<< "$(echo "$rt" | awk -F: '{ if (NF == 2) print "0:" $0; else print $0 }')"
  echo $(( (10#$h * 3600 + 10#$m * 60 + 10#$s + 59) / 60 + 1 ))
}
lim=$(limit_now)
check "the SAE job gets a time limit of $lim minute(s), its run time so far + 1" \
  bash -c "scontrol update jobid=$sae TimeLimit=$lim && scontrol show job $sae | grep -q 'TimeLimit=$(printf '00:%02d:00' "$lim")'"
check "Slurm sends the warning before the time limit (SIGUSR1)" wait_log "$c1/jobs/logs/4-sae-*.out" "SIGUSR1: sae stops at its next safe point" 150
check "chain 1 ends" wait_chain "$c1"
check "chain 1: every job completed" all_completed "$c1"
sae_log=$(cat "$c1"/jobs/logs/4-sae-*.out 2> /dev/null)
check "SIGUSR1: the SAE stops at the next step with a checkpoint" grep -q "sae stopped on SIGUSR1 at step 4 of .* (checkpoint written)" <<< "$sae_log"
check "SIGUSR1: the job requeues itself" grep -q "stopped at a safe point: requeued" <<< "$sae_log"
check "SIGUSR1: its next run (restart 1) resumes at step 4" bash -c "grep -q \"phase sae, job $sae, restart 1\" <<< \"\$1\" && grep -q \"resuming at step 4 of\" <<< \"\$1\"" _ "$sae_log"
check "no job of chain 1 hit the time limit" bash -c "! grep -qs 'DUE TO TIME LIMIT' $c1/jobs/logs/*"
check "chain 1: the results of a plain mpirun run" same_as_reference "$c1"
echo "     (chain 1 done: $((SECONDS - t0)) s since the start)"

# --- chain 2: capture cancelled half-way, requeued ------------------------------------
c2=$TMP/c2
submit_chain "$c2" TP_FAULT=capture.unit@2/pause
cap=$(job_of "$c2" capture) geo=$(job_of "$c2" geometry)
check "the capture job writes its second unit (rank 0 waits there)" wait_log "$c2/jobs/logs/2-capture-*.out" "waits for a signal"
scancel "$cap"
cancelled() { scontrol show job "$cap" | grep -q 'JobState=CANCELLED'; }
for i in $(seq 1 60); do cancelled && break; sleep 0.5; done
check "scancel: the capture job is cancelled" cancelled
check "scancel: its ranks say they were terminated in capture" grep -q "terminated by SIGTERM in phase capture" "$c2"/jobs/logs/2-capture-*.out
check "scancel: capture is not marked complete" test ! -e "$c2/.phases/capture.done"
scontrol requeue "$cap" && scontrol update jobid="$geo" dependency=afterok:"$cap"
check "scontrol requeue: the capture job is pending again" bash -c "scontrol show job $cap | grep -Eq 'JobState=(PENDING|RUNNING|COMPLETED)'"
check "chain 2 ends" wait_chain "$c2"
check "chain 2: every job completed" all_completed "$c2"
check "requeued capture resumes from its complete units" grep -Eq "resuming .*: [1-9][0-9]* of [0-9]+ units already complete" "$c2"/jobs/logs/2-capture-*.out
check "chain 2: the results and the store of a plain mpirun run" same_as_reference "$c2"
echo "     (chain 2 done: $((SECONDS - t0)) s since the start)"

# --- the watchdog: a phase without safe points still running after the warning --------
# Chain 1's geometry script, run outside Slurm with stand-ins for srun (a step that
# ignores SIGUSR1 and runs on) and scontrol (records what it is asked and ends the
# step, as Slurm's requeue would), its grace shortened to 4 s in a copy.
fake=$TMP/fakebin; mkdir -p "$fake"
printf '#!/bin/bash\ntrap "" USR1\nsleep 60 &\necho $! > "%s"\nwait\n' "$TMP/step.pid" > "$fake/srun"
printf '#!/bin/bash\necho "$*" >> "%s"\nkill "$(cat "%s")"\n' "$TMP/scontrol.log" "$TMP/step.pid" > "$fake/scontrol"
chmod +x "$fake/srun" "$fake/scontrol"
sed 's/^grace=30$/grace=4/' "$c1/jobs/3-geometry.sbatch" > "$TMP/geo.sh"
PATH=$fake:$PATH SLURM_JOB_ID=4242 bash "$TMP/geo.sh" > "$TMP/geo.log" 2>&1 &
geo_pid=$!
sleep 1; kill -USR1 $geo_pid
wait $geo_pid
check "watchdog: a step still running 3/4 of the grace after SIGUSR1 gets its job requeued" \
  bash -c "grep -q 'geometry still running: requeued' '$TMP/geo.log' && grep -qx 'requeue 4242' '$TMP/scontrol.log'"

# --- nothing left to submit; the local chain ----------------------------------------
"$BIN" submit "${small[@]}" --out "$c1" --ntasks-per-node 2 > "$TMP/again.ids" 2> "$TMP/again.log"
check "submit again on a complete run: nothing submitted" bash -c "[ ! -s '$TMP/again.ids' ] && grep -q 'nothing to submit' '$TMP/again.log'"
expect_ok "submit --local" -- "$BIN" submit "${small[@]}" --out "$c1" --ntasks-per-node 2 --local
check "--local writes jobs/chain.sh" test -x "$c1/jobs/chain.sh"
rm -f "$c1/.phases/document.done"
"$c1/jobs/chain.sh" -n 2 > "$TMP/chain.log" 2>&1
check "chain.sh: exit 0" test $? -eq 0
check "chain.sh: complete phases skipped, document run again" bash -c "[ \$(grep -c 'complete, skipped' '$TMP/chain.log') -eq $((${#phases[@]} - 1)) ] && grep -q 'phase document: done' '$TMP/chain.log'"
check "chain.sh: the results of a plain mpirun run" same_as_reference "$c1"
# A phase that fails stops the chain (a stand-in binary records what it ran).
cat > "$TMP/fake" <<EOF
#!/bin/bash
echo "\$1" >> "$TMP/ran"
[ "\$1" != geometry ]
EOF
chmod +x "$TMP/fake"
TP_BIN=$TMP/fake "$c1/jobs/chain.sh" -n 1 > "$TMP/fake.log" 2>&1
rc=$?
check "chain.sh stops at the first failure (exit $rc; ran: $(paste -sd' ' "$TMP/ran"))" \
  bash -c "[ $rc -ne 0 ] && [ \"\$(paste -sd' ' '$TMP/ran')\" = 'inspect capture geometry' ] && grep -q 'geometry failed' '$TMP/fake.log'"

echo "     ($((SECONDS - t0)) s in all)"
finish
