#include "analysis/geometry/pca.h"

#include "backend/backend.h"   /* be_syrk_f64, be_syrk_f32, be_syr_f64 */
#include "dist/mpi_check.h"
#include "dist/world.h"

#include <lapacke.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* MPI counts are int: long buffers go in pieces. */

struct pca_accum {
    tp_backend *be;   /* the Gram products (backend_cpu(): the arrays below are host memory) */
    pca_gram prec;
    int64_t d, n;
    double *shift;    /* [d] f64: the first row added; f32: the f32-rounded mean of the
                         first block's rows. Sums are taken about it */
    double *sum;      /* [d] Σ (x − shift) */
    double *gram;     /* [d, d] upper triangle (row-major) of Σ (x − shift)(x − shift)ᵀ */
    double *block;    /* f64: [PCA_BLOCK_ROWS, d] scratch */
    float *block32;   /* f32: [PCA_F32_BLOCK_ROWS, d] rows − shift not multiplied yet */
    float *gram32;    /* f32: [d, d] upper, the block products not yet added into gram */
    int64_t pending;  /* rows in block32 */
    bool shift_set;   /* f32: the first block has been seen (until then block32 holds x) */
    int64_t unfolded; /* rows in gram32 */
};

pca_options pca_options_default(void)
{
    pca_options o = {.method = PCA_METHOD_COV, .gram = PCA_GRAM_F64, .k = 0, .nb = BLACS_DEFAULT_NB, .grid = NULL};
    return o;
}

/* Names of the enum values, in enum order. */
static const char *const method_names[] = {"cov", "svd"}, *const gram_names[] = {"f64", "f32"};

/* The index of s among names[0..2), or a TP_ERR_CONFIG naming the key and value. */
static tp_status parse_one_of_two(const char *key, const char *s, const char *const names[2], int *out)
{
    for (int i = 0; i < 2; i++)
        if (s && strcmp(s, names[i]) == 0) return *out = i, TP_OK;
    return tp_err(TP_ERR_CONFIG, "%s: '%s' is not one of %s, %s", key, s ? s : "(null)", names[0], names[1]);
}

tp_status pca_method_parse(const char *s, pca_method *out)
{
    int i = 0;
    TP_CHECK(parse_one_of_two("geometry.pca.method", s, method_names, &i));
    *out = (pca_method)i;
    return TP_OK;
}

tp_status pca_gram_parse(const char *s, pca_gram *out)
{
    int i = 0;
    TP_CHECK(parse_one_of_two("geometry.pca.gram", s, gram_names, &i));
    *out = (pca_gram)i;
    return TP_OK;
}

const char *pca_method_name(pca_method m) { return method_names[m == PCA_METHOD_SVD]; }
const char *pca_gram_name(pca_gram g) { return gram_names[g == PCA_GRAM_F32]; }

void pca_result_free(pca_result *r)
{
    free(r->mean);
    free(r->eigenvalues);
    free(r->explained_variance_ratio);
    free(r->components);
    memset(r, 0, sizeof *r);
}

/* Same options and d everywhere, k in range, d > 0. Every rank checks the same
 * values, but d and k come from each caller, so the check is agreed on. */
static tp_status check_inputs(MPI_Comm comm, int64_t d, const pca_options *opt)
{
    tp_status st = TP_OK;
    if (!opt) st = tp_err(TP_ERR_CONFIG, "pca: no options given");
    else if (d <= 0) st = tp_err(TP_ERR_RANGE, "pca: d = %lld columns; need at least 1", (long long)d);
    else if (d > INT_MAX / 2) st = tp_err(TP_ERR_RANGE, "pca: d = %lld is too large for ScaLAPACK", (long long)d);
    else if (opt->k < 0 || opt->k > d)
        st = tp_err(TP_ERR_RANGE, "pca: k = %lld components asked for, but d = %lld", (long long)opt->k,
                    (long long)d);
    else if (opt->method != PCA_METHOD_COV && opt->method != PCA_METHOD_SVD)
        st = tp_err(TP_ERR_CONFIG, "pca: unknown method %d", (int)opt->method);
    else if (opt->gram != PCA_GRAM_F64 && opt->gram != PCA_GRAM_F32)
        st = tp_err(TP_ERR_CONFIG, "pca: unknown Gram precision %d", (int)opt->gram);
    else if (opt->grid && opt->grid->comm != comm) {
        int cmp = MPI_UNEQUAL;
        MPI_Comm_compare(opt->grid->comm, comm, &cmp);
        if (cmp != MPI_IDENT && cmp != MPI_CONGRUENT)
            st = tp_err(TP_ERR_CONFIG, "pca: the BLACS grid was made over another communicator");
    }
    TP_CHECK(dist_agree(comm, st, "pca"));
    int64_t dm[2] = {d, -d}, dr[2];
    MPI_CHECK(MPI_Allreduce(dm, dr, 2, MPI_INT64_T, MPI_MAX, comm));
    if (dr[0] != -dr[1])
        return tp_err(TP_ERR_RANGE, "pca: ranks disagree on d (%lld to %lld)", (long long)-dr[1],
                      (long long)dr[0]);
    return TP_OK;
}

static tp_status result_alloc(pca_result *r, pca_method m, int64_t n, int64_t d, int64_t k)
{
    memset(r, 0, sizeof *r);
    r->method = m;
    r->n = n, r->d = d, r->k = k;
    r->mean = tp_calloc((size_t)d, sizeof(double));
    r->eigenvalues = tp_calloc((size_t)d, sizeof(double));
    r->explained_variance_ratio = tp_calloc((size_t)d, sizeof(double));
    r->components = tp_calloc((size_t)(k > 0 ? k : 1) * (size_t)d, sizeof(double));
    if (!r->mean || !r->eigenvalues || !r->explained_variance_ratio || !r->components) {
        pca_result_free(r);
        return TP_ERR_NOMEM;
    }
    return TP_OK;
}

