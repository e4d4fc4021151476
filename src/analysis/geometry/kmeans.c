#include "analysis/geometry/kmeans.h"

#include "analysis/geometry/knn.h"
#include "backend/backend.h"   /* be_gemm_f64, be_dot_f64 */
#include "dist/mpi_check.h"
#include "dist/world.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Rows per dgemm block (assignment and silhouette): a 256 × d f64 block. */
#define KM_RB 256
/* Own sample points per silhouette block. */
#define KM_QB 64

kmeans_options kmeans_options_default(void)
{
    kmeans_options o = {.k = 8, .max_iter = 300, .seed = 0, .init_sample = 10000, .init = NULL};
    return o;
}

void kmeans_result_free(kmeans_result *r)
{
    free(r->centres);
    free(r->sizes);
    free(r->assign);
    memset(r, 0, sizeof *r);
}

static double d2_f32_f64(const float *restrict x, const double *restrict c, int64_t d)
{
    double s = 0;
    for (int64_t j = 0; j < d; j++) {
        double t = (double)x[j] - c[j];
        s += t * t;
    }
    return s;
}

/* ---- k-means++ ------------------------------------------------------------------ */

/* Greedy k-means++ over x [m, d] (rank 0's sample), as sklearn's _kmeans_plusplus:
 * first centre uniform; then 2 + ⌊ln k⌋ candidates drawn with probability ∝ D², the
 * one leaving the smallest potential kept. */
static tp_status plusplus_local(const float *x, int64_t m, int64_t d, int64_t k, uint64_t seed, double *centres)
{
    double *closest = tp_malloc((size_t)m * sizeof *closest), *trial = tp_malloc((size_t)m * sizeof *trial);
    double *best = tp_malloc((size_t)m * sizeof *best), *cum = tp_malloc((size_t)m * sizeof *cum);
    tp_status st = closest && trial && best && cum ? TP_OK : TP_ERR_NOMEM;
    if (st != TP_OK) goto done;
    uint64_t rng = seed;
    const int trials = 2 + (int)log((double)k);
    int64_t first = (int64_t)tp_rng_below(&rng, (uint64_t)m);
    for (int64_t j = 0; j < d; j++) centres[j] = x[(size_t)first * (size_t)d + j];
    double pot = 0;
    for (int64_t i = 0; i < m; i++) pot += closest[i] = d2_f32_f64(x + (size_t)i * (size_t)d, centres, d);
    for (int64_t c = 1; c < k; c++) {
        double acc = 0;
        for (int64_t i = 0; i < m; i++) cum[i] = acc += closest[i];
        double best_pot = INFINITY;
        int64_t best_id = 0;
        for (int t = 0; t < trials; t++) {
            /* first i with cum[i] ≥ r (numpy searchsorted, side="left"), clipped */
            double r = tp_rng_unit(&rng) * pot;
            int64_t lo = 0, hi = m;
            while (lo < hi) {
                int64_t mid = lo + (hi - lo) / 2;
                if (cum[mid] < r) lo = mid + 1;
                else hi = mid;
            }
            int64_t id = lo < m ? lo : m - 1;
            double tpot = 0;
            const float *xc = x + (size_t)id * (size_t)d;
            for (int64_t i = 0; i < m; i++) {
                const float *xi = x + (size_t)i * (size_t)d;
                double s = 0;
                for (int64_t j = 0; j < d; j++) {
                    double u = (double)xi[j] - (double)xc[j];
                    s += u * u;
                }
                trial[i] = s < closest[i] ? s : closest[i];
                tpot += trial[i];
            }
            if (tpot < best_pot) {
                best_pot = tpot, best_id = id;
                memcpy(best, trial, (size_t)m * sizeof *best);
            }
        }
        for (int64_t j = 0; j < d; j++) centres[(size_t)c * (size_t)d + j] = x[(size_t)best_id * (size_t)d + j];
        memcpy(closest, best, (size_t)m * sizeof *closest);
        pot = best_pot;
    }
done:
    free(closest), free(trial), free(best), free(cum);
    return st;
}

