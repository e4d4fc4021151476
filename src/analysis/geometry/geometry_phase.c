#include "analysis/geometry/geometry_phase.h"
#include "analysis/store_inputs.h"

#include "analysis/capture/capture_phase.h"
#include "analysis/hook_select.h"
#include "analysis/geometry/geometry_type.h"
#include "analysis/geometry/intrinsic_dim.h"
#include "analysis/geometry/kmeans.h"
#include "analysis/geometry/knn.h"
#include "analysis/geometry/local_geometry.h"
#include "analysis/geometry/norm_stats.h"
#include "analysis/geometry/pca.h"
#include "core/fault.h"
#include "core/fsutil.h"
#include "core/log.h"
#include "core/progress.h"
#include "dist/mpi_check.h"
#include "dist/world.h"
#include "io/store.h"
#include "io/store_results.h"
#include "model/model_io.h"
#include "model/tokenizer.h"
#include "run_layout.h"
#include "settings.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define READ_BLOCK 4096   /* rows per read of a capture point */

typedef struct {
    char name[STORE_NAME_MAX];
    int act, layer;
    int64_t d;
    /* rank 0: the results */
    json_t *j;
    store_pca pca;
    double *mean, *eig, *ratio, *comp;
    int64_t kc, top;        /* clusters, nearest rows kept per cluster */
    int64_t *near_row;      /* [kc, top] store rows, -1 = none */
    double *near_dist;      /* [kc, top] Euclidean distance to the centre */
} hook_job;

typedef struct {
    const geometry_settings *gs;
    const char *model_dir;    /* for the tokenizer of the cluster contexts */
    MPI_Comm comm;
    int rank, size;
    tp_store *s;
    char path[TP_PATH_MAX];
    int64_t N, a, b;          /* all rows; this rank's store rows [a, b) */
    uint8_t *mask;            /* [b − a] */
    uint8_t *keep;            /* [b − a] 1 = held in memory */
    int64_t n_unmasked, n_keep_local, n_keep;
    int64_t *keep_rows;       /* [n_keep_local] store rows held */
} geo_ctx;

/* Rows of this rank, the mask, and which unmasked rows are held in memory. */
static tp_status select_rows(geo_ctx *g)
{
    g->N = store_rows(g->s);
    g->a = g->N * g->rank / g->size, g->b = g->N * (g->rank + 1) / g->size;
    int64_t nl = g->b - g->a;
    g->mask = tp_malloc((size_t)(nl ? nl : 1));
    g->keep = tp_calloc((size_t)(nl ? nl : 1), 1);
    tp_status st = g->mask && g->keep ? TP_OK : TP_ERR_NOMEM;
    TP_CHECK(dist_agree(g->comm, st, "geometry"));
    TP_CHECK(store_read_u8(g->s, "mask", nl ? g->a : 0, nl, g->mask));
    int64_t mine = 0, before = 0;
    for (int64_t i = 0; i < nl; i++) mine += g->mask[i] != 0;
    MPI_CHECK(MPI_Exscan(&mine, &before, 1, MPI_INT64_T, MPI_SUM, g->comm));
    if (g->rank == 0) before = 0;
    MPI_CHECK(MPI_Allreduce(&mine, &g->n_unmasked, 1, MPI_INT64_T, MPI_SUM, g->comm));
    if (g->n_unmasked < 2)
        return tp_err(TP_ERR_RANGE, "geometry: %s has %lld unmasked rows of %lld; need at least 2", g->path,
                      (long long)g->n_unmasked, (long long)g->N);
    int64_t max_rows = g->gs->max_rows;
    int64_t m = max_rows == 0 || max_rows >= g->n_unmasked ? g->n_unmasked : max_rows;
    int64_t *sample = NULL;
    if (m < g->n_unmasked) {
        sample = tp_malloc((size_t)m * sizeof *sample);
        st = sample ? tp_sample_indices(g->n_unmasked, m, g->gs->seed, sample)
                    : TP_ERR_NOMEM;
    }
    TP_CHECK(dist_agree(g->comm, st, "geometry"));
    int64_t u = before, p = 0;
    if (sample)
        while (p < m && sample[p] < before) p++;
    for (int64_t i = 0; i < nl; i++) {
        if (!g->mask[i]) continue;
        int take = 1;
        if (sample) {
            take = p < m && sample[p] == u;
            if (take) p++;
        }
        g->keep[i] = (uint8_t)take;
        g->n_keep_local += take;
        u++;
    }
    free(sample);
    g->keep_rows = tp_malloc((size_t)(g->n_keep_local ? g->n_keep_local : 1) * sizeof *g->keep_rows);
    st = g->keep_rows ? TP_OK : TP_ERR_NOMEM;
    TP_CHECK(dist_agree(g->comm, st, "geometry"));
    for (int64_t i = 0, k = 0; i < nl; i++)
        if (g->keep[i]) g->keep_rows[k++] = g->a + i;
    MPI_CHECK(MPI_Allreduce(&g->n_keep_local, &g->n_keep, 1, MPI_INT64_T, MPI_SUM, g->comm));
    return TP_OK;
}