/* ---- summary ------------------------------------------------------------------- */

static int64_t dim_at(const double *ratio, int64_t d, double threshold)
{
    double cum = 0;
    for (int64_t i = 0; i < d; i++) {
        cum += ratio[i];
        if (cum >= threshold) return i + 1;
    }
    return d;   /* rounding kept the total just under the threshold */
}

void pca_summarise(pca_result *r)
{
    int64_t d = r->d;
    double total = 0, pos = 0, pos2 = 0;
    for (int64_t i = 0; i < d; i++) {
        double l = r->eigenvalues[i];
        total += l;
        if (l > 0) pos += l, pos2 += l * l;
    }
    r->total_variance = total;
    for (int64_t i = 0; i < d; i++)
        r->explained_variance_ratio[i] = total > 0 ? r->eigenvalues[i] / total : 0;
    r->intrinsic_dim_90 = dim_at(r->explained_variance_ratio, d, 0.90);
    r->intrinsic_dim_95 = dim_at(r->explained_variance_ratio, d, 0.95);
    r->intrinsic_dim_99 = dim_at(r->explained_variance_ratio, d, 0.99);
    r->participation_ratio = pos2 > 0 ? pos * pos / pos2 : 0;
    /* Effective rank: Roy & Vetterli 2007, exp of the Shannon entropy of λ/Σλ. */
    double h = 0;
    for (int64_t i = 0; i < d && pos > 0; i++) {
        double l = r->eigenvalues[i];
        if (l > 0) {
            double p = l / pos;
            h -= p * log(p);
        }
    }
    r->effective_rank = pos > 0 ? exp(h) : 0;
}

/* Each component's entry of largest |value| (first on a tie) made positive. */
static void fix_signs(double *comp, int64_t k, int64_t d)
{
    for (int64_t c = 0; c < k; c++) {
        double *v = comp + (size_t)c * (size_t)d;
        int64_t best = 0;
        for (int64_t j = 1; j < d; j++)
            if (fabs(v[j]) > fabs(v[best])) best = j;
        if (v[best] < 0)
            for (int64_t j = 0; j < d; j++) v[j] = -v[j];
    }
}

/* ScaLAPACK can fail without saying so (a sub-call's error is only printed): the
 * components must come back as unit vectors. 1e-8 is far above the rounding of a
 * norm (~d·eps) and far below any real failure (zeros, garbage). */
static tp_status check_unit_rows(const double *comp, int64_t k, int64_t d, const char *routine)
{
    for (int64_t c = 0; c < k; c++) {
        double s = 0;
        for (int64_t j = 0; j < d; j++) s += comp[c * d + j] * comp[c * d + j];
        if (!(fabs(sqrt(s) - 1) <= 1e-8))
            return tp_err(TP_ERR_INTERNAL, "%s returned component %lld of norm %.3g instead of 1", routine,
                          (long long)c, sqrt(s));
    }
    return TP_OK;
}

/* ---- accumulation (cov) -------------------------------------------------------- */

tp_status pca_accum_init(int64_t d, pca_gram gram, pca_accum **out)
{
    *out = NULL;
    if (d <= 0) return tp_err(TP_ERR_RANGE, "pca: d = %lld columns; need at least 1", (long long)d);
    if (d > INT_MAX / 2) return tp_err(TP_ERR_RANGE, "pca: d = %lld is too large", (long long)d);
    if (gram != PCA_GRAM_F64 && gram != PCA_GRAM_F32)
        return tp_err(TP_ERR_CONFIG, "pca: unknown Gram precision %d", (int)gram);
    pca_accum *a = tp_calloc(1, sizeof *a);
    if (!a) return TP_ERR_NOMEM;
    a->be = backend_cpu();
    a->prec = gram;
    a->d = d;
    const size_t dd = (size_t)d;
    a->shift = tp_calloc(dd, sizeof(double));
    a->sum = tp_calloc(dd, sizeof(double));
    a->gram = tp_calloc(dd * dd, sizeof(double));
    bool ok = a->shift && a->sum && a->gram;
    if (gram == PCA_GRAM_F32) {
        a->block32 = tp_malloc((size_t)PCA_F32_BLOCK_ROWS * dd * sizeof(float));
        a->gram32 = tp_calloc(dd * dd, sizeof(float));
        ok = ok && a->block32 && a->gram32;
    } else {
        a->block = tp_malloc((size_t)PCA_BLOCK_ROWS * dd * sizeof(double));
        ok = ok && a->block;
    }
    if (!ok) {
        pca_accum_free(a);
        return TP_ERR_NOMEM;
    }
    *out = a;
    return TP_OK;
}

void pca_accum_free(pca_accum *a)
{
    if (!a) return;
    free(a->shift);
    free(a->sum);
    free(a->gram);
    free(a->block);
    free(a->block32);
    free(a->gram32);
    free(a);
}

/* f32: gram (f64) += gram32, the upper triangles; gram32 starts again. */
static void fold_f32(pca_accum *a)
{
    const size_t d = (size_t)a->d;
    for (size_t i = 0; i < d; i++) {
        double *restrict g = a->gram + i * d;
        const float *restrict h = a->gram32 + i * d;
        for (size_t j = i; j < d; j++) g[j] += h[j];
    }
    a->unfolded = 0;
}