tp_status kmeans_init_plusplus(const float *rows, int64_t n_local, int64_t d, int64_t k, int64_t sample,
                               uint64_t seed, MPI_Comm comm, double *centres)
{
    int rank = 0;
    MPI_CHECK(MPI_Comm_rank(comm, &rank));
    int64_t row0 = 0, n = 0;
    TP_CHECK(knn_row_offset(n_local, comm, &row0, &n));
    const int64_t m = sample <= 0 || sample > n ? n : sample;
    if (k < 1 || m < k)
        return tp_err(TP_ERR_RANGE, "kmeans++: k = %lld clusters from a sample of %lld rows", (long long)k,
                      (long long)m);
    int64_t *idx = tp_malloc((size_t)m * sizeof *idx);
    float *x = rank == 0 ? tp_malloc((size_t)m * (size_t)d * sizeof *x) : NULL;
    tp_status st = idx && (rank != 0 || x) ? TP_OK : TP_ERR_NOMEM;
    if (st == TP_OK) st = tp_sample_indices(n, m, seed, idx);
    if ((st = dist_agree(comm, st, "kmeans")) != TP_OK) goto done;
    if ((st = knn_gather_rows(rows, n_local, row0, (size_t)d * sizeof(float), idx, m, 0, comm, x)) != TP_OK) goto done;
    if (rank == 0) st = plusplus_local(x, m, d, k, seed ^ 0x6b6d65616e732b2bULL, centres);
    if ((st = dist_agree(comm, st, "kmeans")) != TP_OK) goto done;
    for (size_t off = 0, n_c = (size_t)k * (size_t)d; off < n_c; off += (size_t)1 << 28) {
        int cnt = (int)(n_c - off < ((size_t)1 << 28) ? n_c - off : ((size_t)1 << 28));
        if (MPI_Bcast(centres + off, cnt, MPI_DOUBLE, 0, comm) != MPI_SUCCESS) {
            st = tp_err(TP_ERR_MPI, "kmeans++: MPI_Bcast of the centres failed");
            break;
        }
    }
done:
    free(idx), free(x);
    return st;
}

/* ---- Lloyd ---------------------------------------------------------------------- */

typedef struct {
    tp_backend *be;          /* the products (backend_cpu(): host arrays) */
    int64_t d, k;
    const double *shift;     /* [d] */
    const double *cs;        /* [k, d] centres − shift */
    const double *cn;        /* [k] ‖cs‖² */
    double *xb, *g;          /* scratch [KM_RB, d], [KM_RB, k] */
} assign_ctx;

/* cn[q] = ‖cs_q‖², the centres' squared norms the assignment reads. */
static tp_status centre_norms(const assign_ctx *c, double *cn)
{
    for (int64_t q = 0; q < c->k; q++)
        TP_CHECK(be_dot_f64(c->be, c->d, c->cs + (size_t)q * (size_t)c->d, c->cs + (size_t)q * (size_t)c->d, &cn[q]));
    return TP_OK;
}

/* Nearest centre of each local row; with sums [k, d] and counts [k] (may be NULL)
 * accumulated over (x − shift). *n_changed: the rows whose cluster changed. */
