#include "analysis/geometry/knn.h"

#include "backend/backend.h"   /* be_gemm_f64 */
#include "core/rng.h"

#include "dist/mpi_check.h"
#include "dist/world.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Query and reference rows per dgemm block: a 64 × 256 f64 tile of q·rᵀ (128 KiB)
 * stays in L2 while it is screened. */
#define KNN_QB 64
#define KNN_RB 256
/* Candidate lists merged per MPI_Allreduce call (bytes). */
#define KNN_MERGE_BYTES ((size_t)1 << 26)

typedef struct {
    double d2;
    int64_t idx;
} knn_pair;

static const knn_pair KNN_NONE = {INFINITY, INT64_MAX};

/* Every rank passed the same values v[0..n) (n ≤ 4). */
static tp_status agree_values(MPI_Comm comm, const int64_t *v, int n, const char *what)
{
    int64_t mx[8], r[8];
    for (int i = 0; i < n; i++) mx[i] = v[i], mx[n + i] = -v[i];
    MPI_CHECK(MPI_Allreduce(mx, r, 2 * n, MPI_INT64_T, MPI_MAX, comm));
    for (int i = 0; i < n; i++)
        if (r[i] != -r[n + i]) return tp_err(TP_ERR_RANGE, "knn: ranks disagree on %s", what);
    return TP_OK;
}

tp_status knn_row_offset(int64_t n_local, MPI_Comm comm, int64_t *row0, int64_t *n_total)
{
    int64_t before = 0;
    int rank = 0;
    MPI_CHECK(MPI_Comm_rank(comm, &rank));
    MPI_CHECK(MPI_Exscan(&n_local, &before, 1, MPI_INT64_T, MPI_SUM, comm));
    if (rank == 0) before = 0;   /* MPI_Exscan leaves rank 0's result undefined */
    MPI_CHECK(MPI_Allreduce(&n_local, n_total, 1, MPI_INT64_T, MPI_SUM, comm));
    *row0 = before;
    return TP_OK;
}