/* f32: gram32 += the pending block's product; folded every PCA_F32_SUM_ROWS rows. */
static tp_status multiply_f32(pca_accum *a)
{
    if (a->pending == 0) return TP_OK;
    const int64_t d = a->d;
    TP_CHECK(be_syrk_f32(a->be, TP_TRANS, d, a->pending, 1.0f, a->block32, d, a->unfolded ? 1.0f : 0.0f,
                         a->gram32, d));
    a->unfolded += a->pending;
    a->pending = 0;
    if (a->unfolded >= PCA_F32_SUM_ROWS) fold_f32(a);
    return TP_OK;
}

/* y = x − shift for n rows (y may be x), and Σ (x − shift) into sum. The shift is
 * an f32, so the f64 difference is exact and y its one rounding to f32; the sums
 * take the exact one, which keeps the mean as exact as the f64 path's. */
static void shift_rows_f32(pca_accum *a, const float *x, float *y, int64_t n)
{
    const size_t d = (size_t)a->d;
    const double *restrict shift = a->shift;
    double *restrict sum = a->sum;
    for (size_t i = 0; i < (size_t)n * d; i += d)
        for (size_t j = 0; j < d; j++) {
            double v = (double)x[i + j] - shift[j];
            sum[j] += v;
            y[i + j] = (float)v;
        }
}

/* The shift: the mean of the first block's rows (held unshifted until now), rounded
 * to f32 (see shift_rows_f32), so that x − shift is small.
 * Taken from the first block whatever the calls were, so the result does not
 * depend on how the caller split its rows. */
static void set_shift_f32(pca_accum *a)
{
    const size_t d = (size_t)a->d;
    double *restrict sum = a->sum;
    for (int64_t r = 0; r < a->pending; r++)
        for (size_t j = 0; j < d; j++) sum[j] += a->block32[(size_t)r * d + j];
    for (size_t j = 0; j < d; j++) {
        a->shift[j] = (float)(sum[j] / (double)a->pending);
        sum[j] = 0;
    }
    a->shift_set = true;
    shift_rows_f32(a, a->block32, a->block32, a->pending);
}

/* f32: the pending rows (shifted; the first block gets the shift now) into gram32. */
static tp_status flush_block_f32(pca_accum *a)
{
    if (!a->shift_set && a->pending > 0) set_shift_f32(a);
    return multiply_f32(a);
}

static tp_status add_f32(pca_accum *a, const float *rows, int64_t n)
{
    const size_t d = (size_t)a->d;
    for (int64_t r = 0; r < n;) {
        int64_t m = PCA_F32_BLOCK_ROWS - a->pending;
        if (m > n - r) m = n - r;
        float *y = a->block32 + (size_t)a->pending * d;
        if (a->shift_set) shift_rows_f32(a, rows + (size_t)r * d, y, m);
        else memcpy(y, rows + (size_t)r * d, (size_t)m * d * sizeof(float));
        a->pending += m, r += m;
        if (a->pending == PCA_F32_BLOCK_ROWS) TP_CHECK(flush_block_f32(a));
    }
    a->n += n;
    return TP_OK;
}

tp_status pca_accum_add(pca_accum *a, const float *rows, int64_t n)
{
    if (n < 0) return tp_err(TP_ERR_RANGE, "pca: %lld rows added", (long long)n);
    if (n == 0) return TP_OK;
    if (!rows) return tp_err(TP_ERR_RANGE, "pca: %lld rows added from a NULL pointer", (long long)n);
    if (a->prec == PCA_GRAM_F32) return add_f32(a, rows, n);
    const size_t d = (size_t)a->d;
    if (a->n == 0)
        for (size_t j = 0; j < d; j++) a->shift[j] = rows[j];
    const double *restrict shift = a->shift;
    double *restrict sum = a->sum;
    for (int64_t r0 = 0; r0 < n; r0 += PCA_BLOCK_ROWS) {
        int64_t nb = n - r0 < PCA_BLOCK_ROWS ? n - r0 : PCA_BLOCK_ROWS;
        for (int64_t r = 0; r < nb; r++) {
            const float *restrict x = rows + (size_t)(r0 + r) * d;
            double *restrict y = a->block + (size_t)r * d;
            for (size_t j = 0; j < d; j++) y[j] = (double)x[j] - shift[j];
            for (size_t j = 0; j < d; j++) sum[j] += y[j];
        }
        /* gram (upper) += blockᵀ · block */
        TP_CHECK(be_syrk_f64(a->be, TP_TRANS, (int64_t)d, nb, 1.0, a->block, (int64_t)d, 1.0, a->gram, (int64_t)d));
    }
    a->n += n;
    return TP_OK;
}

/* ---- eigendecomposition on the grid -------------------------------------------- */

/* Grid from the options or a near-square one over comm. */
static tp_status grid_get(MPI_Comm comm, const pca_options *opt, blacs_grid *own, const blacs_grid **g)
{
    if (opt->grid) {
        *g = opt->grid;
        return TP_OK;
    }
    TP_CHECK(blacs_grid_init(comm, opt->nb, own));
    *g = own;
    return TP_OK;
}

/* Every rank ends with the same verdict on a ScaLAPACK call whose info each grid
 * rank holds (ranks outside the grid pass 0). */
