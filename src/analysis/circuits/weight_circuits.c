/* weight_circuits.c — folded head matrices, composition scores, OV copying scores
 * and their random-matrix baselines (weight_circuits.h). Products go through the
 * CPU backend's GEMMs; eigenvalues through LAPACKE. */
#include "analysis/circuits/weight_circuits.h"

#include "backend/backend.h"
#include "core/sample.h"

#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define VOCAB_BLOCK 2048   /* vocabulary rows per block of W_U W_E */

static tp_status gemm(tp_trans ta, tp_trans tb, int64_t m, int64_t n, int64_t k, const double *A, int64_t lda,
                      const double *B, int64_t ldb, double *C, int64_t ldc)
{
    return be_gemm_f64(backend_cpu(), ta, tb, m, n, k, 1.0, A, lda, B, ldb, 0.0, C, ldc);
}

/* Rows [r0, r0 + n) of W as f32 (n x W->cols). */
static void mat_rows(const tp_mat *W, int64_t r0, int64_t n, float *out)
{
    const char *p = (const char *)W->data + (size_t)r0 * (size_t)W->cols * tp_dtype_size(W->dtype);
    tp_convert_to_f32(W->dtype, p, out, (size_t)n * (size_t)W->cols);
}

/* out[a][k] (d x dh, row-major) = W[g*dh + a][k] * cw[g*dh + a] * rw[k] for head g of
 * a [heads*dh, d] projection; cw (per output) and rw (per input) may be NULL. */
static void fold_in(const float *W, int g, int dh, int d, const float *cw, const float *rw, double *out)
{
    for (int a = 0; a < dh; a++) {
        const float *row = W + (size_t)(g * dh + a) * (size_t)d;
        double c = cw ? cw[g * dh + a] : 1.0;
        for (int k = 0; k < d; k++) out[(size_t)k * dh + a] = (double)row[k] * c * (rw ? rw[k] : 1.0);
    }
}

/* O_h [dh][d] = W_o[k][h*dh + a] * ow[k]; W_o is [d, H*dh]. */
static void fold_out(const float *Wo, int h, int dh, int d, int64_t cols, const float *ow, double *out)
{
    for (int k = 0; k < d; k++)
        for (int a = 0; a < dh; a++)
            out[(size_t)a * d + k] = (double)Wo[(size_t)k * cols + (size_t)h * dh + a] * (ow ? ow[k] : 1.0);
}

static void fold_layer(const tp_model *m, int l, float *buf, wc_heads *w)
{
    const tp_layer *ly = &m->layers[l];
    int olmo = m->cfg.arch == TP_ARCH_OLMO2, d = w->d, dh = w->dh, H = w->H, K = w->K;
    const float *in_w = olmo ? NULL : ly->norm1;     /* Llama: input_layernorm on the reads */
    const float *out_w = olmo ? ly->norm1 : NULL;    /* OLMo-2: post_attention_layernorm on the writes */
    size_t hd = (size_t)d * dh;
    mat_rows(&ly->q, 0, ly->q.rows, buf);
    for (int h = 0; h < H; h++) fold_in(buf, h, dh, d, ly->q_norm, in_w, w->Q + ((size_t)l * H + h) * hd);
    mat_rows(&ly->k, 0, ly->k.rows, buf);
    for (int g = 0; g < K; g++) fold_in(buf, g, dh, d, ly->k_norm, in_w, w->Kw + ((size_t)l * K + g) * hd);
    mat_rows(&ly->v, 0, ly->v.rows, buf);
    for (int g = 0; g < K; g++) fold_in(buf, g, dh, d, NULL, in_w, w->Vw + ((size_t)l * K + g) * hd);
    mat_rows(&ly->o, 0, ly->o.rows, buf);
    for (int h = 0; h < H; h++) fold_out(buf, h, dh, d, ly->o.cols, out_w, w->O + ((size_t)l * H + h) * hd);
}

