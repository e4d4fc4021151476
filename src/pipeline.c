#include "pipeline.h"

#include "analysis/capture/capture_phase.h"
#include "analysis/constraints/inspect_phase.h"
#include "analysis/geometry/geometry_phase.h"
#include "analysis/sae/sae_phase.h"
#include "backend/cpu.h"
#include "backend/linear.h"
#include "core/fsutil.h"
#include "core/log.h"
#include "core/progress.h"
#include "dist/world.h"

#include <cblas.h>
#include <hdf5.h>
#include <jansson.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

static const char *const inspect_outputs[] = {"results/architecture.json", NULL};
static const char *const inspect_depends[] = {"model.", "inspect.", NULL};

static const char *const capture_outputs[] = {"activations.h5", "results/capture_summary.json", NULL};
static const char *const capture_depends[] = {"model.", "data.", "capture.", "layers", "forward.batch_size", "forward.gemm", NULL};

static const char *const geometry_outputs[] = {"results/geometric_analysis.json", NULL};
/* The store's content (capture's keys) and the phase's own keys. */
static const char *const geometry_depends[] = {"model.", "data.", "capture.", "layers", "forward.batch_size", "forward.gemm",
                                               "geometry.", NULL};

static const char *const sae_outputs[] = {"results/sae_summary.json", NULL};
static const char *const sae_depends[] = {"model.", "data.", "capture.", "layers", "forward.batch_size", "forward.gemm", "sae.", NULL};

static const tp_phase phases[] = {
    {"inspect", inspect_phase_run, inspect_outputs, inspect_depends},
    {"capture", capture_phase_run, capture_outputs, capture_depends},
    {"geometry", geometry_phase_run, geometry_outputs, geometry_depends},
    {"sae", sae_phase_run, sae_outputs, sae_depends},
};

const tp_phase *pipeline_phases(int *n)
{
    *n = (int)(sizeof phases / sizeof *phases);
    return phases;
}

const tp_phase *pipeline_find(const char *name)
{
    for (size_t i = 0; i < sizeof phases / sizeof *phases; i++)
        if (!strcmp(phases[i].name, name)) return &phases[i];
    return NULL;
}

static void marker_path(char *buf, size_t n, const char *run_dir, const char *phase)
{
    snprintf(buf, n, "%s/.phases/%s.done", run_dir, phase);
}

static void phase_key(const tp_phase *p, const tp_config *cfg, char *buf, size_t n)
{
    snprintf(buf, n, "%016llx", (unsigned long long)tp_config_hash_prefixes(cfg, p->depends));
}

/* Complete = marker present with the same key hash and every output present. */
static int phase_complete(const tp_phase *p, const tp_config *cfg, const char *run_dir)
{
    char path[4200], want[32], got[64] = "";
    marker_path(path, sizeof path, run_dir, p->name);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int ok = fgets(got, sizeof got, f) != NULL;
    fclose(f);
    got[strcspn(got, "\n")] = '\0';
    phase_key(p, cfg, want, sizeof want);
    if (!ok || strcmp(got, want) != 0) return 0;
    for (const char *const *o = p->outputs; *o; o++) {
        fs_join(path, sizeof path, run_dir, *o);
        if (!fs_exists(path)) return 0;
    }
    return 1;
}

tp_status pipeline_run_phase(const tp_phase *p, const tp_config *cfg, const char *run_dir)
{
    double t0 = tp_now();
    tp_log_info("phase %s: start", p->name);
    /* Fault injection for the tests: TP_FAULT_RANK=N fails rank N here, to prove a
     * failure on one rank ends the job instead of hanging it. */
    const char *fault = getenv("TP_FAULT_RANK");
    if (fault && atoi(fault) == dist_rank())
        return tp_err(TP_ERR_INTERNAL, "injected fault (TP_FAULT_RANK=%s) in phase %s", fault, p->name);
    TP_CHECK(p->run(cfg, run_dir));
    if (dist_rank() == 0) {
        char dir[4200], path[4200], key[32], line[64];
        TP_CHECK(fs_mkdir_p(fs_join(dir, sizeof dir, run_dir, ".phases")));
        marker_path(path, sizeof path, run_dir, p->name);
        phase_key(p, cfg, key, sizeof key);
        int n = snprintf(line, sizeof line, "%s\n", key);
        TP_CHECK(fs_write_atomic(path, line, (size_t)n));
    }
    tp_log_info("phase %s: done in %.1f s", p->name, tp_now() - t0);
    return TP_OK;
}

tp_status pipeline_record_run(const tp_config *cfg, const char *run_dir)
{
    if (dist_rank() != 0) return TP_OK;
    char path[4200];
    TP_CHECK(fs_mkdir_p(run_dir));
    FILE *f;
    fs_join(path, sizeof path, run_dir, "config.yaml");
    TP_CHECK(fs_open_tmp(path, &f));
    fprintf(f, "# Effective configuration of this run (defaults < config file < command line).\n");
    tp_status st = tp_config_write_yaml(cfg, f);
    if (st != TP_OK) { fs_abort(f, path); return st; }
    TP_CHECK(fs_commit(f, path));

    char mpi[512], hdf5[64];
    unsigned maj, min, rel;
    H5get_libversion(&maj, &min, &rel);
    snprintf(hdf5, sizeof hdf5, "%u.%u.%u", maj, min, rel);
    json_t *v = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:b}",
        "transpolmo", TP_VERSION, "mpi", dist_library_version(mpi, sizeof mpi), "hdf5", hdf5,
        "openblas", openblas_get_config(), "jansson", JANSSON_VERSION, "libyaml",
        yaml_get_version_string(), "cpu_kernels", cpu_features(),
        "linear_gemm", cpu_linear_supported() ? "transpolmo-avx512" : "openblas", "ranks", dist_size(),
        "blas_threads", cpu_get_threads(),
#ifdef TP_HAVE_CUDA
        "cuda_backend_built", 1
#else
        "cuda_backend_built", 0
#endif
    );
    st = fs_write_json(fs_join(path, sizeof path, run_dir, "versions.json"), v);
    json_decref(v);
    return st;
}

tp_status pipeline_run_all(const tp_config *cfg, const char *run_dir)
{
    TP_CHECK(pipeline_record_run(cfg, run_dir));
    int n;
    const tp_phase *ps = pipeline_phases(&n);
    for (int i = 0; i < n; i++) {
        /* Every rank reads the same files, so they agree on what to skip. */
        if (phase_complete(&ps[i], cfg, run_dir)) {
            tp_log_info("phase %s: complete, skipped", ps[i].name);
            continue;
        }
        TP_CHECK(pipeline_run_phase(&ps[i], cfg, run_dir));
        MPI_Barrier(MPI_COMM_WORLD);
    }
    tp_log_info("run complete: %s", run_dir);
    return TP_OK;
}