static tp_status agree_info(MPI_Comm comm, const char *routine, int info)
{
    int lo = info, hi = info;
    MPI_CHECK(MPI_Allreduce(&info, &lo, 1, MPI_INT, MPI_MIN, comm));
    MPI_CHECK(MPI_Allreduce(&info, &hi, 1, MPI_INT, MPI_MAX, comm));
    if (lo == 0 && hi == 0) return TP_OK;
    int bad = lo != 0 ? lo : hi;
    if (bad < 0)
        return tp_err(TP_ERR_INTERNAL, "%s: argument %d had an illegal value (info %d)", routine, -bad, bad);
    return tp_err(TP_ERR_INTERNAL, "%s failed to converge (info %d)", routine, bad);
}

/* cov: d × d symmetric matrix replicated on every rank → eigenvalues (descending)
 * and the top k eigenvectors as rows of r->components. */
static tp_status eig_distributed(const blacs_grid *g, const double *cov, pca_result *r)
{
    const int d = (int)r->d, k = (int)r->k;
    blacs_matrix A, Z;
    tp_status st = blacs_matrix_init(g, d, d, &A);
    if (st == TP_OK) st = blacs_matrix_init(g, d, d, &Z);
    TP_CHECK(dist_agree(g->comm, st, "pca"));
    double *a = NULL, *z = NULL, *w = NULL, *work = NULL, *cols = NULL;
    int *iwork = NULL;
    int info = 0;
    a = tp_malloc(blacs_matrix_local_size(&A) * sizeof(double));
    z = tp_malloc(blacs_matrix_local_size(&Z) * sizeof(double));
    w = tp_calloc((size_t)d, sizeof(double));
    cols = tp_malloc((size_t)d * (size_t)(k > 0 ? k : 1) * sizeof(double));
    st = a && z && w && cols ? TP_OK : TP_ERR_NOMEM;
    if (st == TP_OK && g->in_grid) {
        blacs_scatter_replicated(g, &A, cov, a);
        int one = 1, query = -1, liwork = 0;
        double wq = 0;
        pdsyevd_("V", "U", &d, a, &one, &one, A.desc, w, z, &one, &one, Z.desc, &wq, &query, &liwork,
                 &query, &info, 1, 1);
        if (info == 0) {
            /* pdsyevd's query leaves out what its final PDORMTR needs
             * (max(nb(nb−1)/2, (NP+NQ)·nb) + nb², after 2N entries of its own), and
             * ignores PDORMTR's error: with nb ≳ n the eigenvectors come back as
             * zeros. Ask for the larger of the two, plus slack. */
            double nbd = g->nb, np = Z.mloc, nq = Z.nloc;
            double ormtr = 2.0 * d + fmax(nbd * (nbd - 1) / 2, (np + nq) * nbd) + nbd * nbd;
            double lw = fmax(wq, ormtr) * 1.01 + 1024;
            if (lw > INT_MAX) st = tp_err(TP_ERR_RANGE, "pdsyevd: workspace of %.0f doubles is too large", lw);
            int lwork = (int)lw;
            liwork = liwork + 64;
            if (st == TP_OK) {
                work = tp_malloc((size_t)lwork * sizeof(double));
                iwork = tp_malloc((size_t)liwork * sizeof(int));
                if (!work || !iwork) st = TP_ERR_NOMEM;
            }
            if (st == TP_OK)
                pdsyevd_("V", "U", &d, a, &one, &one, A.desc, w, z, &one, &one, Z.desc, work, &lwork,
                         iwork, &liwork, &info, 1, 1);
        }
    }
    st = dist_agree(g->comm, st, "pca");
    if (st == TP_OK) st = agree_info(g->comm, "pdsyevd", info);
    /* pdsyevd returns eigenvalues ascending, on every grid rank; (0, 0) sends them. */
    if (st == TP_OK && MPI_Bcast(w, d, MPI_DOUBLE, g->rank_of[0], g->comm) != MPI_SUCCESS)
        st = tp_err(TP_ERR_MPI, "pca: MPI_Bcast of the eigenvalues failed");
    if (st == TP_OK && k > 0) st = blacs_gather_replicated(g, &Z, z, 0, d, d - k, k, cols);
    if (st == TP_OK) {
        for (int i = 0; i < d; i++) r->eigenvalues[i] = w[d - 1 - i];
        for (int c = 0; c < k; c++)
            memcpy(r->components + (size_t)c * d, cols + (size_t)(k - 1 - c) * d, (size_t)d * sizeof(double));
        st = check_unit_rows(r->components, k, d, "pdsyevd");
    }
    free(a), free(z), free(w), free(work), free(iwork), free(cols);
    return st;
}

/* One rank and no grid asked for: LAPACK's dsyevd on the replicated covariance
 * (0.77 s against pdsyevd's 0.92 s at d = 2048 here, BENCHMARKS.md). */
static tp_status eig_local(double *cov, pca_result *r)
{
    const int64_t d = r->d, k = r->k;
    double *w = tp_malloc((size_t)d * sizeof *w);
    if (!w) return TP_ERR_NOMEM;
    /* The matrix is symmetric: read it as column-major, so LAPACKE transposes nothing. */
    lapack_int info = LAPACKE_dsyevd(LAPACK_COL_MAJOR, 'V', 'U', (lapack_int)d, cov, (lapack_int)d, w);
    tp_status st = TP_OK;
    if (info < 0) st = tp_err(TP_ERR_INTERNAL, "dsyevd: argument %d had an illegal value", (int)-info);
    else if (info > 0) st = tp_err(TP_ERR_INTERNAL, "dsyevd failed to converge (info %d)", (int)info);
    if (st == TP_OK) {
        /* ascending eigenvalues; eigenvector j is column j: contiguous at cov + j·d */
        for (int64_t i = 0; i < d; i++) r->eigenvalues[i] = w[d - 1 - i];
        for (int64_t c = 0; c < k; c++) memcpy(r->components + c * d, cov + (d - 1 - c) * d, (size_t)d * sizeof *cov);
        st = check_unit_rows(r->components, k, d, "dsyevd");
    }
    free(w);
    return st;
}