tp_status wc_fold(const tp_model *m, wc_heads *w)
{
    const tp_model_config *c = &m->cfg;
    memset(w, 0, sizeof *w);
    w->L = c->num_layers, w->H = c->num_heads, w->K = c->num_kv_heads, w->d = c->hidden_size, w->dh = c->head_dim;
    size_t hd = (size_t)w->d * w->dh, LH = (size_t)w->L * w->H, LK = (size_t)w->L * w->K;
    w->Q = tp_malloc(LH * hd * sizeof(double));
    w->O = tp_malloc(LH * hd * sizeof(double));
    w->Kw = tp_malloc(LK * hd * sizeof(double));
    w->Vw = tp_malloc(LK * hd * sizeof(double));
    float *buf = tp_malloc((size_t)w->H * hd * sizeof *buf);   /* the largest projection: q or o */
    if (!w->Q || !w->O || !w->Kw || !w->Vw || !buf) {
        free(buf);
        wc_heads_free(w);
        return TP_ERR_NOMEM;
    }
    for (int l = 0; l < w->L; l++) fold_layer(m, l, buf, w);
    free(buf);
    return TP_OK;
}

void wc_heads_free(wc_heads *w)
{
    free(w->Q), free(w->Kw), free(w->Vw), free(w->O);
    w->Q = w->Kw = w->Vw = w->O = NULL;
}

/* ---- composition --------------------------------------------------------------- */

/* Gram matrices of every head: GQ = QᵀQ, GK = KᵀK, GV = VᵀV, PO = O Oᵀ (dh x dh). */
typedef struct {
    double *GQ, *GK, *GV, *PO;
    double *nQK, *nOV;      /* [L][H] Frobenius norms of QK and OV */
} wc_grams;

static double trace_prod(const double *A, const double *B, int r)   /* tr(A B), A and B symmetric */
{
    double t = 0;
    for (size_t i = 0; i < (size_t)r * r; i++) t += A[i] * B[i];
    return t;
}

static tp_status grams_make(const wc_heads *w, wc_grams *g)
{
    size_t r2 = (size_t)w->dh * w->dh, LH = (size_t)w->L * w->H, LK = (size_t)w->L * w->K, hd = (size_t)w->d * w->dh;
    g->GQ = tp_malloc(LH * r2 * sizeof(double)), g->PO = tp_malloc(LH * r2 * sizeof(double));
    g->GK = tp_malloc(LK * r2 * sizeof(double)), g->GV = tp_malloc(LK * r2 * sizeof(double));
    g->nQK = tp_malloc(LH * sizeof(double)), g->nOV = tp_malloc(LH * sizeof(double));
    if (!g->GQ || !g->PO || !g->GK || !g->GV || !g->nQK || !g->nOV) return TP_ERR_NOMEM;
    int dh = w->dh, d = w->d;
    for (size_t i = 0; i < LH; i++) {
        TP_CHECK(gemm(TP_TRANS, TP_NO_TRANS, dh, dh, d, w->Q + i * hd, dh, w->Q + i * hd, dh, g->GQ + i * r2, dh));
        TP_CHECK(gemm(TP_NO_TRANS, TP_TRANS, dh, dh, d, w->O + i * hd, d, w->O + i * hd, d, g->PO + i * r2, dh));
    }
    for (size_t i = 0; i < LK; i++) {
        TP_CHECK(gemm(TP_TRANS, TP_NO_TRANS, dh, dh, d, w->Kw + i * hd, dh, w->Kw + i * hd, dh, g->GK + i * r2, dh));
        TP_CHECK(gemm(TP_TRANS, TP_NO_TRANS, dh, dh, d, w->Vw + i * hd, dh, w->Vw + i * hd, dh, g->GV + i * r2, dh));
    }
    for (int l = 0; l < w->L; l++)
        for (int h = 0; h < w->H; h++) {
            size_t i = (size_t)l * w->H + h, kv = (size_t)l * w->K + (size_t)wc_kv_of(w, h);
            g->nQK[i] = sqrt(trace_prod(g->GQ + i * r2, g->GK + kv * r2, dh));
            g->nOV[i] = sqrt(trace_prod(g->GV + kv * r2, g->PO + i * r2, dh));
        }
    return TP_OK;
}

static void grams_free(wc_grams *g)
{
    free(g->GQ), free(g->GK), free(g->GV), free(g->PO), free(g->nQK), free(g->nOV);
}