static json_t *jnum(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static json_t *jsummary(const local_summary *s)
{
    return json_pack("{s:o, s:o, s:o, s:o}", "mean", jnum(s->mean), "median", jnum(s->median), "p10", jnum(s->p10),
                     "p90", jnum(s->p90));
}

static json_t *jarray_f64(const double *v, int64_t n)
{
    json_t *a = json_array();
    for (int64_t i = 0; i < n; i++) json_array_append_new(a, jnum(v[i]));
    return a;
}

/* The label of the capture point from its estimates (geometry_type.h). */
static json_t *geometry_type(const pca_result *pr, const intrinsic_dim_result *idr, const local_geometry_result *lg,
                             double silhouette, const norm_stats_result *ns)
{
    geometry_type_inputs in = {.d = (double)pr->d, .pca_id_90 = (double)pr->intrinsic_dim_90,
                               .evr0 = pr->explained_variance_ratio[0], .mle = idr->mle, .twonn = idr->twonn,
                               .angle_median = lg->angle.median, .angle_p10 = lg->angle.p10, .angle_p90 = lg->angle.p90,
                               .silhouette = silhouette, .mean_cosine = ns->mean_cosine};
    return geometry_type_classify(&in);
}

/* Per cluster, the `top` held rows nearest the centre, merged on rank 0. */
static tp_status nearest_rows(const geo_ctx *g, const float *X, const kmeans_result *kr, hook_job *j)
{
    int64_t kc = kr->k, top = j->top, d = j->d, slots = kc * top;
    double *dist = tp_malloc((size_t)(slots ? slots : 1) * sizeof *dist);
    double *rowd = tp_malloc((size_t)(slots ? slots : 1) * sizeof *rowd);
    double *all_d = NULL, *all_r = NULL;
    if (g->rank == 0) {
        all_d = tp_malloc((size_t)(slots * g->size > 0 ? slots * g->size : 1) * sizeof *all_d);
        all_r = tp_malloc((size_t)(slots * g->size > 0 ? slots * g->size : 1) * sizeof *all_r);
    }
    tp_status st = dist && rowd && (g->rank != 0 || (all_d && all_r)) ? TP_OK : TP_ERR_NOMEM;
    if ((st = dist_agree(g->comm, st, "geometry")) != TP_OK) goto done;
    for (int64_t i = 0; i < slots; i++) dist[i] = INFINITY, rowd[i] = -1;
    for (int64_t i = 0; i < g->n_keep_local; i++) {
        int64_t c = kr->assign[i];
        const double *cc = kr->centres + c * d;
        const float *x = X + (size_t)i * (size_t)d;
        double s = 0;
        for (int64_t t = 0; t < d; t++) s += ((double)x[t] - cc[t]) * ((double)x[t] - cc[t]);
        double *ld = dist + c * top, *lr = rowd + c * top;
        if (top == 0 || s >= ld[top - 1]) continue;
        int64_t p = top - 1;   /* insertion into the sorted list (rows ascend: ties keep the lower row) */
        while (p > 0 && ld[p - 1] > s) ld[p] = ld[p - 1], lr[p] = lr[p - 1], p--;
        ld[p] = s, lr[p] = (double)g->keep_rows[i];
    }
    MPI_CHECK_GOTO(MPI_Gather(dist, (int)slots, MPI_DOUBLE, all_d, (int)slots, MPI_DOUBLE, 0, g->comm), st, done);
    MPI_CHECK_GOTO(MPI_Gather(rowd, (int)slots, MPI_DOUBLE, all_r, (int)slots, MPI_DOUBLE, 0, g->comm), st, done);
    if (g->rank == 0) {
        j->kc = kc;
        j->near_row = tp_malloc((size_t)(slots ? slots : 1) * sizeof *j->near_row);
        j->near_dist = tp_malloc((size_t)(slots ? slots : 1) * sizeof *j->near_dist);
        if (!j->near_row || !j->near_dist) { st = TP_ERR_NOMEM; goto done; }
        for (int64_t c = 0; c < kc; c++) {
            for (int64_t t = 0; t < top; t++) {
                /* pick the smallest (distance, row) left among the ranks' lists */
                double bd = INFINITY, br = -1;
                int64_t bi = -1;
                for (int r = 0; r < g->size; r++)
                    for (int64_t q = 0; q < top; q++) {
                        int64_t at = (int64_t)r * slots + c * top + q;
                        double dd = all_d[at], rr = all_r[at];
                        if (rr < 0) continue;
                        if (dd < bd || (dd == bd && rr < br)) bd = dd, br = rr, bi = at;
                    }
                j->near_row[c * top + t] = bi < 0 ? -1 : (int64_t)br;
                j->near_dist[c * top + t] = bi < 0 ? NAN : sqrt(bd);
                if (bi >= 0) all_r[bi] = -1;
            }
        }
    }
done:
    free(dist), free(rowd), free(all_d), free(all_r);
    return dist_agree(g->comm, st, "geometry");
}

/* Settings that ask more rows or columns than the capture point has. */
static tp_status check_sizes(const geo_ctx *g, const hook_job *j)
{
    const geometry_settings *gs = g->gs;
    int64_t d = j->d, kpca = gs->pca_components;
    int64_t n_pca = gs->pca_method == PCA_METHOD_COV ? g->n_unmasked : g->n_keep;
    if (kpca > d)
        return tp_err(TP_ERR_RANGE, "geometry.pca.components (%s) = %lld, but %s has only %lld columns",
                      gs->pca_components_origin, (long long)kpca, j->name, (long long)d);
    if (kpca > n_pca)
        return tp_err(TP_ERR_RANGE, "geometry.pca.components (%s) = %lld, but %s has only %lld %s rows",
                      gs->pca_components_origin, (long long)kpca, j->name, (long long)n_pca,
                      gs->pca_method == PCA_METHOD_COV ? "unmasked" : "in-memory");
    int64_t need = gs->id_k + 1;
    if (gs->local_k + 2 > need) need = gs->local_k + 2;
    if (gs->kmeans_k > need) need = gs->kmeans_k;
    if (g->n_keep < need)
        return tp_err(TP_ERR_RANGE, "geometry: %s has %lld rows in memory; geometry.id.k = %lld, geometry.local.k = "
                      "%lld and geometry.kmeans.k = %lld need at least %lld", j->name, (long long)g->n_keep,
                      (long long)gs->id_k, (long long)gs->local_k, (long long)gs->kmeans_k, (long long)need);
    return TP_OK;
}

/* Everything measured on one capture point (freed by results_free). */
typedef struct {
    pca_result pr;
    intrinsic_dim_result idr;
    local_geometry_result lg;
    kmeans_result kr;
    norm_stats_result ns;
    double sil;
    const char *sil_note;
    double t_read, t_pca, t_norm, t_id, t_local, t_km;
} hook_results;

static void results_free(hook_results *r)
{
    pca_result_free(&r->pr);
    intrinsic_dim_result_free(&r->idr);
    local_geometry_result_free(&r->lg);
    kmeans_result_free(&r->kr);
    norm_stats_result_free(&r->ns);
}

/* Streams this rank's rows: every unmasked row into the covariance (cov method),
 * the held rows into X [n_keep_local, d]. */
static tp_status stream_rows(const geo_ctx *g, const hook_job *j, float *X, pca_accum *acc)
{
    int64_t d = j->d, nl = g->b - g->a;
    float *buf = tp_malloc((size_t)READ_BLOCK * (size_t)d * sizeof *buf);
    tp_status st = dist_agree(g->comm, buf ? TP_OK : TP_ERR_NOMEM, "geometry");
    int64_t nblk = (nl + READ_BLOCK - 1) / READ_BLOCK, nblk_max = 0, held = 0;
    if (st == TP_OK) MPI_CHECK_GOTO(MPI_Allreduce(&nblk, &nblk_max, 1, MPI_INT64_T, MPI_MAX, g->comm), st, done);
    for (int64_t blk = 0; st == TP_OK && blk < nblk_max; blk++) {
        int64_t r0 = g->a + blk * READ_BLOCK, n = blk < nblk ? (g->b - r0 < READ_BLOCK ? g->b - r0 : READ_BLOCK) : 0;
        /* Every rank reads in every round (the store's metadata reads are collective). */
        st = store_read_acts(g->s, j->act, n ? r0 : 0, n, buf);
        if ((st = dist_agree(g->comm, st, "geometry")) != TP_OK) break;
        int64_t nc = 0;
        for (int64_t i = 0; i < n; i++) {
            int64_t li = r0 - g->a + i;
            if (!g->mask[li]) continue;
            if (g->keep[li]) memcpy(X + (size_t)held++ * (size_t)d, buf + (size_t)i * (size_t)d, (size_t)d * sizeof *X);
            if (acc && nc != i) memmove(buf + (size_t)nc * (size_t)d, buf + (size_t)i * (size_t)d, (size_t)d * sizeof *buf);
            nc++;
        }
        st = dist_agree(g->comm, acc && nc ? pca_accum_add(acc, buf, nc) : TP_OK, "geometry");
    }
done:
    free(buf);
    return st;
}

/* PCA, norms, intrinsic dimension, local geometry, k-means: each timed. */
static tp_status measure(const geo_ctx *g, hook_job *j, const float *X, pca_accum *acc, hook_results *r)
{
    const geometry_settings *gs = g->gs;
    int64_t d = j->d, nloc = g->n_keep_local;
    double t1 = tp_now();
    pca_options po = pca_options_default();
    po.method = gs->pca_method, po.gram = gs->pca_gram, po.k = gs->pca_components;
    TP_CHECK(acc ? pca_accum_finish(acc, g->comm, &po, &r->pr) : pca_fit_distributed(X, nloc, d, g->comm, &po, &r->pr));
    r->t_pca = tp_now() - t1, t1 = tp_now();
    norm_stats_options no = norm_stats_options_default();
    no.massive_ratio = gs->massive_ratio;
    TP_CHECK(norm_stats_compute(X, nloc, d, g->comm, &no, &r->ns));
    r->t_norm = tp_now() - t1, t1 = tp_now();
    intrinsic_dim_options io = intrinsic_dim_options_default();
    io.sample = gs->id_sample, io.k = gs->id_k, io.seed = gs->seed;
    TP_CHECK(intrinsic_dim_estimate(X, nloc, d, g->comm, &io, &r->idr));
    r->t_id = tp_now() - t1, t1 = tp_now();
    local_geometry_options lo = local_geometry_options_default();
    lo.sample = gs->local_sample, lo.k = gs->local_k, lo.seed = gs->seed + 1;
    lo.var_threshold = gs->local_var_threshold;
    TP_CHECK(local_geometry_estimate(X, nloc, d, g->comm, &lo, &r->lg));
    r->t_local = tp_now() - t1, t1 = tp_now();
    kmeans_options ko = kmeans_options_default();
    ko.k = gs->kmeans_k, ko.max_iter = gs->kmeans_max_iter, ko.seed = gs->seed + 2;
    ko.init_sample = gs->kmeans_init_sample;
    TP_CHECK(kmeans_fit_distributed(X, nloc, d, g->comm, &ko, &r->kr));
    r->sil = NAN;
    tp_status st = kmeans_silhouette_distributed(X, r->kr.assign, nloc, d, gs->kmeans_k, gs->kmeans_silhouette_sample,
                                                 gs->seed + 3, g->comm, &r->sil);
    if (st == TP_ERR_RANGE) {
        /* Every rank saw the same replicated sample: not an error, an undefined score. */
        r->sil = NAN, r->sil_note = tp_err_msg(), st = TP_OK;
        tp_log_warn("%s: %s", j->name, r->sil_note);
    }
    TP_CHECK(st);
    j->top = gs->kmeans_top_tokens;
    TP_CHECK(nearest_rows(g, X, &r->kr, j));
    r->t_km = tp_now() - t1;
    return TP_OK;
}

static json_t *pca_json(const hook_job *j, const pca_result *pr, pca_method method)
{
    int64_t ntop = pr->d < 64 ? pr->d : 64;
    char group[STORE_NAME_MAX + 8];
    snprintf(group, sizeof group, "/pca/%s", j->name);
    return json_pack("{s:s, s:I, s:I, s:o, s:I, s:I, s:I, s:o, s:o, s:o, s:o, s:s}",
        "method", pca_method_name(method), "rows", (json_int_t)pr->n, "components_stored", (json_int_t)pr->k,
        "total_variance", jnum(pr->total_variance), "intrinsic_dim_90pct_var", (json_int_t)pr->intrinsic_dim_90,
        "intrinsic_dim_95pct_var", (json_int_t)pr->intrinsic_dim_95, "intrinsic_dim_99pct_var",
        (json_int_t)pr->intrinsic_dim_99, "participation_ratio", jnum(pr->participation_ratio), "effective_rank",
        jnum(pr->effective_rank), "explained_variance_ratio_top", jarray_f64(j->ratio, ntop), "spectrum",
        jarray_f64(j->eig, pr->d), "store_group", group);
}

static json_t *id_json(const intrinsic_dim_result *idr)
{
    return json_pack("{s:o, s:o, s:o, s:I, s:I, s:I, s:I, s:I}", "mle", jnum(idr->mle), "mle_levina_bickel_mean",
        jnum(idr->mle_mean), "twonn", jnum(idr->twonn), "k", (json_int_t)idr->k, "sample", (json_int_t)idr->n_sample,
        "mle_dropped_duplicates", (json_int_t)idr->mle_dropped, "twonn_ratios_fitted", (json_int_t)idr->twonn_used,
        "twonn_dropped_duplicates", (json_int_t)idr->twonn_dropped);
}

static json_t *local_json(const local_geometry_result *lg, double var_threshold)
{
    json_t *hist = json_array();
    for (int64_t i = 0; i <= lg->k + 1; i++) json_array_append_new(hist, json_integer((json_int_t)lg->dim_histogram[i]));
    return json_pack("{s:I, s:I, s:f, s:o, s:o, s:o, s:o, s:I}", "k", (json_int_t)lg->k, "sample",
        (json_int_t)lg->n_sample, "var_threshold", var_threshold, "local_dim", jsummary(&lg->dim),
        "local_dim_histogram", hist, "tangent_angle_deg", jsummary(&lg->angle), "turn_per_unit_distance",
        jsummary(&lg->turn_per_dist), "degenerate", (json_int_t)lg->degenerate);
}

static json_t *norms_json(const norm_stats_result *ns, double massive_ratio)
{
    json_t *pct = json_object(), *mass = json_array();
    for (int p = 0; p < NORM_NPCT; p++) {
        char key[16];
        snprintf(key, sizeof key, "p%g", NORM_PCTS[p]);
        json_object_set_new(pct, key, jnum(ns->norm_pct[p]));
    }
    for (int64_t i = 0; i < ns->n_listed; i++)
        json_array_append_new(mass, json_pack("{s:I, s:o, s:o, s:o}", "dim", (json_int_t)ns->massive_dim[i],
            "max_abs", jnum(ns->massive_max_abs[i]), "mean", jnum(ns->massive_mean[i]), "ratio_to_typical",
            jnum(ns->massive_ratio[i])));
    return json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:f, s:I, s:o, s:o, s:o, s:o, s:I}", "mean",
        jnum(ns->norm_mean), "std", jnum(ns->norm_std), "min", jnum(ns->norm_min), "max", jnum(ns->norm_max),
        "percentiles", pct, "typical_abs_coordinate", jnum(ns->typical_abs), "massive_ratio_threshold", massive_ratio,
        "massive_dims_count", (json_int_t)ns->n_massive, "massive_dims", mass, "mean_cosine", jnum(ns->mean_cosine),
        "mean_cosine_centred", jnum(ns->mean_cosine_centred), "mean_share_of_squared_norm", jnum(ns->mean_share),
        "zero_rows", (json_int_t)ns->zero_rows);
}

