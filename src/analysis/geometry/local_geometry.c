#include "analysis/geometry/local_geometry.h"

#include "analysis/geometry/knn.h"
#include "backend/backend.h"   /* be_gemm_f64, be_axpy_f64, be_nrm2_f64, be_scal_f64 */
#include "dist/mpi_check.h"
#include "dist/world.h"

#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK 64   /* queries whose neighbourhoods are gathered at once */

local_geometry_options local_geometry_options_default(void)
{
    local_geometry_options o = {.sample = 1000, .seed = 0, .k = 20, .var_threshold = 0.9};
    return o;
}

void local_geometry_result_free(local_geometry_result *r)
{
    free(r->sample_index);
    free(r->local_dim);
    free(r->angle_deg);
    free(r->nn_dist);
    free(r->dim_histogram);
    memset(r, 0, sizeof *r);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

double local_percentile(double *v, int64_t n, double q)
{
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++)
        if (!isnan(v[i])) v[m++] = v[i];
    if (m == 0) return NAN;
    qsort(v, (size_t)m, sizeof *v, cmp_double);
    double pos = q / 100.0 * (double)(m - 1);
    int64_t lo = (int64_t)floor(pos), hi = lo + 1 < m ? lo + 1 : lo;
    double t = pos - (double)lo;
    /* numpy's _lerp: a + (b − a)·t, from the upper end when t ≥ 0.5 */
    double a = v[lo], b = v[hi];
    return t >= 0.5 ? b - (b - a) * (1.0 - t) : a + (b - a) * t;
}

static void summarise(const double *v, int64_t n, local_summary *s)
{
    double *w = tp_malloc((size_t)(n > 0 ? n : 1) * sizeof *w);
    s->mean = s->median = s->p10 = s->p90 = NAN;
    if (!w) return;
    double sum = 0;
    int64_t used = 0;
    for (int64_t i = 0; i < n; i++)
        if (!isnan(v[i])) sum += v[i], used++;
    if (used) s->mean = sum / (double)used;
    memcpy(w, v, (size_t)n * sizeof *w);
    s->median = local_percentile(w, n, 50);
    memcpy(w, v, (size_t)n * sizeof *w);
    s->p10 = local_percentile(w, n, 10);
    memcpy(w, v, (size_t)n * sizeof *w);
    s->p90 = local_percentile(w, n, 90);
    free(w);
}

tp_status local_pca(double *pts, int64_t np, int64_t d, double var_threshold, int64_t t_max, double *lambda,
                    double *U, int64_t *dim)
{
    if (np < 1 || d < 1) return tp_err(TP_ERR_RANGE, "local PCA: %lld points of %lld columns", (long long)np, (long long)d);
    double *mean = tp_calloc((size_t)d, sizeof *mean), *G = tp_malloc((size_t)(np * np) * sizeof *G),
           *w = tp_malloc((size_t)np * sizeof *w);
    tp_status st = mean && G && w ? TP_OK : TP_ERR_NOMEM;
    if (st != TP_OK) goto done;
    for (int64_t r = 0; r < np; r++)
        for (int64_t j = 0; j < d; j++) mean[j] += pts[r * d + j];
    for (int64_t j = 0; j < d; j++) mean[j] /= (double)np;
    for (int64_t r = 0; r < np; r++)
        for (int64_t j = 0; j < d; j++) pts[r * d + j] -= mean[j];
    tp_backend *be = backend_cpu();   /* host arrays */
    if ((st = be_gemm_f64(be, TP_NO_TRANS, TP_TRANS, np, np, d, 1.0, pts, d, pts, d, 0.0, G, np)) != TP_OK) goto done;
    lapack_int info = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'U', (lapack_int)np, G, (lapack_int)np, w);
    if (info != 0) { st = tp_err(TP_ERR_INTERNAL, "local PCA: dsyevd failed (info %d)", (int)info); goto done; }
    double total = 0;
    for (int64_t i = 0; i < np; i++) {
        double l = w[np - 1 - i];
        lambda[i] = l > 0 ? l : 0;
        total += lambda[i];
    }
    int64_t ld = 0;
    if (total > 0) {
        double acc = 0, need = var_threshold * total;
        for (ld = 0; ld < np;) {
            acc += lambda[ld++];
            if (acc >= need) break;
        }
    }
    *dim = ld;
    if (U) {
        /* u_i = Xcᵀ v_i / ‖Xcᵀ v_i‖ (= Xcᵀ v_i / √λ_i in exact arithmetic). */
        for (int64_t i = 0; i < t_max && i < np; i++) {
            double *u = U + i * d;
            memset(u, 0, (size_t)d * sizeof *u);
            if (!(lambda[i] > 1e-12 * lambda[0])) continue;
            int64_t col = np - 1 - i;
            for (int64_t r = 0; r < np && st == TP_OK; r++) st = be_axpy_f64(be, d, G[r * np + col], pts + r * d, u);
            double nrm = 0;
            if (st == TP_OK) st = be_nrm2_f64(be, d, u, &nrm);
            if (st == TP_OK && nrm > 0) st = be_scal_f64(be, d, 1.0 / nrm, u);
            if (st != TP_OK) goto done;
        }
        for (int64_t i = np; i < t_max; i++) memset(U + i * d, 0, (size_t)d * sizeof *U);
    }
