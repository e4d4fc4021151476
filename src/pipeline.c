/* pipeline.c — the list of phases and everything derived from it (pipeline.h). */
#include "pipeline.h"

#include "analysis/capture/capture_phase.h"
#include "analysis/circuits/circuits_phase.h"
#include "analysis/geometry/geometry_phase.h"
#include "analysis/inspect/inspect_phase.h"
#include "analysis/sae/sae_phase.h"
#include "analysis/verify/verify_phase.h"
#include "backend/backend.h"
#include "core/fault.h"
#include "core/fsutil.h"
#include "core/log.h"
#include "core/progress.h"
#include "dist/world.h"
#include "report/document_phase.h"
#include "run_layout.h"
#include "settings.h"

#include <errno.h>
#include <hdf5.h>
#include <jansson.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

/* The phases, in the order `run` runs them. One line per phase. */
static const tp_phase *const phases[] = {
    &inspect_phase,
    &capture_phase,
    &geometry_phase,
    &sae_phase,
    &circuits_phase,
    &verify_phase,
    &document_phase,   /* last: it documents everything above */
};

#define NPHASES (sizeof phases / sizeof *phases)

const tp_phase *const *pipeline_phases(int *n)
{
    *n = (int)NPHASES;
    return phases;
}

const tp_phase *pipeline_find(const char *name)
{
    for (size_t i = 0; i < NPHASES; i++)
        if (!strcmp(phases[i]->name, name)) return phases[i];
    return NULL;
}

/* A point every phase has, or one of p's own. */
static bool has_fault_point(const tp_phase *p, const char *point)
{
    if (!strcmp(point, "start") || !strcmp(point, "outputs")) return true;
    for (const char *const *f = p->faults; f && *f; f++)
        if (!strcmp(*f, point)) return true;
    return false;
}

tp_status pipeline_check_fault(void)
{
    TP_CHECK(tp_fault_check_env());
    const tp_fault_spec *f = tp_fault_env();
    if (!f) return TP_OK;
    const tp_phase *p = pipeline_find(f->phase);
    if (!p) return tp_err(TP_ERR_CONFIG, "TP_FAULT=%s: no phase '%s' (transpolmo phases lists them)", getenv("TP_FAULT"),
                          f->phase);
    if (has_fault_point(p, f->point)) return TP_OK;
    char list[256] = "start, outputs";
    for (const char *const *q = p->faults; q && *q; q++)
        snprintf(list + strlen(list), sizeof list - strlen(list), ", %s", *q);
    return tp_err(TP_ERR_CONFIG, "TP_FAULT=%s: phase %s has no point '%s' (%s)", getenv("TP_FAULT"), p->name, f->point,
                  list);
}

/* The configuration schema: shared sections, then each phase's own, then log. */
const tp_cfg_section *const *tp_config_app_schema(size_t *n)
{
    static const tp_cfg_section *all[64];
    static size_t count;
    if (!count) {
        size_t nh, nt;
        const tp_cfg_section *const *head = settings_sections_head(&nh), *const *tail = settings_sections_tail(&nt);
        for (size_t i = 0; i < nh; i++) all[count++] = head[i];
        for (size_t i = 0; i < NPHASES; i++)
            if (phases[i]->config) all[count++] = phases[i]->config;
        for (size_t i = 0; i < nt; i++) all[count++] = tail[i];
    }
    *n = count;
    return all;
}

static void phase_key(const tp_phase *p, const tp_config *cfg, char *buf, size_t n)
{
    snprintf(buf, n, "%016llx", (unsigned long long)phase_hash(p, cfg));
}

/* Complete = marker present with the same key hash and every output present. */
bool pipeline_phase_complete(const tp_phase *p, const tp_config *cfg, const char *run_dir)
{
    char path[TP_PATH_MAX], want[32], got[64] = "";
    if (run_marker_path(path, sizeof path, run_dir, p->name) != TP_OK) return false;
    FILE *f = fopen(path, "r");
    if (!f) return false;
    int ok = fgets(got, sizeof got, f) != NULL;
    fclose(f);
    got[strcspn(got, "\n")] = '\0';
    phase_key(p, cfg, want, sizeof want);
    if (!ok || strcmp(got, want) != 0) return false;
    for (const char *const *o = p->outputs; *o; o++)
        if (run_path(path, sizeof path, run_dir, *o) != TP_OK || !fs_exists(path)) return false;
    return true;
}