static json_t *clusters_json(const hook_results *r, int64_t silhouette_sample)
{
    const kmeans_result *kr = &r->kr;
    json_t *sizes = json_array();
    for (int64_t c = 0; c < kr->k; c++) json_array_append_new(sizes, json_integer((json_int_t)kr->sizes[c]));
    json_t *clu = json_pack("{s:I, s:i, s:b, s:o, s:o, s:I, s:o}", "k", (json_int_t)kr->k, "iterations",
        kr->iterations, "converged", kr->converged, "inertia", jnum(kr->inertia), "silhouette", jnum(r->sil),
        "silhouette_sample", (json_int_t)silhouette_sample, "sizes", sizes);
    if (r->sil_note) json_object_set_new(clu, "silhouette_note", json_string(r->sil_note));
    return clu;
}

/* Rank 0: the capture point's JSON, its timings, and its PCA kept for /pca/<hook>/. */
static void report_hook(const geo_ctx *g, hook_job *j, hook_results *r, json_t *timing)
{
    const geometry_settings *gs = g->gs;
    pca_result *pr = &r->pr;
    json_t *jt = geometry_type(pr, &r->idr, &r->lg, r->sil, &r->ns);
    j->mean = pr->mean, j->eig = pr->eigenvalues, j->ratio = pr->explained_variance_ratio, j->comp = pr->components;
    pr->mean = pr->eigenvalues = pr->explained_variance_ratio = pr->components = NULL;
    j->pca = (store_pca){.method = pca_method_name(gs->pca_method), .n_rows = pr->n, .d = j->d, .k = pr->k,
                         .mean = j->mean, .eigenvalues = j->eig, .explained_variance_ratio = j->ratio,
                         .components = j->comp};
    j->j = json_pack("{s:s, s:i, s:I, s:I, s:I, s:o, s:o, s:o, s:o, s:o, s:o}", "hook", j->name, "layer", j->layer,
        "d", (json_int_t)j->d, "rows_unmasked", (json_int_t)g->n_unmasked, "rows_in_memory", (json_int_t)g->n_keep,
        "geometry_type", jt, "pca", pca_json(j, pr, gs->pca_method), "intrinsic_dimension", id_json(&r->idr),
        "local_geometry", local_json(&r->lg, gs->local_var_threshold), "norms", norms_json(&r->ns, gs->massive_ratio),
        "clusters", clusters_json(r, gs->kmeans_silhouette_sample));
    json_object_set_new(timing, j->name, json_pack("{s:f, s:f, s:f, s:f, s:f, s:f}", "read_s", r->t_read, "pca_s",
        r->t_pca, "norms_s", r->t_norm, "intrinsic_dim_s", r->t_id, "local_s", r->t_local, "kmeans_s", r->t_km));
    tp_log_info("geometry: %s: PCA id95 %lld, PR %.1f, MLE %.1f, TwoNN %.1f, local dim %.1f, angle %.0f deg, "
                "silhouette %.2f -> %s", j->name, (long long)pr->intrinsic_dim_95, pr->participation_ratio, r->idr.mle,
                r->idr.twonn, r->lg.dim.median, r->lg.angle.median, r->sil,
                json_string_value(json_object_get(jt, "label")));
}