done:
    free(mean), free(G), free(w);
    return st;
}

tp_status local_mean_angle(const double *Ua, const double *Ub, int64_t t, int64_t d, double *theta)
{
    if (t < 1) return tp_err(TP_ERR_RANGE, "local PCA: principal angles of %lld-dimensional spaces", (long long)t);
    double *M = tp_malloc((size_t)(t * t) * sizeof *M), *c = tp_malloc((size_t)t * sizeof *c),
           *s = tp_malloc((size_t)t * sizeof *s), *sup = tp_malloc((size_t)(t > 1 ? t : 2) * sizeof *sup),
           *B = tp_malloc((size_t)(t * d) * sizeof *B);
    tp_status st = M && c && s && sup && B ? TP_OK : TP_ERR_NOMEM;
    if (st == TP_OK) {
        /* cosines: singular values of M = Ua Ubᵀ; sines: of B = Ub − Mᵀ Ua (Björck & Golub 1973) */
        tp_backend *be = backend_cpu();   /* host arrays */
        st = be_gemm_f64(be, TP_NO_TRANS, TP_TRANS, t, t, d, 1.0, Ua, d, Ub, d, 0.0, M, t);
        memcpy(B, Ub, (size_t)(t * d) * sizeof *B);
        if (st == TP_OK) st = be_gemm_f64(be, TP_TRANS, TP_NO_TRANS, t, d, t, -1.0, M, t, Ua, d, 1.0, B, d);
    }
    if (st == TP_OK) {
        lapack_int info = LAPACKE_dgesvd(LAPACK_ROW_MAJOR, 'N', 'N', (lapack_int)t, (lapack_int)t, M, (lapack_int)t,
                                         c, NULL, 1, NULL, 1, sup);
        if (info == 0)
            info = LAPACKE_dgesvd(LAPACK_ROW_MAJOR, 'N', 'N', (lapack_int)t, (lapack_int)d, B, (lapack_int)d, s, NULL, 1,
                                  NULL, 1, sup);
        if (info != 0) st = tp_err(TP_ERR_INTERNAL, "local PCA: dgesvd for the principal angles failed (info %d)", (int)info);
    }
    if (st == TP_OK) {
        /* The j-th largest angle has the j-th smallest cosine and the j-th largest sine:
         * acos where the angle is large, asin where it is small (acos loses ~1e-8 rad
         * near 0). */
        double sum = 0;
        for (int64_t j = 0; j < t; j++) {
            double cj = c[t - 1 - j], sj = s[j];
            cj = cj < 1 ? (cj > 0 ? cj : 0) : 1;
            sj = sj < 1 ? (sj > 0 ? sj : 0) : 1;
            sum += cj * cj >= 0.5 ? asin(sj) : acos(cj);
        }
        *theta = sum / (double)t;
    }
    free(M), free(c), free(s), free(sup), free(B);
    return st;
}

static int64_t sort_unique(int64_t *v, int64_t n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_i64);
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++)
        if (m == 0 || v[i] != v[m - 1]) v[m++] = v[i];
    return m;
}

/* Neighbourhood (centre + its k neighbours) as f64 rows. */
static void load_hood(const float *rows, const int64_t *u, int64_t nu, int64_t d, int64_t centre,
                      const int64_t *nbr, int64_t k, double *pts)
{
    for (int64_t r = 0; r <= k; r++) {
        int64_t g = r == 0 ? centre : nbr[r - 1];
        const float *src = rows + (size_t)knn_lower_bound(u, nu, g) * (size_t)d;
        for (int64_t j = 0; j < d; j++) pts[r * d + j] = src[j];
    }
}

