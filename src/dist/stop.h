/* stop.h — a clean early stop on request: SIGUSR1, which Slurm sends a job shortly
 * before its time limit (`#SBATCH --signal=B:USR1@<s>`, forwarded to the ranks by the
 * job script; mpirun and srun forward it too).
 *
 * dist_stop_install() makes SIGUSR1 set a flag and nothing else: a phase with no safe
 * point runs on. A phase with safe points (the SAE after each step, capture at each
 * flush point: places every rank reaches together, with everything before them
 * resumable) asks dist_stop_agreed() there; it is collective and true on every rank
 * when any rank was asked, so they stop at the same point. The phase then makes its
 * work durable (the SAE writes a checkpoint) and returns dist_stop_error(), status
 * TP_ERR_STOPPED: the phase is not marked complete, main ends every rank normally
 * with exit code TP_EXIT_STOPPED, and a rerun (a requeued job) resumes from there.
 */
#ifndef TP_DIST_STOP_H
#define TP_DIST_STOP_H

#include "core/error.h"

#include <mpi.h>
#include <stdbool.h>

/* The exit code of a run stopped at a safe point (EX_TEMPFAIL: try again). The job
 * scripts of `transpolmo submit` requeue a job that ends with it. */
#define TP_EXIT_STOPPED 75

/* SIGUSR1 handler: main installs it first thing and again after MPI_Init, so that it
 * replaces any installed there. */
void dist_stop_install(void);
/* Has this rank been asked to stop? (Local; no communication.) */
bool dist_stop_requested(void);
/* Collective over comm: *stop = some rank has been asked to stop. */
tp_status dist_stop_agreed(MPI_Comm comm, bool *stop);
/* TP_ERR_STOPPED with the message "<what> stopped on SIGUSR1 <where>: rerun the same
 * command to resume". */
tp_status dist_stop_error(const char *what, const char *where_fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