static tp_status analyse_hook(geo_ctx *g, hook_job *j, json_t *timing)
{
    TP_CHECK(check_sizes(g, j));
    hook_results r = {0};
    pca_accum *acc = NULL;
    double t0 = tp_now();
    float *X = tp_malloc((size_t)(g->n_keep_local ? g->n_keep_local : 1) * (size_t)j->d * sizeof *X);
    tp_status st = X ? TP_OK : TP_ERR_NOMEM;
    if (st == TP_OK && g->gs->pca_method == PCA_METHOD_COV) st = pca_accum_init(j->d, g->gs->pca_gram, &acc);
    st = dist_agree(g->comm, st, "geometry");
    if (st == TP_OK) st = stream_rows(g, j, X, acc);
    r.t_read = tp_now() - t0;
    if (st == TP_OK) st = measure(g, j, X, acc, &r);
    if (st == TP_OK && g->rank == 0) report_hook(g, j, &r, timing);
    free(X);
    pca_accum_free(acc);
    results_free(&r);
    return st;
}

/* Rank 0, after the parallel store is closed: token contexts of the nearest rows. */
static tp_status add_cluster_tokens(const geo_ctx *g, hook_job *jobs, int n)
{
    int ctx = g->gs->kmeans_context;
    tp_tokenizer *tok = NULL;
    if (model_io_open_tokenizer(g->model_dir, &tok) != TP_OK) {
        tp_log_warn("geometry: %s; cluster tokens are listed as ids only", tp_err_msg());
        tok = NULL;
    }
    int32_t *w = tp_malloc((size_t)(ctx + 1) * sizeof *w);
    store_serial *sh = NULL;
    tp_status st = w ? store_serial_open(g->path, &sh) : TP_ERR_NOMEM;
    for (int h = 0; h < n && st == TP_OK; h++) {
        hook_job *j = &jobs[h];
        json_t *clu = json_object_get(j->j, "clusters"), *list = json_array();
        json_object_set_new(clu, "nearest_to_centre", list);
        for (int64_t c = 0; c < j->kc && st == TP_OK; c++) {
            json_t *items = json_array();
            json_array_append_new(list, json_pack("{s:I, s:I, s:o}", "cluster", (json_int_t)c, "size",
                (json_int_t)json_integer_value(json_array_get(json_object_get(clu, "sizes"), (size_t)c)), "rows", items));
            for (int64_t t = 0; t < j->top && st == TP_OK; t++) {
                int64_t row = j->near_row[c * j->top + t];
                if (row < 0) continue;
                int32_t pos = 0;
                st = store_serial_read_i32(sh, "positions", row, 1, &pos);
                int64_t start = row - (pos < ctx ? pos : ctx);
                if (st == TP_OK) st = store_serial_read_i32(sh, "tokens", start, row - start + 1, w);
                if (st != TP_OK) break;
                json_t *it = json_pack("{s:I, s:i, s:i, s:o}", "row", (json_int_t)row, "position", pos, "token_id",
                                       w[row - start], "distance", jnum(j->near_dist[c * j->top + t]));
                if (tok) {
                    char *txt = NULL;
                    size_t len = 0;
                    if (tokenizer_decode(tok, w + (row - start), 1, 0, &txt, &len) == TP_OK)
                        json_object_set_new(it, "token", json_stringn(txt, len));
                    free(txt);
                    txt = NULL;
                    if (row > start && tokenizer_decode(tok, w, (size_t)(row - start), 0, &txt, &len) == TP_OK)
                        json_object_set_new(it, "context", json_stringn(txt, len));
                    free(txt);
                }
                json_array_append_new(items, it);
            }
        }
    }
    store_serial_close(sh);
    free(w);
    tokenizer_free(tok);
    return st;
}