tp_status local_geometry_estimate(const float *rows, int64_t n_local, int64_t d, MPI_Comm comm,
                                  const local_geometry_options *opt, local_geometry_result *out)
{
    memset(out, 0, sizeof *out);
    tp_status st = TP_OK;
    if (!opt) st = tp_err(TP_ERR_CONFIG, "local geometry: no options given");
    else if (opt->k < 2 || opt->k > KNN_MAX_K)
        st = tp_err(TP_ERR_RANGE, "local geometry: k = %lld neighbours; need 2 to %d", (long long)opt->k, KNN_MAX_K);
    else if (!(opt->var_threshold > 0 && opt->var_threshold <= 1))
        st = tp_err(TP_ERR_RANGE, "local geometry: variance threshold %g is not in (0, 1]", opt->var_threshold);
    else if (d <= 0 || opt->sample < 0)
        st = tp_err(TP_ERR_RANGE, "local geometry: d = %lld, sample = %lld", (long long)d, (long long)opt->sample);
    TP_CHECK(dist_agree(comm, st, "local geometry"));

    int rank, size;
    MPI_CHECK(MPI_Comm_rank(comm, &rank));
    MPI_CHECK(MPI_Comm_size(comm, &size));
    int64_t row0 = 0, n = 0;
    TP_CHECK(knn_row_offset(n_local, comm, &row0, &n));
    const int64_t k = opt->k;
    if (n <= k + 1)
        return tp_err(TP_ERR_RANGE, "local geometry: %lld rows in all; k = %lld neighbours needs at least %lld",
                      (long long)n, (long long)k, (long long)k + 2);
    const int64_t m = opt->sample == 0 || opt->sample > n ? n : opt->sample, kp = k + 1;
    out->n = n, out->n_sample = m, out->k = k;

    out->sample_index = tp_malloc((size_t)m * sizeof *out->sample_index);
    out->local_dim = tp_malloc((size_t)m * sizeof *out->local_dim);
    out->angle_deg = tp_malloc((size_t)m * sizeof *out->angle_deg);
    out->nn_dist = tp_malloc((size_t)m * sizeof *out->nn_dist);
    out->dim_histogram = tp_calloc((size_t)(k + 2), sizeof *out->dim_histogram);
    float *q = tp_malloc((size_t)(m * d) * sizeof *q);
    double *dist = tp_malloc((size_t)(m * k) * sizeof *dist), *dist_y = tp_malloc((size_t)(m * k) * sizeof *dist_y);
    int64_t *idx = tp_malloc((size_t)(m * k) * sizeof *idx), *idx_y = tp_malloc((size_t)(m * k) * sizeof *idx_y);
    int64_t *ys = tp_malloc((size_t)m * sizeof *ys), *u = tp_malloc((size_t)(CHUNK * 2 * kp) * sizeof *u);
    double *res = tp_calloc((size_t)(3 * m), sizeof *res);
    float *hood = tp_malloc((size_t)(CHUNK * 2 * kp * d) * sizeof *hood);
    double *px = tp_malloc((size_t)(kp * d) * sizeof *px), *py = tp_malloc((size_t)(kp * d) * sizeof *py);
    double *Ux = tp_malloc((size_t)(kp * d) * sizeof *Ux), *Uy = tp_malloc((size_t)(kp * d) * sizeof *Uy);
    double *lam = tp_malloc((size_t)kp * sizeof *lam);
    st = out->sample_index && out->local_dim && out->angle_deg && out->nn_dist && out->dim_histogram && q && dist &&
                 dist_y && idx && idx_y && ys && u && res && hood && px && py && Ux && Uy && lam
             ? TP_OK : TP_ERR_NOMEM;
    if (st == TP_OK) st = tp_sample_indices(n, m, opt->seed, out->sample_index);
    if ((st = dist_agree(comm, st, "local geometry")) != TP_OK) goto done;

    /* Neighbours of the sampled points, then of each one's nearest neighbour y. */
    st = knn_gather_rows(rows, n_local, row0, (size_t)d * sizeof(float), out->sample_index, m, -1, comm, q);
    if (st == TP_OK) st = knn_distributed(q, m, d, rows, n_local, row0, k, out->sample_index, comm, dist, idx);
    if (st != TP_OK) goto done;
    {
        /* y rows in sample order: gather the sorted unique set, then place them. */
        int64_t *yu = tp_malloc((size_t)m * sizeof *yu);
        float *yrows = tp_malloc((size_t)(m * d) * sizeof *yrows);
        st = yu && yrows ? TP_OK : TP_ERR_NOMEM;
        int64_t nyu = 0;
        if (st == TP_OK) {
            for (int64_t i = 0; i < m; i++) ys[i] = yu[i] = idx[i * k];
            nyu = sort_unique(yu, m);
        }
        if ((st = dist_agree(comm, st, "local geometry")) == TP_OK)
            st = knn_gather_rows(rows, n_local, row0, (size_t)d * sizeof(float), yu, nyu, -1, comm, yrows);
        if (st == TP_OK)
            for (int64_t i = m - 1; i >= 0; i--)
                memmove(q + i * d, yrows + knn_lower_bound(yu, nyu, ys[i]) * d, (size_t)d * sizeof *q);
        free(yu), free(yrows);
        if (st == TP_OK) st = knn_distributed(q, m, d, rows, n_local, row0, k, ys, comm, dist_y, idx_y);
        if (st != TP_OK) goto done;
    }

    /* Local PCAs, a chunk of sampled points at a time. */
    for (int64_t c0 = 0; c0 < m; c0 += CHUNK) {
        int64_t c1 = c0 + CHUNK < m ? c0 + CHUNK : m, nu = 0;
        for (int64_t i = c0; i < c1; i++) {
            u[nu++] = out->sample_index[i];
            for (int64_t j = 0; j < k; j++) u[nu++] = idx[i * k + j];
            u[nu++] = ys[i];
            for (int64_t j = 0; j < k; j++) u[nu++] = idx_y[i * k + j];
        }
        nu = sort_unique(u, nu);
        st = knn_gather_rows(rows, n_local, row0, (size_t)d * sizeof(float), u, nu, -1, comm, hood);
        if (st != TP_OK) goto done;
        tp_status lst = TP_OK;
        for (int64_t i = c0; i < c1 && lst == TP_OK; i++) {
            if (i % size != rank) continue;
            int64_t ldx = 0, ldy = 0;
            load_hood(hood, u, nu, d, out->sample_index[i], idx + i * k, k, px);
            lst = local_pca(px, kp, d, opt->var_threshold, kp, lam, Ux, &ldx);
            if (lst != TP_OK) break;
            load_hood(hood, u, nu, d, ys[i], idx_y + i * k, k, py);
            lst = local_pca(py, kp, d, opt->var_threshold, kp, lam, Uy, &ldy);
            if (lst != TP_OK) break;
            res[i] = (double)ldx;
            int64_t t = ldx < ldy ? ldx : ldy;
            if (t > 0 && dist[i * k] > 0) {
                double th = 0;
                lst = local_mean_angle(Ux, Uy, t, d, &th);
                res[m + i] = th;
                res[2 * m + i] = 1;
            }
        }
        if ((st = dist_agree(comm, lst, "local geometry")) != TP_OK) goto done;
    }
    if ((st = dist_allreduce_sum_f64(comm, res, (size_t)(3 * m))) != TP_OK) goto done;

    /* Replicated from here: the same numbers on every rank. */
    double *turn = tp_malloc((size_t)m * sizeof *turn), *dimv = tp_malloc((size_t)m * sizeof *dimv);
    if (!turn || !dimv) { free(turn), free(dimv); st = TP_ERR_NOMEM; goto done; }
    for (int64_t i = 0; i < m; i++) {
        int32_t ld = (int32_t)res[i];
        out->local_dim[i] = ld;
        out->dim_histogram[ld <= kp ? ld : kp]++;
        dimv[i] = (double)ld;
        out->nn_dist[i] = dist[i * k];
        int has = res[2 * m + i] > 0.5;
        out->angle_deg[i] = has ? res[m + i] * 180.0 / M_PI : NAN;
        turn[i] = has ? res[m + i] / dist[i * k] : NAN;
        out->degenerate += !has;
    }
    summarise(dimv, m, &out->dim);
    summarise(out->angle_deg, m, &out->angle);
    summarise(turn, m, &out->turn_per_dist);
    free(turn), free(dimv);
done:
    free(q), free(dist), free(dist_y), free(idx), free(idx_y), free(ys), free(u), free(res), free(hood);
    free(px), free(py), free(Ux), free(Uy), free(lam);
    if (st != TP_OK) local_geometry_result_free(out);
    return st;
}