tp_status pca_accum_finish(pca_accum *acc, MPI_Comm comm, const pca_options *opt, pca_result *out)
{
    memset(out, 0, sizeof *out);
    TP_CHECK(check_inputs(comm, acc ? acc->d : 0, opt));
    const int64_t d = acc->d;
    const size_t dd = (size_t)d;
    if (acc->prec == PCA_GRAM_F32) {   /* the last rows into the f64 Gram */
        tp_status sf = flush_block_f32(acc);
        if (sf == TP_OK && acc->unfolded) fold_f32(acc);
        TP_CHECK(dist_agree(comm, sf, "pca"));
    }

    /* Global n and mean. */
    int64_t n = 0;
    MPI_CHECK(MPI_Allreduce(&acc->n, &n, 1, MPI_INT64_T, MPI_SUM, comm));
    if (n < 2)
        return tp_err(TP_ERR_RANGE, "pca: %lld rows in all; a covariance needs at least 2", (long long)n);
    tp_status st = result_alloc(out, PCA_METHOD_COV, n, d, opt->k);
    size_t npk = dd * (dd + 1) / 2;
    double *packed = st == TP_OK ? tp_calloc(npk, sizeof(double)) : NULL;
    double *delta = st == TP_OK ? tp_calloc(dd, sizeof(double)) : NULL;
    if (st == TP_OK && (!packed || !delta)) st = TP_ERR_NOMEM;
    st = dist_agree(comm, st, "pca");
    if (st != TP_OK) goto done;
    const double nr = (double)acc->n;
    for (size_t j = 0; j < dd; j++) out->mean[j] = acc->n ? nr * acc->shift[j] + acc->sum[j] : 0;
    if ((st = dist_allreduce_sum_f64(comm, out->mean, dd)) != TP_OK) goto done;
    for (size_t j = 0; j < dd; j++) out->mean[j] /= (double)n;

    /* This rank's sum of squares about the global mean, merged exactly as
     * Chan, Golub & LeVeque (1979): M2_r = G − S Sᵀ / n_r + n_r δ δᵀ, with
     * G, S the Gram matrix and sum about the shift and δ = μ_r − μ. */
    if (acc->n > 0) {
        for (size_t j = 0; j < dd; j++) delta[j] = acc->shift[j] + acc->sum[j] / nr - out->mean[j];
        st = be_syr_f64(acc->be, d, -1.0 / nr, acc->sum, acc->gram, d);
        if (st == TP_OK) st = be_syr_f64(acc->be, d, nr, delta, acc->gram, d);
        size_t p = 0;
        for (size_t i = 0; i < dd && st == TP_OK; i++)
            for (size_t j = i; j < dd; j++) packed[p++] = acc->gram[i * dd + j];
    }
    if ((st = dist_agree(comm, st, "pca")) != TP_OK) goto done;   /* before the collective */
    if ((st = dist_allreduce_sum_f64(comm, packed, npk)) != TP_OK) goto done;
    /* acc->gram becomes the full covariance (symmetric, so either storage order). */
    {
        double inv = 1.0 / (double)(n - 1);
        size_t p = 0;
        for (size_t i = 0; i < dd; i++)
            for (size_t j = i; j < dd; j++) {
                double v = packed[p++] * inv;
                acc->gram[i * dd + j] = v;
                acc->gram[j * dd + i] = v;
            }
        acc->n = 0;   /* the state is used up */
    }
    free(packed), packed = NULL;

    int size = 1;
    MPI_Comm_size(comm, &size);
    if (size == 1 && !opt->grid) {
        if ((st = eig_local(acc->gram, out)) != TP_OK) goto done;
    } else {
        blacs_grid own = {.ctxt = -1, .sys_handle = -1};
        const blacs_grid *g = NULL;
        st = dist_agree(comm, grid_get(comm, opt, &own, &g), "pca");
        if (st != TP_OK) goto done;
        st = eig_distributed(g, acc->gram, out);
        if (!opt->grid) blacs_grid_free(&own);
        if (st != TP_OK) goto done;
    }
    fix_signs(out->components, out->k, d);
    pca_summarise(out);
done:
    free(packed);
    free(delta);
    if (st != TP_OK) pca_result_free(out);
    return st;
}

/* ---- svd ----------------------------------------------------------------------- */

/* Local row index of global row gi on its process row. */
static int global_to_local(int gi, int nb, int nprocs) { return (gi / nb / nprocs) * nb + gi % nb; }
static int owner_of(int gi, int nb, int nprocs) { return (gi / nb) % nprocs; }