static tp_status assign_rows(const assign_ctx *c, const float *rows, int64_t n_local, int32_t *assign, double *sums,
                             double *counts, int64_t *n_changed)
{
    const int64_t d = c->d, k = c->k;
    int64_t changed = 0;
    for (int64_t r0 = 0; r0 < n_local; r0 += KM_RB) {
        int nb = (int)(n_local - r0 < KM_RB ? n_local - r0 : KM_RB);
        for (int i = 0; i < nb; i++) {
            const float *xi = rows + (size_t)(r0 + i) * (size_t)d;
            double *oi = c->xb + (size_t)i * (size_t)d;
            for (int64_t j = 0; j < d; j++) oi[j] = (double)xi[j] - c->shift[j];
        }
        TP_CHECK(be_gemm_f64(c->be, TP_NO_TRANS, TP_TRANS, nb, k, d, 1.0, c->xb, d, c->cs, d, 0.0, c->g, k));
        for (int i = 0; i < nb; i++) {
            const double *gi = c->g + (size_t)i * (size_t)k;
            int32_t best = 0;
            double bd = c->cn[0] - 2.0 * gi[0];
            for (int64_t q = 1; q < k; q++) {
                double v = c->cn[q] - 2.0 * gi[q];
                if (v < bd) bd = v, best = (int32_t)q;
            }
            changed += assign[r0 + i] != best;
            assign[r0 + i] = best;
            if (sums) {
                double *restrict s = sums + (size_t)best * (size_t)d;
                const double *restrict xi = c->xb + (size_t)i * (size_t)d;
                for (int64_t j = 0; j < d; j++) s[j] += xi[j];
                counts[best] += 1.0;
            }
        }
    }
    *n_changed = changed;
    return TP_OK;
}

static int far_before(const double *a, const double *b)   /* record: dist, row, ... */
{
    return a[0] > b[0] || (a[0] == b[0] && a[1] < b[1]);
}

/* Puts record rec (of rl doubles) into the descending list top[0..ne) if it belongs. */
static void far_insert(double *top, int64_t ne, size_t rl, const double *rec)
{
    if (!far_before(rec, top + (size_t)(ne - 1) * rl)) return;
    int64_t w = ne - 1;
    while (w > 0 && far_before(rec, top + (size_t)(w - 1) * rl)) {
        memcpy(top + (size_t)w * rl, top + (size_t)(w - 1) * rl, rl * sizeof *top);
        w--;
    }
    memcpy(top + (size_t)w * rl, rec, rl * sizeof *top);
}

static int cmp_far(const void *a, const void *b)
{
    const double *x = a, *y = b;
    return far_before(x, y) ? -1 : far_before(y, x) ? 1 : 0;
}

/* sklearn's _relocate_empty_clusters_dense over the ranks: the ne rows farthest from
 * their (old) centres move into the ne empty clusters, in sums/counts. */
static tp_status relocate_empty(const assign_ctx *c, const float *rows, int64_t n_local, int64_t row0,
                                const int32_t *assign, double *sums, double *counts, MPI_Comm comm,
                                int64_t *relocated)
{
    const int64_t d = c->d, k = c->k;
    int64_t ne = 0;
    for (int64_t q = 0; q < k; q++) ne += counts[q] == 0;
    if (ne == 0) return TP_OK;
    int size = 1;
    MPI_CHECK(MPI_Comm_size(comm, &size));
    const size_t rl = 3 + (size_t)d;   /* distance², global row, old cluster, x − shift */
    if ((size_t)ne * rl > INT_MAX) return tp_err(TP_ERR_RANGE, "kmeans: %lld empty clusters of d = %lld is too many",
                                                 (long long)ne, (long long)d);
    double *top = tp_malloc((size_t)ne * rl * sizeof *top), *rec = tp_malloc(rl * sizeof *rec);
    double *all = tp_malloc((size_t)size * (size_t)ne * rl * sizeof *all);
    int64_t *empty = tp_malloc((size_t)ne * sizeof *empty);
    tp_status st = top && rec && all && empty ? TP_OK : TP_ERR_NOMEM;
    if ((st = dist_agree(comm, st, "kmeans")) != TP_OK) goto done;
    for (int64_t e = 0; e < ne; e++) top[(size_t)e * rl] = -1.0, top[(size_t)e * rl + 1] = 0;
    for (int64_t i = 0; i < n_local; i++) {
        const float *xi = rows + (size_t)i * (size_t)d;
        const double *ci = c->cs + (size_t)assign[i] * (size_t)d;
        double s = 0;
        for (int64_t j = 0; j < d; j++) {
            double t = ((double)xi[j] - c->shift[j]) - ci[j];
            s += t * t;
        }
        rec[0] = s, rec[1] = (double)(row0 + i);
        if (!far_before(rec, top + (size_t)(ne - 1) * rl)) continue;
        rec[2] = assign[i];
        for (int64_t j = 0; j < d; j++) rec[3 + j] = (double)xi[j] - c->shift[j];
        far_insert(top, ne, rl, rec);
    }
    if (MPI_Allgather(top, (int)(ne * (int64_t)rl), MPI_DOUBLE, all, (int)(ne * (int64_t)rl), MPI_DOUBLE, comm) !=
        MPI_SUCCESS) {
        st = tp_err(TP_ERR_MPI, "kmeans: MPI_Allgather of the farthest rows failed");
        goto done;
    }
    qsort(all, (size_t)size * (size_t)ne, rl * sizeof *all, cmp_far);
    if (!(all[0] > 0)) goto done;   /* every row on its centre: relocating is pointless */
    for (int64_t q = 0, e = 0; q < k; q++)
        if (counts[q] == 0) empty[e++] = q;
    for (int64_t e = 0; e < ne; e++) {
        const int64_t q = empty[e];
        const double *f = all + (size_t)e * rl;
        if (f[0] < 0) break;   /* fewer rows than empty clusters */
        int64_t old = (int64_t)f[2];
        double *so = sums + (size_t)old * (size_t)d, *sn = sums + (size_t)q * (size_t)d;
        for (int64_t j = 0; j < d; j++) so[j] -= f[3 + j], sn[j] = f[3 + j];
        counts[q] = 1;
        counts[old] -= 1;
        (*relocated)++;
    }
done:
    free(top), free(rec), free(all), free(empty);
    return st;
}

