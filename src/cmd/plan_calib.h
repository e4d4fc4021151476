/* plan_calib.h — the machine's rates for the planner: measured by
 * `transpolmo plan --calibrate` and kept in a JSON file.
 *
 * Where: --calibration FILE, else $TP_CALIBRATION, else
 * $XDG_CACHE_HOME/transpolmo/calibration.json (~/.cache/transpolmo/calibration.json).
 * What it times, each through the project's own function: the backend's linear op at
 * the shapes of a forward (f32 and bf16 weights), the attention op, f64 and f32 GEMM,
 * the SAE training step (two batch sizes: per-row and per-step parts) and encoder at
 * d 256 and 2048, geometry's stages (PCA, the kNN estimators at two row counts,
 * k-means at two iteration counts, silhouette) at d 256 and 2048, the CE evaluation's
 * log-sum-exp and KL rows, an HDF5 write made durable in the run directory and its
 * read back, MPI_Allreduce of 64 MiB (with several ranks; else the file keeps the
 * default), and the start and peak RSS of a process of this binary.
 * Collective: every rank measures (the GEMMs with the threads a rank gets), rank 0
 * writes.
 */
#ifndef TP_PLAN_CALIB_H
#define TP_PLAN_CALIB_H

#include "cmd/plan_model.h"
#include "core/error.h"

#include <stddef.h>

/* The file plan reads and --calibrate writes when none is given. */
tp_status plan_calib_default_path(char *out, size_t n);
/* Measures; scratch files go under dir (created, removed after). */
tp_status plan_calibrate(const char *dir, plan_rates *out);
tp_status plan_calib_save(const char *path, const plan_rates *r);
/* Fills *r from path; a missing file leaves the defaults and *found = 0; a file that
 * is not a calibration is an error naming it. */
tp_status plan_calib_load(const char *path, plan_rates *r, int *found);

#endif