static json_t *definitions(void)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}",
        "rows", "unmasked rows of the store (/mask = 1); the in-memory rows are all of them or a seeded sample of geometry.max_rows",
        "intrinsic_dim_P_pct_var", "smallest k whose top-k principal components explain at least P % of the variance",
        "participation_ratio", "(sum of eigenvalues)^2 / sum of squared eigenvalues",
        "effective_rank", "exp of the entropy of the normalised eigenvalues (Roy & Vetterli 2007)",
        "mle", "Levina-Bickel MLE with the MacKay-Ghahramani correction: 1 / mean(1 / m_k(x)) over sampled points",
        "twonn", "Facco et al. 2017: least-squares slope of -log(1 - F(mu)) on log(mu), mu = r2/r1, largest 10 % discarded",
        "local_dim", "smallest j whose top-j local principal components of a point and its k neighbours explain var_threshold of their variance",
        "tangent_angle_deg", "mean principal angle between the local tangent spaces of a point and of its nearest neighbour (dimension: the smaller local_dim of the two)",
        "mean_cosine", "exact mean cosine similarity over all pairs of distinct rows (anisotropy)",
        "massive_dims", "coordinates whose largest |value| is at least massive_ratio_threshold times typical_abs_coordinate (the median over coordinates of mean |value|)");
}

