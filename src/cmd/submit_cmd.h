/* submit_cmd.h — `transpolmo submit [CONFIG.yaml]`: the pipeline as a chain of jobs,
 * one per phase (docs/clusters.md).
 *
 * Writes into <run>/jobs/ (run_layout.h):
 *   config.yaml          the effective configuration, which every job runs with (a
 *                        config file edited after submitting changes nothing queued)
 *   <k>-<phase>.sbatch   one Slurm script per phase of pipeline_phases(), in that
 *                        order: `srun --mpi=<mpi> transpolmo <phase> --skip-complete`,
 *                        with --requeue and --signal=B:USR1@<grace>; a phase stopped
 *                        at a safe point on the signal (exit 75, dist/stop.h) requeues
 *                        its job, which resumes it
 *   chain.sh             the same chain without Slurm: each phase with mpirun, in
 *                        order, stopping at the first failure
 * and submits the scripts of the phases not complete for this configuration, each
 * with --dependency=afterok:<the job before>, printing "<phase> <job id>" per job and
 * recording them in jobs/submitted.tsv. Phases run one after another, not as their
 * `needs` would allow, because they share files (geometry adds the PCA to the
 * activation store that the SAE reads). --dry-run prints the scripts and the sbatch
 * lines and writes nothing; --local writes the files and submits nothing.
 *
 * Every rank may call it; rank 0 does the work and the others wait for its verdict.
 * sbatch sees the environment the program started with (submit_cmd_keep_environ),
 * not the one MPI_Init added to it, which a job's own ranks must not inherit.
 */
#ifndef TP_SUBMIT_CMD_H
#define TP_SUBMIT_CMD_H

#include "cli.h"

/* Call before MPI_Init: keeps a copy of the environment for sbatch. */
void submit_cmd_keep_environ(char **envp);

tp_status submit_cmd_run(tp_cli *cli);

#endif