/* ‖X M Yᵀ‖_F = sqrt(tr(Mᵀ GX M GY)) for GX = XᵀX, GY = YᵀY (symmetric), M [r, r]:
 * tr(Mᵀ GX M GY) = Σ_ij (GX M)_ij (M GY)_ij. work: 2 r². */
static tp_status frob_gram(const double *M, const double *GX, const double *GY, int r, double *work, double *out)
{
    size_t r2 = (size_t)r * r;
    TP_CHECK(gemm(TP_NO_TRANS, TP_NO_TRANS, r, r, r, GX, r, M, r, work, r));
    TP_CHECK(gemm(TP_NO_TRANS, TP_NO_TRANS, r, r, r, M, r, GY, r, work + r2, r));
    double t = 0;
    for (size_t i = 0; i < r2; i++) t += work[i] * work[r2 + i];
    *out = sqrt(t > 0 ? t : 0);
    return TP_OK;
}

/* The three scores of left head (l1, h1) and right head (l2, h2). */
static tp_status pair_scores(const wc_heads *w, const wc_grams *g, int l1, int h1, int l2, int h2, double *M,
                             double *work, double out[3])
{
    int dh = w->dh, d = w->d;
    size_t hd = (size_t)d * dh, r2 = (size_t)dh * dh, i1 = (size_t)l1 * w->H + h1, i2 = (size_t)l2 * w->H + h2;
    size_t kv1 = (size_t)l1 * w->K + (size_t)wc_kv_of(w, h1), kv2 = (size_t)l2 * w->K + (size_t)wc_kv_of(w, h2);
    const double *O1 = w->O + i1 * hd, *GV1 = g->GV + kv1 * r2;
    /* Q: L R = V1 (O1 Q2) K2ᵀ; K: V1 (O1 K2) Q2ᵀ; V: V1 (O1 V2) O2 */
    const double *right[3] = {w->Q + i2 * hd, w->Kw + kv2 * hd, w->Vw + kv2 * hd};
    const double *gram[3] = {g->GK + kv2 * r2, g->GQ + i2 * r2, g->PO + i2 * r2};
    const double nR[3] = {g->nQK[i2], g->nQK[i2], g->nOV[i2]};
    for (int mode = 0; mode < 3; mode++) {
        double f;
        TP_CHECK(gemm(TP_NO_TRANS, TP_NO_TRANS, dh, dh, d, O1, d, right[mode], dh, M, dh));
        TP_CHECK(frob_gram(M, GV1, gram[mode], dh, work, &f));
        out[mode] = f / (g->nOV[i1] * nR[mode]);
    }
    return TP_OK;
}

tp_status wc_composition(const wc_heads *w, double *q, double *k, double *v)
{
    size_t LH = (size_t)w->L * w->H, r2 = (size_t)w->dh * w->dh;
    double *out[3] = {q, k, v};
    for (int mode = 0; mode < 3; mode++)
        if (out[mode]) memset(out[mode], 0, LH * LH * sizeof(double));
    wc_grams g = {0};
    double *M = tp_malloc(3 * r2 * sizeof *M);
    tp_status st = M ? grams_make(w, &g) : TP_ERR_NOMEM;
    for (int l1 = 0; st == TP_OK && l1 < w->L; l1++)
        for (int h1 = 0; st == TP_OK && h1 < w->H; h1++)
            for (int l2 = l1 + 1; st == TP_OK && l2 < w->L; l2++)
                for (int h2 = 0; st == TP_OK && h2 < w->H; h2++) {
                    double s[3];
                    st = pair_scores(w, &g, l1, h1, l2, h2, M, M + r2, s);
                    size_t at = ((size_t)l1 * w->H + h1) * LH + (size_t)l2 * w->H + h2;
                    for (int mode = 0; st == TP_OK && mode < 3; mode++)
                        if (out[mode]) out[mode][at] = s[mode];
                }
    grams_free(&g);
    free(M);
    return st;
}

/* ---- OV copying -------------------------------------------------------------------- */

double wc_copying_score(const double *re, const double *im, int n)
{
    double num = 0, den = 0;
    for (int i = 0; i < n; i++) num += re[i], den += hypot(re[i], im[i]);
    return den > 0 ? num / den : NAN;
}