/* Rank 0: .phases/<name>.done holding the resume hash. */
static tp_status mark_complete(const tp_phase *p, const tp_config *cfg, const char *run_dir)
{
    char path[TP_PATH_MAX], key[32], line[64];
    TP_CHECK(run_marker_path(path, sizeof path, run_dir, p->name));
    TP_CHECK(fs_mkdir_parent(path));
    phase_key(p, cfg, key, sizeof key);
    int n = snprintf(line, sizeof line, "%s\n", key);
    return fs_write_atomic(path, line, (size_t)n);
}

static tp_status write_config_yaml(const tp_config *cfg, const char *path)
{
    FILE *f;
    TP_CHECK(fs_open_tmp(path, &f));
    fprintf(f, "# Effective configuration of this run (defaults < config file < command line).\n");
    tp_status st = tp_config_write_yaml(cfg, f);
    if (st != TP_OK) {
        tp_err_prefix("%s", path);
        fs_abort(f, path);
        return st;
    }
    return fs_commit(f, path);
}

static tp_status write_versions(const char *path)
{
    char mpi[512], hdf5[64];
    tp_backend_info ci, di;
    be_info(backend_cpu(), &ci);
    be_info(backend_default(), &di);
    unsigned maj, min, rel;
    H5get_libversion(&maj, &min, &rel);
    snprintf(hdf5, sizeof hdf5, "%u.%u.%u", maj, min, rel);
    json_t *v = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:b}",
        "transpolmo", TP_VERSION, "mpi", dist_library_version(mpi, sizeof mpi), "hdf5", hdf5,
        "openblas", ci.blas ? ci.blas : "", "jansson", JANSSON_VERSION, "libyaml",
        yaml_get_version_string(), "cpu_kernels", ci.kernels, "linear_gemm", ci.linear_gemm,
        "backend", di.name, "device", di.device ? di.device : "", "ranks", dist_size(), "ranks_on_node",
        dist_local_size(), "blas_threads", ci.threads,
#ifdef TP_HAVE_CUDA
        "cuda_backend_built", 1
#else
        "cuda_backend_built", 0
#endif
    );
    tp_status st = fs_write_json(path, v);
    json_decref(v);
    return st;
}

tp_status pipeline_record_run(const tp_config *cfg, const char *run_dir)
{
    if (dist_rank() != 0) return TP_OK;
    char path[TP_PATH_MAX];
    TP_CHECK(fs_mkdir_p(run_dir));
    TP_CHECK(run_path(path, sizeof path, run_dir, RUN_CONFIG_YAML));
    TP_CHECK(write_config_yaml(cfg, path));
    TP_CHECK(run_path(path, sizeof path, run_dir, RUN_VERSIONS_JSON));
    return write_versions(path);
}

/* Rank 0, once the phase has written its outputs: what it ran with, the run's own
 * config.yaml and versions.json, then the marker (the commit point: a phase is
 * complete only with its record beside it, and nothing written after it can fail). */
static tp_status record_phase(const tp_phase *p, const tp_config *cfg, const char *run_dir)
{
    char path[TP_PATH_MAX];
    TP_CHECK(run_phase_file(path, sizeof path, run_dir, p->name, ".config.yaml"));
    TP_CHECK(fs_mkdir_parent(path));
    TP_CHECK(write_config_yaml(cfg, path));
    TP_CHECK(run_phase_file(path, sizeof path, run_dir, p->name, ".versions.json"));
    TP_CHECK(write_versions(path));
    TP_CHECK(pipeline_record_run(cfg, run_dir));
    return mark_complete(p, cfg, run_dir);
}

/* Rank 0, before a phase runs: its marker goes first, so that a phase whose outputs
 * are being rewritten is never taken for complete (a run that fails half-way and is
 * then rerun with the configuration the old marker names would find it). */
static char g_marker[TP_PATH_MAX];

static tp_status unmark(void *arg)
{
    (void)arg;
    if (unlink(g_marker) != 0 && errno != ENOENT)
        return tp_err(TP_ERR_IO, "cannot remove '%s': %s", g_marker, strerror(errno));
    return TP_OK;
}

/* Rank 0: "phase <name>: <what it found>". */
static void log_headline(const tp_phase *p, const char *run_dir)
{
    char line[512] = "";
    if (dist_rank() == 0 && p->headline) p->headline(run_dir, line, sizeof line);
    if (line[0]) tp_log_info("phase %s: %s", p->name, line);
}