/* The centred rows of every rank, moved to the block-cyclic N × d layout of A. */
static tp_status redistribute_rows(const blacs_grid *g, const blacs_matrix *A, const float *rows,
                                   int64_t n_local, const int64_t *row0_of, const double *mean,
                                   double *local)
{
    MPI_Comm comm = g->comm;
    int size, rank;
    MPI_CHECK(MPI_Comm_size(comm, &size));
    MPI_CHECK(MPI_Comm_rank(comm, &rank));
    const int nb = g->nb, d = A->n;
    int *scount = tp_calloc((size_t)size, sizeof(int)), *sdisp = tp_calloc((size_t)size, sizeof(int));
    int *rcount = tp_calloc((size_t)size, sizeof(int)), *rdisp = tp_calloc((size_t)size, sizeof(int));
    int *ncols = tp_calloc((size_t)g->npcol, sizeof(int));
    double *sbuf = NULL, *rbuf = NULL;
    tp_status st = scount && sdisp && rcount && rdisp && ncols ? TP_OK : TP_ERR_NOMEM;
    int64_t stot = 0, rtot = 0;
    if (st == TP_OK) {
        for (int pc = 0; pc < g->npcol; pc++) ncols[pc] = blacs_numroc(d, nb, pc, g->npcol);
        int64_t *cnt64 = tp_calloc((size_t)size, sizeof(int64_t));
        if (!cnt64) {
            st = TP_ERR_NOMEM;
            goto counted;
        }
        for (int64_t r = 0; r < n_local; r++) {
            int pr = owner_of((int)(row0_of[rank] + r), nb, g->nprow);
            for (int pc = 0; pc < g->npcol; pc++) cnt64[g->rank_of[pr * g->npcol + pc]] += ncols[pc];
        }
        for (int s = 0; s < size; s++) {
            stot += cnt64[s];
            cnt64[s] = 0;
        }
        if (g->in_grid)
            for (int s = 0; s < size; s++)
                for (int64_t gi = row0_of[s]; gi < row0_of[s + 1]; gi++)
                    if (owner_of((int)gi, nb, g->nprow) == g->myrow) cnt64[s] += A->nloc;
        for (int s = 0; s < size; s++) rtot += cnt64[s];
        free(cnt64);
        if (stot > INT_MAX || rtot > INT_MAX)
            st = tp_err(TP_ERR_RANGE, "pca svd: %lld values per rank are too many to redistribute; use method cov",
                        (long long)(stot > rtot ? stot : rtot));
    }
counted:
    if (st == TP_OK) {
        sbuf = tp_malloc((size_t)(stot ? stot : 1) * sizeof(double));
        rbuf = tp_malloc((size_t)(rtot ? rtot : 1) * sizeof(double));
        if (!sbuf || !rbuf) st = TP_ERR_NOMEM;
    }
    st = dist_agree(comm, st, "pca");
    if (st != TP_OK) goto done;

    /* Pack per destination (r, c): my rows on process row r ascending, then the
     * columns of process column c ascending. The receiver walks the same order. */
    {
        int64_t pos = 0;
        for (int dst = 0; dst < size; dst++) {
            sdisp[dst] = (int)pos;
            int pr = -1, pc = -1;
            for (int i = 0; i < g->nprow * g->npcol; i++)
                if (g->rank_of[i] == dst) pr = i / g->npcol, pc = i % g->npcol;
            if (pr >= 0) {
                for (int64_t r = 0; r < n_local; r++) {
                    if (owner_of((int)(row0_of[rank] + r), nb, g->nprow) != pr) continue;
                    const float *x = rows + (size_t)r * (size_t)d;
                    for (int lj = 0; lj < ncols[pc]; lj++) {
                        int gj = blacs_local_to_global(lj, nb, pc, g->npcol);
                        sbuf[pos++] = (double)x[gj] - mean[gj];
                    }
                }
            }
            scount[dst] = (int)(pos - sdisp[dst]);
        }
        pos = 0;
        for (int s = 0; s < size; s++) {
            rdisp[s] = (int)pos;
            if (g->in_grid)
                for (int64_t gi = row0_of[s]; gi < row0_of[s + 1]; gi++)
                    if (owner_of((int)gi, nb, g->nprow) == g->myrow) pos += A->nloc;
            rcount[s] = (int)(pos - rdisp[s]);
        }
    }
    if (MPI_Alltoallv(sbuf, scount, sdisp, MPI_DOUBLE, rbuf, rcount, rdisp, MPI_DOUBLE, comm) != MPI_SUCCESS) {
        st = tp_err(TP_ERR_MPI, "pca svd: MPI_Alltoallv of the centred rows failed");
        goto done;
    }
    if (g->in_grid) {
        int64_t pos = 0;
        for (int s = 0; s < size; s++)
            for (int64_t gi = row0_of[s]; gi < row0_of[s + 1]; gi++) {
                if (owner_of((int)gi, nb, g->nprow) != g->myrow) continue;
                int li = global_to_local((int)gi, nb, g->nprow);
                for (int lj = 0; lj < A->nloc; lj++) local[(size_t)lj * A->lld + li] = rbuf[pos++];
            }
    }
done:
    free(scount), free(sdisp), free(rcount), free(rdisp), free(ncols), free(sbuf), free(rbuf);
    return st;
}

/* The SVD of a distributed n x d matrix A with n >= d, centred (its local part a is
 * overwritten): A = QR (pdgeqrf), R (d x d, upper triangular) gathered and
 * decomposed by dgesdd on rank 0 of comm. s_val gets the d singular values on every
 * rank, cols the first k right singular vectors as [d, k] column-major (cols[j*k+c],
 * as blacs_gather_replicated gives VT's first k rows). */