static tp_status check_fit_inputs(const float *rows, int64_t n_local, int64_t d, MPI_Comm comm,
                                  const kmeans_options *opt)
{
    int rank = 0;
    MPI_CHECK(MPI_Comm_rank(comm, &rank));
    tp_status st = TP_OK;
    if (!opt) st = tp_err(TP_ERR_CONFIG, "kmeans: no options given");
    else if (d <= 0 || d > INT_MAX) st = tp_err(TP_ERR_RANGE, "kmeans: d = %lld columns", (long long)d);
    else if (opt->k < 1 || opt->k > INT32_MAX) st = tp_err(TP_ERR_RANGE, "kmeans: k = %lld clusters", (long long)opt->k);
    else if (opt->max_iter < 1) st = tp_err(TP_ERR_RANGE, "kmeans: max_iter = %d", opt->max_iter);
    else if (n_local < 0 || (n_local > 0 && !rows))
        st = tp_err(TP_ERR_RANGE, "kmeans: NULL rows or n_local < 0 on rank %d", rank);
    TP_CHECK(dist_agree(comm, st, "kmeans"));
    int64_t v[4] = {d, opt->k, -d, -opt->k}, r[4];
    MPI_CHECK(MPI_Allreduce(v, r, 4, MPI_INT64_T, MPI_MAX, comm));
    if (r[0] != -r[2] || r[1] != -r[3]) return tp_err(TP_ERR_RANGE, "kmeans: ranks disagree on d or k");
    int fixed = opt->init != NULL, all_fixed = 0, any_fixed = 0;
    MPI_CHECK(MPI_Allreduce(&fixed, &all_fixed, 1, MPI_INT, MPI_MIN, comm));
    MPI_CHECK(MPI_Allreduce(&fixed, &any_fixed, 1, MPI_INT, MPI_MAX, comm));
    if (all_fixed != any_fixed) return tp_err(TP_ERR_CONFIG, "kmeans: fixed init centres given on some ranks only");
    return TP_OK;
}