/* The store, the capture points to analyse, and this rank's rows. */
static tp_status open_store(geo_ctx *g, const char *run_dir, hook_job **jobs, int *n)
{
    TP_CHECK(run_path(g->path, sizeof g->path, run_dir, RUN_STORE));
    TP_CHECK(store_open_read(g->path, g->comm, &g->s));
    TP_CHECK(store_inputs_check(g->s, g->path, g->comm));
    int cap = store_num_acts(g->s) ? store_num_acts(g->s) : 1;
    int *acts = tp_malloc((size_t)cap * sizeof *acts);
    if (!(*jobs = tp_calloc((size_t)cap, sizeof **jobs)) || !acts) { free(acts); return TP_ERR_NOMEM; }
    tp_status st = hook_select(&g->gs->hooks, g->s, g->path, acts, n, cap);
    for (int i = 0; st == TP_OK && i < *n; i++) {
        const store_act_spec *a = store_act(g->s, acts[i]);
        hook_job *j = &(*jobs)[i];
        snprintf(j->name, sizeof j->name, "%s", a->name);
        j->act = acts[i], j->layer = hook_select_layer(a->name), j->d = a->cols;
    }
    if (st == TP_OK) st = hook_select_require_complete(g->s, g->path, "geometry", acts, *n);
    free(acts);
    return st;
}