/* Eigenvalues of C [n, n] (overwritten), sorted by |λ| descending. */
static tp_status eigenvalues(double *C, int n, double *re, double *im)
{
    lapack_int info = LAPACKE_dgeev(LAPACK_ROW_MAJOR, 'N', 'N', n, C, n, re, im, NULL, 1, NULL, 1);
    if (info != 0) return tp_err(TP_ERR_INTERNAL, "LAPACKE_dgeev failed (info %d) on a %d x %d OV circuit", (int)info,
                                 n, n);
    for (int i = 1; i < n; i++)   /* insertion sort: n is a head dimension */
        for (int j = i; j > 0 && hypot(re[j], im[j]) > hypot(re[j - 1], im[j - 1]); j--) {
            double a = re[j], b = im[j];
            re[j] = re[j - 1], im[j] = im[j - 1], re[j - 1] = a, im[j - 1] = b;
        }
    return TP_OK;
}

/* C = O (dh x d) · G (d x d) · V (d x dh); work: dh x d. */
static tp_status ov_circuit(const double *O, const double *G, const double *V, int d, int dh, double *work, double *C)
{
    TP_CHECK(gemm(TP_NO_TRANS, TP_NO_TRANS, dh, d, d, O, d, G, d, work, d));
    return gemm(TP_NO_TRANS, TP_NO_TRANS, dh, dh, d, work, d, V, dh, C, dh);
}

/* G [d, d] (f64) = Σ over vocabulary blocks of Ubᵀ Eb, blocks of f32 rows given by
 * `rows` (U and E [n, d] for rows [r0, r0 + n)). */
typedef void (*block_fn)(void *ctx, int64_t r0, int64_t n, float *U, float *E);

static tp_status gram_vocab(int64_t vocab, int d, block_fn rows, void *ctx, double *G)
{
    float *U = tp_malloc((size_t)VOCAB_BLOCK * d * sizeof *U), *E = tp_malloc((size_t)VOCAB_BLOCK * d * sizeof *E);
    float *C = tp_malloc((size_t)d * d * sizeof *C);
    tp_status st = U && E && C ? TP_OK : TP_ERR_NOMEM;
    memset(G, 0, (size_t)d * d * sizeof *G);
    for (int64_t r0 = 0; st == TP_OK && r0 < vocab; r0 += VOCAB_BLOCK) {
        int64_t n = vocab - r0 < VOCAB_BLOCK ? vocab - r0 : VOCAB_BLOCK;
        rows(ctx, r0, n, U, E);
        /* f32 products of one block (at most VOCAB_BLOCK terms), summed in f64 */
        st = be_gemm_f32(backend_cpu(), TP_TRANS, TP_NO_TRANS, d, d, n, 1.0f, U, d, E, d, 0.0f, C, d);
        for (size_t i = 0; st == TP_OK && i < (size_t)d * d; i++) G[i] += C[i];
    }
    free(U), free(E), free(C);
    return st;
}

static void model_rows(void *ctx, int64_t r0, int64_t n, float *U, float *E)
{
    const tp_model *m = ctx;
    mat_rows(&m->lm_head, r0, n, U);
    mat_rows(&m->embed, r0, n, E);
}

tp_status wc_copying(const tp_model *m, const wc_heads *w, double *score, double *eig_re, double *eig_im)
{
    int d = w->d, dh = w->dh;
    double *G = tp_malloc((size_t)d * d * sizeof *G), *work = tp_malloc((size_t)dh * d * sizeof *work);
    double *C = tp_malloc((size_t)dh * dh * sizeof *C);
    tp_status st = G && work && C ? gram_vocab(m->cfg.vocab_size, d, model_rows, (void *)m, G) : TP_ERR_NOMEM;
    /* W_U's rows carry the final norm's weight: G[k][:] *= w_f[k] */
    for (int k = 0; st == TP_OK && k < d; k++)
        for (int j = 0; j < d; j++) G[(size_t)k * d + j] *= m->final_norm[k];
    size_t hd = (size_t)d * dh;
    for (int l = 0; st == TP_OK && l < w->L; l++)
        for (int h = 0; st == TP_OK && h < w->H; h++) {
            size_t i = (size_t)l * w->H + h, kv = (size_t)l * w->K + (size_t)wc_kv_of(w, h);
            st = ov_circuit(w->O + i * hd, G, w->Vw + kv * hd, d, dh, work, C);
            if (st == TP_OK) st = eigenvalues(C, dh, eig_re + i * dh, eig_im + i * dh);
            if (st == TP_OK) score[i] = wc_copying_score(eig_re + i * dh, eig_im + i * dh, dh);
        }
    free(G), free(work), free(C);
    return st;
}