tp_status kmeans_fit_distributed(const float *rows, int64_t n_local, int64_t d, MPI_Comm comm,
                                 const kmeans_options *opt, kmeans_result *out)
{
    memset(out, 0, sizeof *out);
    TP_CHECK(check_fit_inputs(rows, n_local, d, comm, opt));
    const int64_t k = opt->k;
    int64_t row0 = 0, n = 0;
    TP_CHECK(knn_row_offset(n_local, comm, &row0, &n));
    if (n < k) return tp_err(TP_ERR_RANGE, "kmeans: k = %lld clusters but %lld rows in all", (long long)k, (long long)n);
    out->n = n, out->d = d, out->k = k, out->n_local = n_local;

    const size_t kd = (size_t)k * (size_t)d, nacc = kd + (size_t)k + 1;
    out->centres = tp_malloc(kd * sizeof *out->centres);
    out->sizes = tp_calloc((size_t)k, sizeof *out->sizes);
    out->assign = tp_malloc((n_local > 0 ? (size_t)n_local : 1) * sizeof *out->assign);
    double *shift = tp_calloc((size_t)d, sizeof *shift), *cs = tp_malloc(kd * sizeof *cs);
    double *cn = tp_malloc((size_t)k * sizeof *cn), *acc = tp_malloc(nacc * sizeof *acc);
    double *xb = tp_malloc((size_t)KM_RB * (size_t)d * sizeof *xb), *g = tp_malloc((size_t)KM_RB * (size_t)k * sizeof *g);
    tp_status st = out->centres && out->sizes && out->assign && shift && cs && cn && acc && xb && g ? TP_OK : TP_ERR_NOMEM;
    if ((st = dist_agree(comm, st, "kmeans")) != TP_OK) goto done;

    if (opt->init) {
        memcpy(out->centres, opt->init, kd * sizeof *out->centres);
        for (size_t off = 0; off < kd && st == TP_OK; off += (size_t)1 << 28) {
            int cnt = (int)(kd - off < ((size_t)1 << 28) ? kd - off : ((size_t)1 << 28));
            if (MPI_Bcast(out->centres + off, cnt, MPI_DOUBLE, 0, comm) != MPI_SUCCESS)
                st = tp_err(TP_ERR_MPI, "kmeans: MPI_Bcast of the init centres failed");
        }
    } else {
        st = kmeans_init_plusplus(rows, n_local, d, k, opt->init_sample, opt->seed, comm, out->centres);
    }
    if (st != TP_OK) goto done;

    /* Shift by the mean of the initial centres: near the data, so ‖c‖² − 2x·c keeps
     * its digits when the rows share a large offset. */
    for (int64_t q = 0; q < k; q++)
        for (int64_t j = 0; j < d; j++) shift[j] += out->centres[(size_t)q * (size_t)d + j] / (double)k;
    for (size_t i = 0; i < kd; i++) cs[i] = out->centres[i] - shift[i % (size_t)d];
    assign_ctx ctx = {.be = backend_cpu(), .d = d, .k = k, .shift = shift, .cs = cs, .cn = cn, .xb = xb, .g = g};
    for (int64_t i = 0; i < n_local; i++) out->assign[i] = -1;

    int64_t changed = 0;
    for (int it = 0; it < opt->max_iter; it++) {
        memset(acc, 0, nacc * sizeof *acc);
        double *sums = acc, *counts = acc + kd;
        st = centre_norms(&ctx, cn);
        if (st == TP_OK) st = assign_rows(&ctx, rows, n_local, out->assign, sums, counts, &changed);
        if ((st = dist_agree(comm, st, "kmeans")) != TP_OK) goto done;   /* before the collective */
        acc[nacc - 1] = (double)changed;
        if ((st = dist_allreduce_sum_f64(comm, acc, nacc)) != TP_OK) goto done;
        if ((st = relocate_empty(&ctx, rows, n_local, row0, out->assign, sums, counts, comm, &out->relocated)) != TP_OK)
            goto done;
        for (int64_t q = 0; q < k; q++) {
            if (counts[q] <= 0) continue;   /* still empty: keeps its centre */
            double *c = cs + (size_t)q * (size_t)d;
            const double *s = sums + (size_t)q * (size_t)d;
            for (int64_t j = 0; j < d; j++) c[j] = s[j] / counts[q];
        }
        out->iterations = it + 1;
        if (acc[nacc - 1] == 0) {
            out->converged = 1;
            break;
        }
    }
    st = centre_norms(&ctx, cn);
    if (st == TP_OK && !out->converged) st = assign_rows(&ctx, rows, n_local, out->assign, NULL, NULL, &changed);
    if ((st = dist_agree(comm, st, "kmeans")) != TP_OK) goto done;
    for (size_t i = 0; i < kd; i++) out->centres[i] = shift[i % (size_t)d] + cs[i];

    /* Inertia and sizes from the final assignment, Σ (x − c)² directly. */
    memset(acc, 0, ((size_t)k + 1) * sizeof *acc);
    for (int64_t i = 0; i < n_local; i++) {
        int32_t q = out->assign[i];
        acc[q] += 1.0;
        acc[k] += d2_f32_f64(rows + (size_t)i * (size_t)d, out->centres + (size_t)q * (size_t)d, d);
    }
    if ((st = dist_allreduce_sum_f64(comm, acc, (size_t)k + 1)) != TP_OK) goto done;
    for (int64_t q = 0; q < k; q++) out->sizes[q] = (int64_t)acc[q];
    out->inertia = acc[k];
done:
    free(shift), free(cs), free(cn), free(acc), free(xb), free(g);
    if (st != TP_OK) kmeans_result_free(out);
    return st;
}