/* Rank 0: cluster tokens, /pca/<hook>/ in the store, results/geometric_analysis.json. */
static tp_status write_results(const geo_ctx *g, const char *run_dir, hook_job *jobs, int n, json_t *timing,
                               double t_start)
{
    const geometry_settings *gs = g->gs;
    TP_CHECK(add_cluster_tokens(g, jobs, n));
    for (int h = 0; h < n; h++) TP_CHECK(store_write_pca(g->path, jobs[h].name, &jobs[h].pca));
    char out[TP_PATH_MAX];
    TP_CHECK(run_path(out, sizeof out, run_dir, RUN_GEOMETRY_JSON));
    json_t *layers = json_array();
    for (int h = 0; h < n; h++) json_array_append(layers, jobs[h].j);
    json_t *doc = json_pack("{s:s, s:I, s:I, s:I, s:i, s:{s:s, s:s, s:I, s:I, s:I}, s:o, s:o, s:O, s:f}",
        "store", g->path, "rows_total", (json_int_t)g->N, "rows_unmasked", (json_int_t)g->n_unmasked,
        "rows_in_memory", (json_int_t)g->n_keep, "ranks", g->size, "settings", "pca_method",
        pca_method_name(gs->pca_method), "pca_gram", pca_gram_name(gs->pca_gram), "max_rows", (json_int_t)gs->max_rows, "seed", (json_int_t)gs->seed,
        "pca_components", (json_int_t)gs->pca_components, "definitions", definitions(), "layers", layers,
        "timing_rank0", timing, "wall_s", tp_now() - t_start);
    tp_status st = fs_mkdir_parent(out);
    if (st == TP_OK) st = fs_write_json(out, doc);
    json_decref(doc);
    if (st == TP_OK) tp_log_info("geometry: %d capture point(s) -> %s", n, out);
    return st;
}

