/* world.h — the MPI world: start-up, rank/size, and the small collectives the
 * phase drivers share. A failure on one rank ends the job through dist_abort
 * (MPI_Abort), never a hang. */
#ifndef TP_DIST_WORLD_H
#define TP_DIST_WORLD_H

#include "core/error.h"

#include <mpi.h>

#include <stddef.h>

tp_status dist_init(int *argc, char ***argv);
void dist_finalize(void);
int dist_rank(void);
int dist_size(void);
/* Ends every rank with exit code `code` (after the caller printed why). */
void dist_abort(int code) __attribute__((noreturn));
/* Rank 0 receives every rank's NUL-terminated string (all[r], malloc'ed; free with
 * dist_free_strings); other ranks get NULL. Collective. */
tp_status dist_gather_strings(const char *mine, char ***all);
void dist_free_strings(char **all);
/* Collective: every rank learns whether any rank failed. A failing rank keeps its
 * own status and message; the others get TP_ERR_MPI "<what>: another rank failed
 * (this is rank N)". Without it a local failure (bad input, allocation) leaves the
 * other ranks waiting in the next collective. */
tp_status dist_agree(MPI_Comm comm, tp_status mine, const char *what);
/* In-place MPI_SUM of n doubles over comm, in chunks that fit MPI's int counts. */
tp_status dist_allreduce_sum_f64(MPI_Comm comm, double *buf, size_t n);

/* Ranks of this job on this node (MPI_COMM_TYPE_SHARED, found by dist_init), this
 * rank included. Local: no communication. */
int dist_local_size(void);
/* This rank's index among them, 0..dist_local_size()-1 (one rank per GPU: its GPU). */
int dist_local_rank(void);

/* MPI library version string (for versions.json). */
const char *dist_library_version(char *buf, size_t n);

#endif
