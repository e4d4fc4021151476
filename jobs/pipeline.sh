#!/usr/bin/env bash
# Runs the pipeline one phase per MPI job step, so a failed or killed step can be
# rerun alone: each phase skips itself when its outputs are complete, and capture
# resumes unit by unit.
#   usage: jobs/pipeline.sh [-n RANKS] CONFIG.yaml [extra transpolmo options...]
# Inside a Slurm allocation it uses `srun --mpi=pmix`; elsewhere `mpirun -np RANKS`.
set -euo pipefail
ranks=${TP_RANKS:-2}
if [ "${1:-}" = "-n" ]; then ranks=$2; shift 2; fi
config=${1:?usage: jobs/pipeline.sh [-n RANKS] CONFIG.yaml [options...]}
shift
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${TP_BIN:-$root/build/transpolmo}
if [ -n "${SLURM_JOB_ID:-}" ]; then
  launch=(srun --mpi=pmix)
  # BLAS threads: the CPUs Slurm gave each task.
  export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}
else
  if [ "$ranks" -eq 1 ]; then
    # One rank: let its BLAS threads use every core (Open MPI would bind it to one).
    launch=(mpirun --bind-to none -np 1)
  else
    launch=(mpirun -np "$ranks")
    # One BLAS thread per rank when ranks share the cores.
    export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
  fi
  if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
fi
# The phases in order, as the binary lists them (pipeline.c), so a new phase needs no
# edit here.
phases=$("$bin" phases) || { echo "pipeline.sh: '$bin phases' failed" >&2; exit 1; }
for phase in $phases; do
  echo "== $phase ($(date -u +%FT%TZ))"
  "${launch[@]}" "$bin" "$phase" --config "$config" "$@"
done