/* The end of `run`: what was found, and the files to open. */
static void log_summary(const char *run_dir)
{
    if (dist_rank() != 0) return;
    tp_log_info("== summary of %s", run_dir);
    for (size_t i = 0; i < NPHASES; i++) {
        char line[512] = "";
        if (phases[i]->headline) phases[i]->headline(run_dir, line, sizeof line);
        if (!line[0]) continue;
        tp_log_info("  %-9s %s", phases[i]->name, line);
        for (const char *const *o = phases[i]->outputs; *o; o++) tp_log_info("  %-9s   %s/%s", "", run_dir, *o);
    }
}

tp_status pipeline_run_phase(const tp_phase *p, const tp_config *cfg, const char *run_dir)
{
    double t0 = tp_now();
    tp_log_info("phase %s: start", p->name);
    tp_fault_set_phase(p->name);
    TP_CHECK(tp_fault(p->name, "start"));
    /* rank 0: the marker goes at the phase's first write (unmark) */
    if (dist_rank() == 0) {
        TP_CHECK(run_marker_path(g_marker, sizeof g_marker, run_dir, p->name));
        fs_on_first_write(unmark, NULL);
    }
    tp_status st = p->run(cfg, run_dir);
    fs_on_first_write(NULL, NULL);
    TP_CHECK(st);
    /* The outputs are written, the marker not yet (the resume tests: a run stopped
     * here is rerun and must end with the documents of an uninterrupted one). */
    TP_CHECK(tp_fault(p->name, "outputs"));
    /* A phase that wrote outputs records what it ran with (a refused command
     * changes neither the run's config.yaml nor its versions.json). */
    if (dist_rank() == 0) TP_CHECK(record_phase(p, cfg, run_dir));
    tp_fault_set_phase(NULL);
    tp_log_info("phase %s: done in %.1f s", p->name, tp_now() - t0);
    log_headline(p, run_dir);
    return TP_OK;
}

tp_status pipeline_run_all(const tp_config *cfg, const char *run_dir)
{
    for (size_t i = 0; i < NPHASES; i++) {
        if (pipeline_phase_complete(phases[i], cfg, run_dir)) {
            tp_log_info("phase %s: complete, skipped", phases[i]->name);
            log_headline(phases[i], run_dir);
            continue;
        }
        TP_CHECK(pipeline_run_phase(phases[i], cfg, run_dir));
        MPI_Barrier(MPI_COMM_WORLD);
    }
    TP_CHECK(pipeline_record_run(cfg, run_dir));
    tp_log_info("run complete: %s", run_dir);
    log_summary(run_dir);
    return TP_OK;
}

static json_t *string_list(const char *const *items)
{
    json_t *a = json_array();
    for (const char *const *s = items; s && *s; s++) json_array_append_new(a, json_string(*s));
    return a;
}

tp_status pipeline_print_phases(FILE *f, bool json)
{
    if (!json) {
        for (size_t i = 0; i < NPHASES; i++) fprintf(f, "%s\n", phases[i]->name);
        return TP_OK;
    }
    json_t *all = json_array();
    for (size_t i = 0; i < NPHASES; i++) {
        const tp_phase *p = phases[i];
        json_t *needs = json_array();
        for (const tp_phase *const *n = p->needs; n && *n; n++) json_array_append_new(needs, json_string((*n)->name));
        json_t *faults = json_pack("[s]", "start");
        for (const char *const *q = p->faults; q && *q; q++) json_array_append_new(faults, json_string(*q));
        json_array_append_new(faults, json_string("outputs"));
        json_array_append_new(all, json_pack("{s:s, s:s, s:o, s:o, s:o, s:o, s:o}", "name", p->name, "help", p->help,
            "outputs", string_list(p->outputs), "needs", needs, "config_section",
            p->config ? json_string(p->config->name) : json_null(), "reads", string_list(p->reads), "faults", faults));
    }
    char *s = json_dumps(all, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(all);
    if (!s) return tp_err(TP_ERR_NOMEM, "phases: cannot serialise JSON");
    int bad = fprintf(f, "%s\n", s) < 0;
    free(s);
    return bad ? tp_err(TP_ERR_IO, "phases: cannot write to standard output") : TP_OK;
}