/* ---- silhouette ----------------------------------------------------------------- */

tp_status kmeans_silhouette_distributed(const float *rows, const int32_t *labels, int64_t n_local, int64_t d,
                                        int64_t k, int64_t sample, uint64_t seed, MPI_Comm comm, double *score)
{
    int rank = 0, size = 1;
    MPI_CHECK(MPI_Comm_rank(comm, &rank));
    MPI_CHECK(MPI_Comm_size(comm, &size));
    tp_status st = TP_OK;
    if (d <= 0 || d > INT_MAX || k < 1 || k > INT32_MAX)
        st = tp_err(TP_ERR_RANGE, "silhouette: d = %lld, k = %lld", (long long)d, (long long)k);
    else if (n_local < 0 || (n_local > 0 && (!rows || !labels)))
        st = tp_err(TP_ERR_RANGE, "silhouette: NULL rows or labels on rank %d", rank);
    for (int64_t i = 0; i < n_local && st == TP_OK; i++)
        if (labels[i] < 0 || labels[i] >= k)
            st = tp_err(TP_ERR_RANGE, "silhouette: label %d of local row %lld on rank %d is not in [0, %lld)",
                        (int)labels[i], (long long)i, rank, (long long)k);
    TP_CHECK(dist_agree(comm, st, "kmeans"));
    int64_t row0 = 0, n = 0;
    TP_CHECK(knn_row_offset(n_local, comm, &row0, &n));
    const int64_t m = sample <= 0 || sample > n ? n : sample;

    int64_t *idx = tp_malloc((m > 0 ? (size_t)m : 1) * sizeof *idx);
    float *x = tp_malloc((m > 0 ? (size_t)m : 1) * (size_t)d * sizeof *x);
    int32_t *lab = tp_malloc((m > 0 ? (size_t)m : 1) * sizeof *lab);
    double *cnt = tp_calloc((size_t)k, sizeof *cnt), *shift = tp_calloc((size_t)d, sizeof *shift);
    double *norm = tp_malloc((m > 0 ? (size_t)m : 1) * sizeof *norm);
    double *qb = tp_malloc((size_t)KM_QB * (size_t)d * sizeof *qb), *rb = tp_malloc((size_t)KM_RB * (size_t)d * sizeof *rb);
    double *g = tp_malloc((size_t)KM_QB * KM_RB * sizeof *g), *csum = tp_malloc((size_t)KM_QB * (size_t)k * sizeof *csum);
    st = idx && x && lab && cnt && shift && norm && qb && rb && g && csum ? TP_OK : TP_ERR_NOMEM;
    if (st == TP_OK) st = tp_sample_indices(n, m, seed, idx);
    if ((st = dist_agree(comm, st, "kmeans")) != TP_OK) goto done;
    if ((st = knn_gather_rows(rows, n_local, row0, (size_t)d * sizeof(float), idx, m, -1, comm, x)) != TP_OK) goto done;
    if ((st = knn_gather_rows(labels, n_local, row0, sizeof(int32_t), idx, m, -1, comm, lab)) != TP_OK) goto done;

    int64_t n_labels = 0;
    for (int64_t i = 0; i < m; i++) n_labels += cnt[lab[i]]++ == 0;
    if (n_labels < 2 || n_labels > m - 1) {
        st = tp_err(TP_ERR_RANGE, "silhouette: %lld distinct labels in a sample of %lld rows; need 2 to %lld",
                    (long long)n_labels, (long long)m, (long long)(m - 1));
        goto done;
    }
    /* Distances by ‖a‖² + ‖b‖² − 2a·b (dgemm, as sklearn's euclidean_distances) on
     * rows shifted by the sample mean, so a common offset does not cancel digits. */
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < d; j++) shift[j] += (double)x[(size_t)i * (size_t)d + j];
    for (int64_t j = 0; j < d; j++) shift[j] /= (double)m;
    for (int64_t i = 0; i < m; i++) {
        double s = 0;
        for (int64_t j = 0; j < d; j++) {
            double t = (double)x[(size_t)i * (size_t)d + j] - shift[j];
            s += t * t;
        }
        norm[i] = s;
    }
    const int64_t lo = m * rank / size, hi = m * (rank + 1) / size;
    double sil = 0;
    tp_backend *be = backend_cpu();   /* host arrays */
    for (int64_t q0 = lo; q0 < hi && st == TP_OK; q0 += KM_QB) {
        int nq = (int)(hi - q0 < KM_QB ? hi - q0 : KM_QB);
        for (int i = 0; i < nq; i++)
            for (int64_t j = 0; j < d; j++)
                qb[(size_t)i * (size_t)d + j] = (double)x[(size_t)(q0 + i) * (size_t)d + j] - shift[j];
        memset(csum, 0, (size_t)nq * (size_t)k * sizeof *csum);
        for (int64_t r0 = 0; r0 < m && st == TP_OK; r0 += KM_RB) {
            int nr = (int)(m - r0 < KM_RB ? m - r0 : KM_RB);
            for (int i = 0; i < nr; i++)
                for (int64_t j = 0; j < d; j++)
                    rb[(size_t)i * (size_t)d + j] = (double)x[(size_t)(r0 + i) * (size_t)d + j] - shift[j];
            if ((st = be_gemm_f64(be, TP_NO_TRANS, TP_TRANS, nq, nr, d, 1.0, qb, d, rb, d, 0.0, g, nr)) != TP_OK) break;
            for (int i = 0; i < nq; i++) {
                double *cs = csum + (size_t)i * (size_t)k;
                for (int j = 0; j < nr; j++) {
                    double v = norm[q0 + i] + norm[r0 + j] - 2.0 * g[(size_t)i * nr + j];
                    double dist = q0 + i == r0 + j || v <= 0 ? 0.0 : sqrt(v);
                    cs[lab[r0 + j]] += dist;
                }
            }
        }
        for (int i = 0; i < nq; i++) {
            const double *cs = csum + (size_t)i * (size_t)k;
            int32_t l = lab[q0 + i];
            if (cnt[l] < 2) continue;   /* alone in its cluster: s = 0 */
            double a = cs[l] / (cnt[l] - 1), b = INFINITY;
            for (int64_t c = 0; c < k; c++)
                if (c != l && cnt[c] > 0 && cs[c] / cnt[c] < b) b = cs[c] / cnt[c];
            double den = a > b ? a : b;
            if (den > 0) sil += (b - a) / den;
        }
    }
    if ((st = dist_agree(comm, st, "kmeans")) != TP_OK) goto done;   /* before the collective */
    if ((st = dist_allreduce_sum_f64(comm, &sil, 1)) != TP_OK) goto done;
    *score = sil / (double)m;
done:
    free(idx), free(x), free(lab), free(cnt), free(shift), free(norm), free(qb), free(rb), free(g), free(csum);
    return st;
}