static tp_status svd_by_qr(const blacs_grid *g, const blacs_matrix *A, double *a, int64_t n, int64_t d, int64_t k,
                           double *s_val, double *cols, MPI_Comm comm)
{
    int rank, info = 0;
    MPI_CHECK(MPI_Comm_rank(comm, &rank));
    double *tau = tp_calloc((size_t)d, sizeof(double)), *work = NULL, *r = NULL, *vt = NULL;
    tp_status st = tau ? TP_OK : TP_ERR_NOMEM;
    if (st == TP_OK && g->in_grid) {
        int one = 1, query = -1, m = (int)n, nn = (int)d;
        double wq = 0;
        pdgeqrf_(&m, &nn, a, &one, &one, A->desc, tau, &wq, &query, &info);
        if (info == 0) {
            double lw = wq * 1.01 + 1024;
            if (lw > INT_MAX) st = tp_err(TP_ERR_RANGE, "pdgeqrf: workspace of %.0f doubles is too large", lw);
            int lwork = (int)lw;
            if (st == TP_OK && !(work = tp_malloc((size_t)lwork * sizeof(double)))) st = TP_ERR_NOMEM;
            if (st == TP_OK) pdgeqrf_(&m, &nn, a, &one, &one, A->desc, tau, work, &lwork, &info);
        }
    }
    free(work), free(tau);
    work = NULL;
    if ((st = dist_agree(comm, st, "pca")) != TP_OK) return st;
    TP_CHECK(agree_info(comm, "pdgeqrf", info));
    /* R: the upper triangle of A's first d rows (below it, Householder vectors) */
    r = tp_malloc((size_t)d * (size_t)d * sizeof(double));
    TP_CHECK(dist_agree(comm, r ? TP_OK : TP_ERR_NOMEM, "pca"));
    st = blacs_gather_replicated(g, A, a, 0, (int)d, 0, (int)d, r);
    if (st == TP_OK && rank == 0) {
        for (int64_t j = 0; j < d; j++)
            for (int64_t i = j + 1; i < d; i++) r[(size_t)j * (size_t)d + (size_t)i] = 0;
        vt = tp_malloc((size_t)d * (size_t)d * sizeof(double));
        if (!vt) st = TP_ERR_NOMEM;
        else {
            /* jobz 'O': U overwrites R (not used), VT returned */
            info = (int)LAPACKE_dgesdd(LAPACK_COL_MAJOR, k > 0 ? 'O' : 'N', (lapack_int)d, (lapack_int)d, r,
                                       (lapack_int)d, s_val, NULL, (lapack_int)d, vt, (lapack_int)d);
            if (info != 0) st = tp_err(TP_ERR_INTERNAL, "dgesdd of R (%lld x %lld) failed: info %d", (long long)d,
                                       (long long)d, info);
            for (int64_t c = 0; st == TP_OK && c < k; c++)
                for (int64_t j = 0; j < d; j++) cols[(size_t)j * (size_t)k + (size_t)c] = vt[(size_t)j * (size_t)d + (size_t)c];
        }
    }
    free(r), free(vt);
    TP_CHECK(dist_agree(comm, st, "pca svd"));
    if (MPI_Bcast(s_val, (int)d, MPI_DOUBLE, 0, comm) != MPI_SUCCESS ||
        (k > 0 && MPI_Bcast(cols, (int)(d * k), MPI_DOUBLE, 0, comm) != MPI_SUCCESS))
        return tp_err(TP_ERR_MPI, "pca svd: MPI_Bcast of the singular values and vectors failed");
    return TP_OK;
}

/* The same for n < d, by pdgesvd on A (U not computed; VT distributed, its first k
 * rows gathered into cols). */
static tp_status svd_by_pdgesvd(const blacs_grid *g, const blacs_matrix *A, double *a, int64_t n, int64_t d,
                                int64_t k, double *s_val, double *cols, MPI_Comm comm)
{
    const int64_t mn = n < d ? n : d;
    blacs_matrix VT;
    double *vt = NULL, *work = NULL, dummy_u = 0;
    int info = 0;
    tp_status st = blacs_matrix_init(g, (int)mn, (int)d, &VT);
    if (st == TP_OK && !(vt = tp_calloc(blacs_matrix_local_size(&VT), sizeof(double)))) st = TP_ERR_NOMEM;
    if (st == TP_OK && g->in_grid) {
        int one = 1, query = -1, m = (int)n, nn = (int)d;
        double wq = 0;
        /* JOBU = 'N': U is not referenced; VT's descriptor stands in for its own. */
        pdgesvd_("N", "V", &m, &nn, a, &one, &one, A->desc, s_val, &dummy_u, &one, &one, VT.desc, vt, &one,
                 &one, VT.desc, &wq, &query, &info, 1, 1);
        if (info == 0) {
            double lw = wq * 1.01 + 1024;   /* slack, as for pdsyevd */
            if (lw > INT_MAX) st = tp_err(TP_ERR_RANGE, "pdgesvd: workspace of %.0f doubles is too large", lw);
            int lwork = (int)lw;
            if (st == TP_OK && !(work = tp_malloc((size_t)lwork * sizeof(double)))) st = TP_ERR_NOMEM;
            if (st == TP_OK)
                pdgesvd_("N", "V", &m, &nn, a, &one, &one, A->desc, s_val, &dummy_u, &one, &one, VT.desc, vt,
                         &one, &one, VT.desc, work, &lwork, &info, 1, 1);
        }
    }
    free(work);
    if ((st = dist_agree(comm, st, "pca")) == TP_OK) st = agree_info(comm, "pdgesvd", info);
    if (st == TP_OK && MPI_Bcast(s_val, (int)mn, MPI_DOUBLE, g->rank_of[0], comm) != MPI_SUCCESS)
        st = tp_err(TP_ERR_MPI, "pca svd: MPI_Bcast of the singular values failed");
    if (st == TP_OK && k > 0) st = blacs_gather_replicated(g, &VT, vt, 0, (int)k, 0, (int)d, cols);
    free(vt);
    return st;
}