/* ---- random-matrix baselines ------------------------------------------------------- */

static double gauss(uint64_t *s)   /* Box-Muller, one normal per two uniforms */
{
    double u1 = 1.0 - tp_rng_unit(s), u2 = tp_rng_unit(s);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static void fill_gauss(double *x, size_t n, uint64_t *s)
{
    for (size_t i = 0; i < n; i++) x[i] = gauss(s);
}

typedef struct {
    uint64_t state;
    int d;
} random_ctx;

static void random_rows(void *ctx, int64_t r0, int64_t n, float *U, float *E)
{
    random_ctx *r = ctx;
    (void)r0;
    for (size_t i = 0; i < (size_t)n * (size_t)r->d; i++) U[i] = (float)gauss(&r->state), E[i] = (float)gauss(&r->state);
}

tp_status wc_baseline_composition(int d, int dh, int n, uint64_t seed, double *comp)
{
    /* two random heads in two layers, one kv head each */
    wc_heads w = {.L = 2, .H = 1, .K = 1, .d = d, .dh = dh};
    size_t hd = (size_t)d * dh;
    w.Q = tp_malloc(2 * hd * sizeof(double)), w.Kw = tp_malloc(2 * hd * sizeof(double));
    w.Vw = tp_malloc(2 * hd * sizeof(double)), w.O = tp_malloc(2 * hd * sizeof(double));
    tp_status st = w.Q && w.Kw && w.Vw && w.O ? TP_OK : TP_ERR_NOMEM;
    uint64_t state = seed ^ 0x636F6D706F736521ull;   /* "compose!" */
    for (int i = 0; st == TP_OK && i < n; i++) {
        fill_gauss(w.Q, 2 * hd, &state), fill_gauss(w.Kw, 2 * hd, &state);
        fill_gauss(w.Vw, 2 * hd, &state), fill_gauss(w.O, 2 * hd, &state);
        /* [2][1][2][1]: the pair (0,0) -> (1,0) sits at index 1 */
        double q[4], k[4], v[4];
        st = wc_composition(&w, q, k, v);
        comp[3 * i] = q[1], comp[3 * i + 1] = k[1], comp[3 * i + 2] = v[1];
    }
    wc_heads_free(&w);
    return st;
}

tp_status wc_baseline_copying(int d, int dh, int vocab, int n, uint64_t seed, double *copy)
{
    size_t hd = (size_t)d * dh;
    double *G = tp_malloc((size_t)d * d * sizeof *G), *O = tp_malloc(hd * sizeof *O), *V = tp_malloc(hd * sizeof *V);
    double *work = tp_malloc(hd * sizeof *work), *C = tp_malloc((size_t)dh * dh * sizeof *C);
    double *re = tp_malloc((size_t)dh * sizeof *re), *im = tp_malloc((size_t)dh * sizeof *im);
    tp_status st = G && O && V && work && C && re && im ? TP_OK : TP_ERR_NOMEM;
    random_ctx r = {.state = seed ^ 0x636F70792D6F7621ull, .d = d};   /* "copy-ov!" */
    for (int i = 0; st == TP_OK && i < n; i++) {
        st = gram_vocab(vocab, d, random_rows, &r, G);
        fill_gauss(O, hd, &r.state), fill_gauss(V, hd, &r.state);
        if (st == TP_OK) st = ov_circuit(O, G, V, d, dh, work, C);
        if (st == TP_OK) st = eigenvalues(C, dh, re, im);
        if (st == TP_OK) copy[i] = wc_copying_score(re, im, dh);
    }
    free(G), free(O), free(V), free(work), free(C), free(re), free(im);
    return st;
}