tp_status geometry_phase_run(const tp_config *cfg, const char *run_dir)
{
    geometry_settings gs;
    tp_settings set;
    TP_CHECK(settings_read(cfg, &set));
    TP_CHECK(geometry_settings_read(cfg, &gs));
    geo_ctx g = {.gs = &gs, .model_dir = set.model.dir, .comm = MPI_COMM_WORLD, .rank = dist_rank(),
                 .size = dist_size()};
    hook_job *jobs = NULL;
    int n = 0;
    json_t *timing = json_object();
    double t_start = tp_now();
    tp_status st;
    TP_CHECK_GOTO(open_store(&g, run_dir, &jobs, &n), st, done);
    TP_CHECK_GOTO(select_rows(&g), st, done);
    tp_log_info("geometry: %d capture point(s) of %s: %lld rows, %lld unmasked, %lld in memory over %d rank(s)", n,
                g.path, (long long)g.N, (long long)g.n_unmasked, (long long)g.n_keep, g.size);
    tp_progress prog;
    tp_progress_begin(&prog, "geometry", "capture points", (uint64_t)n);
    for (int h = 0; h < n; h++) {
        TP_CHECK_GOTO(analyse_hook(&g, &jobs[h], timing), st, done);
        TP_CHECK_GOTO(tp_fault("geometry", "point"), st, done);
        tp_progress_note(&prog, "last: %s", jobs[h].name);
        tp_progress_add(&prog, 1);
    }
    tp_progress_end(&prog);
    st = store_close(g.s);
    g.s = NULL;
    if (st != TP_OK) goto done;
    /* Rank 0 writes; the others wait for its verdict. */
    st = dist_agree(g.comm, g.rank == 0 ? write_results(&g, run_dir, jobs, n, timing, t_start) : TP_OK,
                    "geometry (writing results)");
done:
    if (g.s) store_close_after_error(g.s);
    for (int h = 0; jobs && h < n; h++) {
        json_decref(jobs[h].j);
        free(jobs[h].mean), free(jobs[h].eig), free(jobs[h].ratio), free(jobs[h].comp);
        free(jobs[h].near_row), free(jobs[h].near_dist);
    }
    free(jobs);
    free(g.mask), free(g.keep), free(g.keep_rows);
    json_decref(timing);
    return st;
}

/* "8 capture points: 6 x low-dimensional curved manifold | 2 x ..." (labels counted). */
static void geometry_headline(const char *run_dir, char *buf, size_t n)
{
    json_t *j = run_load_json(run_dir, RUN_GEOMETRY_JSON), *layers = j ? json_object_get(j, "layers") : NULL;
    if (!layers) { json_decref(j); return; }
    size_t nl = json_array_size(layers), len = (size_t)snprintf(buf, n, "%zu capture points:", nl);
    json_t *counts = json_object();
    for (size_t i = 0; i < nl; i++) {
        const char *lab = json_string_value(json_object_get(json_object_get(json_array_get(layers, i), "geometry_type"),
                                                             "label"));
        if (!lab) continue;
        json_t *c = json_object_get(counts, lab);
        json_object_set_new(counts, lab, json_integer(c ? json_integer_value(c) + 1 : 1));
    }
    const char *lab;
    json_t *c;
    int first = 1;
    json_object_foreach(counts, lab, c) {
        if (len >= n) break;
        len += (size_t)snprintf(buf + len, n - len, "%s %lld x %s", first ? "" : " |", (long long)json_integer_value(c), lab);
        first = 0;
    }
    json_decref(counts);
    json_decref(j);
}

static const char *const geometry_outputs[] = {RUN_GEOMETRY_JSON, NULL};
static const char *const geometry_reads[] = {"layers", NULL};
static const tp_phase *const geometry_needs[] = {&capture_phase, NULL};

static const char *const geometry_faults[] = {"point", NULL};
const tp_phase geometry_phase = {
    .name = "geometry",
    .help = "phase 3: PCA, intrinsic dimension, local geometry, clusters, norms -> results/geometric_analysis.json",
    .run = geometry_phase_run,
    .outputs = geometry_outputs,
    .config = &geometry_section,
    .reads = geometry_reads,
    .needs = geometry_needs,
    .headline = geometry_headline,
    .faults = geometry_faults,
};
