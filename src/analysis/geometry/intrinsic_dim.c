#include "analysis/geometry/intrinsic_dim.h"

#include "analysis/geometry/knn.h"
#include "dist/mpi_check.h"
#include "dist/world.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

intrinsic_dim_options intrinsic_dim_options_default(void)
{
    intrinsic_dim_options o = {.sample = 10000, .seed = 0, .k = 20, .unbiased = 0, .twonn_discard = 0.1};
    return o;
}

void intrinsic_dim_result_free(intrinsic_dim_result *r)
{
    free(r->sample_index);
    free(r->mle_pointwise);
    memset(r, 0, sizeof *r);
}

tp_status intrinsic_dim_mle_from_knn(const double *dist, int64_t nq, int64_t ld, int64_t k, int unbiased,
                                     double *pointwise, double *mle, double *mle_mean, int64_t *dropped)
{
    if (k < 2 || (unbiased && k < 3) || k > ld)
        return tp_err(TP_ERR_RANGE, "intrinsic dim: MLE with k = %lld neighbours (of %lld found)%s", (long long)k,
                      (long long)ld, unbiased ? " unbiased; need k >= 3" : "; need k >= 2");
    const double kfac = (double)(unbiased ? k - 2 : k - 1);
    double inv_sum = 0, sum = 0;
    int64_t used = 0;
    for (int64_t i = 0; i < nq; i++) {
        const double *t = dist + (size_t)i * (size_t)ld;
        double m = NAN;
        if (t[0] > 0) {
            /* skdim: kfac / sum(log(R_k / R_j)), j over all k (the last term is 0) */
            double s = 0;
            for (int64_t j = 0; j < k; j++) s += log(t[k - 1] / t[j]);
            m = kfac / s;
            inv_sum += 1.0 / m;
            sum += m;
            used++;
        }
        if (pointwise) pointwise[i] = m;
    }
    *dropped = nq - used;
    if (used < 2)
        return tp_err(TP_ERR_RANGE, "intrinsic dim: MLE has %lld points with distinct neighbours; need 2",
                      (long long)used);
    *mle = 1.0 / (inv_sum / (double)used);   /* MacKay & Ghahramani 2005 */
    *mle_mean = sum / (double)used;
    return TP_OK;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

tp_status intrinsic_dim_twonn_from_knn(const double *dist, int64_t nq, int64_t ld, double discard,
                                       double *twonn, int64_t *used, int64_t *dropped)
{
    if (ld < 2) return tp_err(TP_ERR_RANGE, "intrinsic dim: TwoNN needs 2 neighbours per point, have %lld", (long long)ld);
    if (!(discard >= 0 && discard < 1))
        return tp_err(TP_ERR_RANGE, "intrinsic dim: TwoNN discard fraction %g is not in [0, 1)", discard);
    double *mu = tp_malloc((nq > 0 ? (size_t)nq : 1) * sizeof *mu);
    if (!mu) return TP_ERR_NOMEM;
    int64_t n = 0;
    for (int64_t i = 0; i < nq; i++) {
        double r1 = dist[(size_t)i * (size_t)ld], r2 = dist[(size_t)i * (size_t)ld + 1];
        double m = r2 / r1;
        if (isfinite(m)) mu[n++] = m;   /* r1 = 0: duplicates, dropped as skdim does */
    }
    *dropped = nq - n;
    /* skdim: n_keep = int(N * (1 - discard_fraction)), the same IEEE operations */
    int64_t keep = (int64_t)((double)n * (1.0 - discard));
    *used = keep;
    if (keep < 2) {
        free(mu);
        return tp_err(TP_ERR_RANGE, "intrinsic dim: TwoNN keeps %lld of %lld ratios; need 2", (long long)keep,
                      (long long)n);
    }
    qsort(mu, (size_t)n, sizeof *mu, cmp_double);
    /* Facco et al. 2017: −log(1 − F(μ)) = d·log μ, F the empirical CDF i/N;
     * least squares through the origin. */
    double sxy = 0, sxx = 0;
    for (int64_t i = 0; i < keep; i++) {
        double x = log(mu[i]), y = -log(1.0 - (double)(i + 1) / (double)n);
        sxy += x * y;
        sxx += x * x;
    }
    free(mu);
    *twonn = sxy / sxx;
    return TP_OK;
}

tp_status intrinsic_dim_estimate(const float *rows, int64_t n_local, int64_t d, MPI_Comm comm,
                                 const intrinsic_dim_options *opt, intrinsic_dim_result *out)
{
    memset(out, 0, sizeof *out);
    tp_status st = TP_OK;
    if (!opt) st = tp_err(TP_ERR_CONFIG, "intrinsic dim: no options given");
    else if (opt->k < 2 || (opt->unbiased && opt->k < 3) || opt->k > KNN_MAX_K)
        st = tp_err(TP_ERR_RANGE, "intrinsic dim: k = %lld neighbours; need %d to %d", (long long)opt->k,
                    opt->unbiased ? 3 : 2, KNN_MAX_K);
    else if (d <= 0) st = tp_err(TP_ERR_RANGE, "intrinsic dim: d = %lld columns", (long long)d);
    else if (opt->sample < 0) st = tp_err(TP_ERR_RANGE, "intrinsic dim: sample = %lld", (long long)opt->sample);
    else if (!(opt->twonn_discard >= 0 && opt->twonn_discard < 1))
        st = tp_err(TP_ERR_RANGE, "intrinsic dim: TwoNN discard fraction %g is not in [0, 1)", opt->twonn_discard);
    TP_CHECK(dist_agree(comm, st, "intrinsic dim"));

    int64_t row0 = 0, n = 0;
    TP_CHECK(knn_row_offset(n_local, comm, &row0, &n));
    if (n <= opt->k)
        return tp_err(TP_ERR_RANGE, "intrinsic dim: %lld rows in all; k = %lld neighbours needs at least %lld",
                      (long long)n, (long long)opt->k, (long long)opt->k + 1);
    const int64_t m = opt->sample == 0 || opt->sample > n ? n : opt->sample, k = opt->k;
    out->n = n, out->n_sample = m, out->k = k;
    out->sample_index = tp_malloc((size_t)m * sizeof *out->sample_index);
    out->mle_pointwise = tp_malloc((size_t)m * sizeof *out->mle_pointwise);
    float *queries = tp_malloc((size_t)m * (size_t)d * sizeof *queries);
    double *dist = tp_malloc((size_t)m * (size_t)k * sizeof *dist);
    int64_t *idx = tp_malloc((size_t)m * (size_t)k * sizeof *idx);
    st = out->sample_index && out->mle_pointwise && queries && dist && idx ? TP_OK : TP_ERR_NOMEM;
    if (st == TP_OK) st = tp_sample_indices(n, m, opt->seed, out->sample_index);
    if ((st = dist_agree(comm, st, "intrinsic dim")) != TP_OK) goto done;
    st = knn_gather_rows(rows, n_local, row0, (size_t)d * sizeof(float), out->sample_index, m, -1, comm, queries);
    if (st != TP_OK) goto done;
    st = knn_distributed(queries, m, d, rows, n_local, row0, k, out->sample_index, comm, dist, idx);
    if (st != TP_OK) goto done;
    /* Same replicated inputs on every rank: the rest is identical everywhere. */
    st = intrinsic_dim_mle_from_knn(dist, m, k, k, opt->unbiased, out->mle_pointwise, &out->mle, &out->mle_mean,
                                    &out->mle_dropped);
    if (st == TP_OK)
        st = intrinsic_dim_twonn_from_knn(dist, m, k, opt->twonn_discard, &out->twonn, &out->twonn_used,
                                          &out->twonn_dropped);
done:
    free(queries), free(dist), free(idx);
    if (st != TP_OK) intrinsic_dim_result_free(out);
    return st;
}