int64_t knn_lower_bound(const int64_t *idx, int64_t m, int64_t v)
{
    int64_t lo = 0, hi = m;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (idx[mid] < v) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

tp_status knn_gather_rows(const void *rows_local, int64_t n_local, int64_t row0, size_t row_bytes,
                          const int64_t *idx, int64_t m, int root, MPI_Comm comm, void *out)
{
    int rank = 0, size = 1;
    MPI_CHECK(MPI_Comm_rank(comm, &rank));
    MPI_CHECK(MPI_Comm_size(comm, &size));
    tp_status st = TP_OK;
    if (m < 0 || m > INT_MAX || row_bytes == 0 || row_bytes > INT_MAX)
        st = tp_err(TP_ERR_RANGE, "gather rows: %lld rows of %zu bytes do not fit one MPI call", (long long)m,
                    row_bytes);
    else if (n_local < 0 || (n_local > 0 && !rows_local) || (m > 0 && !idx) ||
             (m > 0 && !out && (root < 0 || root == rank)))
        st = tp_err(TP_ERR_RANGE, "gather rows: NULL buffer or n_local < 0 on rank %d", rank);
    TP_CHECK(dist_agree(comm, st, "knn"));

    int64_t lo = knn_lower_bound(idx, m, row0), hi = knn_lower_bound(idx, m, row0 + n_local);
    int mine = (int)(hi - lo);
    int *counts = tp_calloc((size_t)size, sizeof *counts), *displs = tp_calloc((size_t)size, sizeof *displs);
    unsigned char *send = tp_malloc((mine > 0 ? (size_t)mine : 1) * row_bytes);
    st = counts && displs && send ? TP_OK : TP_ERR_NOMEM;
    if ((st = dist_agree(comm, st, "knn")) != TP_OK) goto done;
    for (int64_t i = lo; i < hi; i++)
        memcpy(send + (size_t)(i - lo) * row_bytes, (const unsigned char *)rows_local + (size_t)(idx[i] - row0) * row_bytes,
               row_bytes);
    int rc = MPI_Allgather(&mine, 1, MPI_INT, counts, 1, MPI_INT, comm);
    if (rc != MPI_SUCCESS) {
        st = tp_err(TP_ERR_MPI, "gather rows: MPI_Allgather of the counts failed");
        goto done;
    }
    int64_t total = 0;
    for (int q = 0; q < size; q++) displs[q] = (int)total, total += counts[q];
    if (total != m) {
        st = tp_err(TP_ERR_RANGE, "gather rows: %lld of the %lld sampled rows are held by no rank "
                    "(indices not ascending, or outside the rows)", (long long)(m - total), (long long)m);
        goto done;
    }
    MPI_Datatype row_t;
    if (MPI_Type_contiguous((int)row_bytes, MPI_BYTE, &row_t) != MPI_SUCCESS || MPI_Type_commit(&row_t) != MPI_SUCCESS) {
        st = tp_err(TP_ERR_MPI, "gather rows: cannot make a row datatype of %zu bytes", row_bytes);
        goto done;
    }
    if (root < 0) rc = MPI_Allgatherv(send, mine, row_t, out, counts, displs, row_t, comm);
    else rc = MPI_Gatherv(send, mine, row_t, out, counts, displs, row_t, root, comm);
    MPI_Type_free(&row_t);
    if (rc != MPI_SUCCESS) st = tp_err(TP_ERR_MPI, "gather rows: MPI_%s failed", root < 0 ? "Allgatherv" : "Gatherv");
done:
    free(counts), free(displs), free(send);
    return st;
}

/* ---- neighbours ---------------------------------------------------------------- */

static inline int pair_less(knn_pair a, knn_pair b) { return a.d2 < b.d2 || (a.d2 == b.d2 && a.idx < b.idx); }

/* The reference every test compares with: f64 differences of the f32 values. */
static double exact_d2(const float *restrict a, const float *restrict b, int64_t d)
{
    double s = 0;
    for (int64_t j = 0; j < d; j++) {
        double t = (double)a[j] - (double)b[j];
        s += t * t;
    }
    return s;
}

/* Inserts p into the ascending list[0..k) if it beats the last entry. */
static void list_insert(knn_pair *list, int64_t k, knn_pair p)
{
    if (!pair_less(p, list[k - 1])) return;
    int64_t w = k - 1;
    while (w > 0 && pair_less(p, list[w - 1])) {
        list[w] = list[w - 1];
        w--;
    }
    list[w] = p;
}

/* b ← the k best of the ascending lists a and b (both of length k), in place:
 * count how many each contributes, then merge from the back. */
static void merge_keep_k(const knn_pair *a, knn_pair *b, int k)
{
    int na = 0, nb = 0;
    while (na + nb < k) {
        if (pair_less(a[na], b[nb])) na++;
        else nb++;
    }
    int i = na - 1, j = nb - 1;
    for (int w = k - 1; w >= 0; w--) {
        if (j < 0 || (i >= 0 && pair_less(b[j], a[i]))) b[w] = a[i--];
        else b[w] = b[j--];
    }
}

/* MPI_Op: one element = one query's k pairs (k from the datatype's size). The k best
 * of a union do not depend on grouping or order, so the result is the same on
 * every rank for any reduction tree. */
static void merge_op(void *in, void *inout, int *len, MPI_Datatype *dt)
{
    int bytes = 0;
    MPI_Type_size(*dt, &bytes);
    int k = bytes / (int)sizeof(knn_pair);
    const knn_pair *a = in;
    knn_pair *b = inout;
    for (int l = 0; l < *len; l++) merge_keep_k(a + (size_t)l * k, b + (size_t)l * k, k);
}

static tp_status merge_across_ranks(knn_pair *lists, int64_t nq, int64_t k, MPI_Comm comm)
{
    int size = 1;
    MPI_CHECK(MPI_Comm_size(comm, &size));
    if (size == 1 || nq == 0) return TP_OK;
    MPI_Datatype list_t;
    MPI_Op op;
    MPI_CHECK(MPI_Type_contiguous((int)(k * (int64_t)sizeof(knn_pair)), MPI_BYTE, &list_t));
    MPI_CHECK(MPI_Type_commit(&list_t));
    MPI_CHECK(MPI_Op_create(merge_op, 1, &op));
    int64_t per = (int64_t)(KNN_MERGE_BYTES / ((size_t)k * sizeof(knn_pair)));
    if (per < 1) per = 1;
    tp_status st = TP_OK;
    for (int64_t q0 = 0; q0 < nq && st == TP_OK; q0 += per) {
        int cnt = (int)(nq - q0 < per ? nq - q0 : per);
        int rc = MPI_Allreduce(MPI_IN_PLACE, lists + (size_t)q0 * (size_t)k, cnt, list_t, op, comm);
        if (rc != MPI_SUCCESS) st = tp_err(TP_ERR_MPI, "knn: MPI_Allreduce of the candidate lists failed");
    }
    MPI_Op_free(&op);
    MPI_Type_free(&list_t);
    return st;
}

/* Converts rows [n, d] to f64 minus shift, with squared norms. */
static void rows_shifted(const float *restrict x, int64_t n, int64_t d, const double *restrict shift,
                         double *restrict out, double *restrict norm)
{
    for (int64_t i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * (size_t)d;
        double *oi = out + (size_t)i * (size_t)d, s = 0;
        for (int64_t j = 0; j < d; j++) {
            oi[j] = (double)xi[j] - shift[j];
            s += oi[j] * oi[j];
        }
        norm[i] = s;
    }
}

/* This rank's k best (exact) for every query, into lists [nq, k]. */
static tp_status search_local(const float *queries, int64_t nq, int64_t d, const float *ref, int64_t n_local,
                              int64_t row0, int64_t k, const int64_t *self_index, knn_pair *lists)
{
    for (int64_t i = 0; i < nq * k; i++) lists[i] = KNN_NONE;
    if (n_local == 0 || nq == 0) return TP_OK;
    double *shift = tp_malloc((size_t)d * sizeof *shift);
    double *qb = tp_malloc((size_t)KNN_QB * (size_t)d * sizeof *qb);
    double *rb = tp_malloc((size_t)KNN_RB * (size_t)d * sizeof *rb);
    double *g = tp_malloc((size_t)KNN_QB * KNN_RB * sizeof *g);
    double qn[KNN_QB], rn[KNN_RB];
    tp_backend *be = backend_cpu();   /* host arrays */
    tp_status st = shift && qb && rb && g ? TP_OK : TP_ERR_NOMEM;
    if (st != TP_OK) goto done;
    for (int64_t j = 0; j < d; j++) shift[j] = queries[j];
    /* Screening bound: dgemm and the norms each err by at most γ_d·(‖q‖² + ‖r‖²)
     * (Higham, Accuracy and Stability, §3.1), the exact sum by γ_d·d²; twice that. */
    const double u = 0x1.0p-53, gam = 4.0 * (double)(d + 4) * u;
    for (int64_t q0 = 0; q0 < nq; q0 += KNN_QB) {
        int nqb = (int)(nq - q0 < KNN_QB ? nq - q0 : KNN_QB);
        rows_shifted(queries + (size_t)q0 * (size_t)d, nqb, d, shift, qb, qn);
        for (int64_t r0 = 0; r0 < n_local; r0 += KNN_RB) {
            int nrb = (int)(n_local - r0 < KNN_RB ? n_local - r0 : KNN_RB);
            rows_shifted(ref + (size_t)r0 * (size_t)d, nrb, d, shift, rb, rn);
            if ((st = be_gemm_f64(be, TP_NO_TRANS, TP_TRANS, nqb, nrb, d, 1.0, qb, d, rb, d, 0.0, g, nrb)) != TP_OK)
                goto done;
            for (int i = 0; i < nqb; i++) {
                const int64_t qi = q0 + i, self = self_index ? self_index[qi] : -1;
                const float *qrow = queries + (size_t)qi * (size_t)d;
                knn_pair *list = lists + (size_t)qi * (size_t)k;
                const double *gi = g + (size_t)i * nrb;
                for (int j = 0; j < nrb; j++) {
                    double worst = list[k - 1].d2;
                    double approx = qn[i] + rn[j] - 2.0 * gi[j];
                    if (approx > worst * (1.0 + gam) + gam * (qn[i] + rn[j])) continue;
                    int64_t gidx = row0 + r0 + j;
                    if (gidx == self) continue;
                    knn_pair p = {exact_d2(qrow, ref + (size_t)(r0 + j) * (size_t)d, d), gidx};
                    list_insert(list, k, p);
                }
            }
        }
    }
done:
    free(shift), free(qb), free(rb), free(g);
    return st;
}

tp_status knn_distributed(const float *queries, int64_t nq, int64_t d, const float *ref_local,
                          int64_t n_local, int64_t ref_row0, int64_t k, const int64_t *self_index,
                          MPI_Comm comm, double *out_dist, int64_t *out_idx)
{
    int rank = 0;
    MPI_CHECK(MPI_Comm_rank(comm, &rank));
    tp_status st = TP_OK;
    if (d <= 0 || d > INT_MAX) st = tp_err(TP_ERR_RANGE, "knn: d = %lld columns", (long long)d);
    else if (k < 1 || k > KNN_MAX_K)
        st = tp_err(TP_ERR_RANGE, "knn: k = %lld neighbours; need 1 to %d", (long long)k, KNN_MAX_K);
    else if (nq < 0 || n_local < 0 || ref_row0 < 0)
        st = tp_err(TP_ERR_RANGE, "knn: negative count or offset on rank %d", rank);
    else if ((nq > 0 && (!queries || !out_dist || !out_idx)) || (n_local > 0 && !ref_local))
        st = tp_err(TP_ERR_RANGE, "knn: NULL buffer on rank %d", rank);
    TP_CHECK(dist_agree(comm, st, "knn"));
    int64_t same[3] = {nq, d, k};
    TP_CHECK(agree_values(comm, same, 3, "nq, d or k"));

    int64_t n_total = 0;
    MPI_CHECK(MPI_Allreduce(&n_local, &n_total, 1, MPI_INT64_T, MPI_SUM, comm));
    for (int64_t i = 0; i < nq && st == TP_OK; i++) {
        int64_t self = self_index ? self_index[i] : -1;
        int64_t avail = n_total - (self >= 0 && self < n_total);
        if (avail < k)
            st = tp_err(TP_ERR_RANGE, "knn: k = %lld neighbours asked for, but query %lld has only %lld rows to "
                        "choose from", (long long)k, (long long)i, (long long)avail);
    }
    TP_CHECK(dist_agree(comm, st, "knn"));

    knn_pair *lists = tp_malloc((nq > 0 ? (size_t)nq : 1) * (size_t)k * sizeof *lists);
    st = lists ? TP_OK : TP_ERR_NOMEM;
    if (st == TP_OK) st = search_local(queries, nq, d, ref_local, n_local, ref_row0, k, self_index, lists);
    if ((st = dist_agree(comm, st, "knn")) == TP_OK) st = merge_across_ranks(lists, nq, k, comm);
    if (st == TP_OK) {
        for (int64_t i = 0; i < nq * k; i++) {
            out_dist[i] = sqrt(lists[i].d2);
            out_idx[i] = lists[i].idx;
        }
    }
    free(lists);
    return st;
}