static tp_status fit_svd(const float *rows, int64_t n_local, int64_t d, MPI_Comm comm,
                         const pca_options *opt, pca_result *out)
{
    int size, rank;
    MPI_CHECK(MPI_Comm_size(comm, &size));
    MPI_CHECK(MPI_Comm_rank(comm, &rank));
    tp_status st = TP_OK;
    if (n_local < 0) st = tp_err(TP_ERR_RANGE, "pca: %lld rows on this rank", (long long)n_local);
    else if (n_local > 0 && !rows) st = tp_err(TP_ERR_RANGE, "pca: %lld rows from a NULL pointer", (long long)n_local);
    TP_CHECK(dist_agree(comm, st, "pca"));

    int64_t *row0_of = tp_calloc((size_t)size + 1, sizeof(int64_t));
    TP_CHECK(dist_agree(comm, row0_of ? TP_OK : TP_ERR_NOMEM, "pca"));
    if (MPI_Allgather(&n_local, 1, MPI_INT64_T, row0_of + 1, 1, MPI_INT64_T, comm) != MPI_SUCCESS) {
        free(row0_of);
        return tp_err(TP_ERR_MPI, "pca svd: MPI_Allgather of the row counts failed");
    }
    for (int s = 0; s < size; s++) row0_of[s + 1] += row0_of[s];
    const int64_t n = row0_of[size];
    const int64_t mn = n < d ? n : d;
    double *a = NULL, *s_val = NULL, *cols = NULL;
    blacs_grid own = {.ctxt = -1, .sys_handle = -1};
    const blacs_grid *g = NULL;
    if (n < 2) {
        st = tp_err(TP_ERR_RANGE, "pca: %lld rows in all; a covariance needs at least 2", (long long)n);
        goto done;
    }
    if (n > INT_MAX) {
        st = tp_err(TP_ERR_RANGE, "pca svd: %lld rows are too many for ScaLAPACK; use method cov", (long long)n);
        goto done;
    }
    if (opt->k > mn) {
        st = tp_err(TP_ERR_RANGE, "pca svd: k = %lld components, but only %lld rows", (long long)opt->k,
                    (long long)n);
        goto done;
    }
    if ((st = dist_agree(comm, result_alloc(out, PCA_METHOD_SVD, n, d, opt->k), "pca")) != TP_OK) goto done;

    /* Mean in f64 over every rank's rows. */
    for (int64_t r = 0; r < n_local; r++) {
        const float *x = rows + (size_t)r * (size_t)d;
        for (int64_t j = 0; j < d; j++) out->mean[j] += x[j];
    }
    if ((st = dist_allreduce_sum_f64(comm, out->mean, (size_t)d)) != TP_OK) goto done;
    for (int64_t j = 0; j < d; j++) out->mean[j] /= (double)n;

    if ((st = dist_agree(comm, grid_get(comm, opt, &own, &g), "pca")) != TP_OK) goto done;
    blacs_matrix A;
    st = blacs_matrix_init(g, (int)n, (int)d, &A);
    if (st == TP_OK) {
        a = tp_calloc(blacs_matrix_local_size(&A), sizeof(double));
        s_val = tp_calloc((size_t)mn, sizeof(double));
        cols = tp_malloc((size_t)d * (size_t)(opt->k > 0 ? opt->k : 1) * sizeof(double));
        if (!a || !s_val || !cols) st = TP_ERR_NOMEM;
    }
    if ((st = dist_agree(comm, st, "pca")) != TP_OK) goto done;
    if ((st = redistribute_rows(g, &A, rows, n_local, row0_of, out->mean, a)) != TP_OK) goto done;
    /* Tall (the usual case: more rows than columns): A = QR by pdgeqrf, then R's SVD,
     * which has A's singular values and right vectors, by LAPACK's divide-and-conquer
     * dgesdd on rank 0. pdgesvd on A itself bidiagonalises all n rows and accumulates
     * V by QR iteration: ~15x slower at 5000 x 2048 (BENCHMARKS.md). */
    st = n >= d ? svd_by_qr(g, &A, a, n, d, opt->k, s_val, cols, comm)
                : svd_by_pdgesvd(g, &A, a, n, d, opt->k, s_val, cols, comm);
    if (st != TP_OK) goto done;
    const int k = (int)opt->k;
    for (int64_t i = 0; i < mn; i++) out->eigenvalues[i] = s_val[i] * s_val[i] / (double)(n - 1);
    for (int c = 0; c < k; c++)
        for (int64_t j = 0; j < d; j++) out->components[(size_t)c * d + j] = cols[(size_t)j * k + c];
    if ((st = check_unit_rows(out->components, k, d, n >= d ? "dgesdd" : "pdgesvd")) != TP_OK) goto done;
    fix_signs(out->components, out->k, d);
    pca_summarise(out);
done:
    if (g == &own) blacs_grid_free(&own);
    free(row0_of), free(a), free(s_val), free(cols);
    if (st != TP_OK) pca_result_free(out);
    return st;
}

/* ---- entry point --------------------------------------------------------------- */

tp_status pca_fit_distributed(const float *rows, int64_t n_local, int64_t d, MPI_Comm comm,
                              const pca_options *opt, pca_result *out)
{
    memset(out, 0, sizeof *out);
    TP_CHECK(check_inputs(comm, d, opt));
    if (opt->method == PCA_METHOD_SVD) return fit_svd(rows, n_local, d, comm, opt, out);
    pca_accum *acc = NULL;
    tp_status st = pca_accum_init(d, opt->gram, &acc);
    if (st == TP_OK) st = pca_accum_add(acc, rows, n_local);
    st = dist_agree(comm, st, "pca");
    if (st == TP_OK) st = pca_accum_finish(acc, comm, opt, out);
    pca_accum_free(acc);
    return st;
}
