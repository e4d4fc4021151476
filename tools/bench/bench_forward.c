/* bench_forward.c — speed and memory of the C forward pass, with the sgemm ceiling
 * measured in the same process (run by tools/bench/forward.sh, which prints the
 * PyTorch baseline beside it).
 *
 *   bench_forward --model DIR [--conversion per_matrix|upfront] [--seq 512]
 *                 [--threads 2] [--reps 5] [--capture-layer L]
 *                 [--gemm auto|openblas] [--bf16-compute auto|on|off] [--no-profile]
 *                 [--no-ceiling] [--serve]
 *
 * --gemm: the forward pass's linear layers on backend/linear's kernel (auto, the
 * default of `forward.gemm`) or on OpenBLAS sgemm (openblas, the previous path; the
 * in-run baseline of tools/bench/forward.sh). The ceiling is OpenBLAS sgemm either way.
 * --bf16-compute: `forward.bf16_compute` (auto, its default: a BF16 checkpoint's GEMMs
 * on AVX512-BF16 where the CPU has it; off: widened to f32; tools/bench/bf16.sh).
 *
 * 1. forward: model_open(), forward_new(m, 1, seq), a capture callback on one layer's
 *    hook_resid_post that copies the tensor out, one warm-up, then the median of
 *    `reps` runs of forward_run(TP_LOGITS_ALL). Peak RSS (ru_maxrss) is read right
 *    after these runs, before anything below allocates.
 * 2. profile: the same runs with a timestamp callback on every capture point (except
 *    attn.hook_pattern, which would change the code path), so the time between two
 *    consecutive points is the work done between them; summed over layers, median
 *    over reps.
 * 3. conversion: tp_convert_to_f32 alone over every BF16/F16 matrix, tile by tile as
 *    fwd_linear does it (only for a model that has such matrices in per_matrix mode).
 * 4. ceiling: cpu_gemm_nt alone on exactly the GEMM shapes of one pass (q,k,v,o,gate,
 *    up,down per layer, then the LM head; M = seq rows), f32 weights (the model's own
 *    when they are f32), same thread count: the GEMM-only GFLOP/s the pass could reach.
 *    GEMM-only passes alternate with forward passes; forward_over_ceiling is the
 *    median of the per-pair GFLOP/s ratios.
 *
 * Output is `key=value` lines, one per quantity, for the script to collect.
 *
 * --serve (for tools/bench/forward_paired.py): after loading and one warm-up, read
 * commands from stdin and answer each on one line: `run` -> `forward_s=<seconds>` of
 * one forward pass, `ceil` -> `ceiling_s=<seconds>` of one GEMM-only pass, `quit`.
 * The driver alternates these with PyTorch passes so that each comparison is made
 * between passes run seconds apart, which matters on a shared machine.
 */
#include "backend/backend.h"   /* backend_open, be_info */
#include "backend/cpu/cpu.h"   /* cpu_gemm_nt: the ceiling's bare sgemm */
#include "core/dtype.h"
#include "core/error.h"
#include "model/forward.h"
#include "model/hooks.h"
#include "model/model.h"

#define BENCH_NAME "bench_forward"
#include "bench_common.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double peak_rss_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;   /* Linux: KiB */
}

/* Page faults so far (minor, major): a forward pass over mmapped weights should
 * take none once warm; faults mean the kernel dropped pages between passes. */
static void page_faults(long *minor, long *major)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    *minor = ru.ru_minflt;
    *major = ru.ru_majflt;
}

/* ---- capture: copy the tensor out, as `transpolmo capture` would ---------- */

typedef struct {
    float *buf;
    size_t n;
} capture_t;

static tp_status capture_cb(const tp_hook_info *info, float *data, void *user)
{
    capture_t *c = user;
    size_t n = 1;
    for (int i = 0; i < info->ndim; i++) n *= (size_t)info->shape[i];
    if (n > c->n) return tp_err(TP_ERR_INTERNAL, "capture buffer too small for %s", info->name);
    memcpy(c->buf, data, n * sizeof(float));
    return TP_OK;
}

/* ---- profile: time between consecutive capture points --------------------- */

#define PHASE_END TP_HOOK_POINT_COUNT   /* LN_FINAL -> end of forward_run: LM head */

typedef struct {
    double last;
    double acc[TP_HOOK_POINT_COUNT + 1];
} profile_t;

static tp_status stamp_cb(const tp_hook_info *info, float *data, void *user)
{
    profile_t *p = user;
    double t = now_s();
    p->acc[info->point] += t - p->last;
    p->last = t;
    return TP_OK;
}

/* What ran between the previous capture point and this one (OLMo-2 block order). */
static const char *phase_label(int pt)
{
    switch (pt) {
    case TP_HOOK_EMBED: return "embedding gather";
    case TP_HOOK_RESID_PRE: return "capture copy (prev. layer resid_post)";
    case TP_HOOK_Q: return "q,k,v GEMMs + q/k RMSNorm";
    case TP_HOOK_K: return "(k hook)";
    case TP_HOOK_V: return "(v hook)";
    case TP_HOOK_ROT_Q: return "RoPE q";
    case TP_HOOK_ROT_K: return "RoPE k";
    case TP_HOOK_Z: return "attention core: QK^T, softmax, PV";
    case TP_HOOK_ATTN_O: return "o_proj GEMM";
    case TP_HOOK_ATTN_OUT: return "post-attention RMSNorm";
    case TP_HOOK_RESID_MID: return "residual add (attn)";
    case TP_HOOK_MLP_PRE: return "gate,up GEMMs";
    case TP_HOOK_MLP_PRE_LINEAR: return "(pre_linear hook)";
    case TP_HOOK_MLP_POST: return "silu(gate)*up";
    case TP_HOOK_MLP_O: return "down GEMM";
    case TP_HOOK_MLP_OUT: return "post-MLP RMSNorm";
    case TP_HOOK_RESID_POST: return "residual add (mlp)";
    case TP_HOOK_LN_FINAL: return "final RMSNorm";
    case PHASE_END: return "LM head GEMM";
    default: return "?";
    }
}

static const char *phase_key(int pt)
{
    return pt == PHASE_END ? "lm_head" : hooks_point_suffix((tp_hook_point)pt);
}

/* ---- the sgemm ceiling ------------------------------------------------------ */

enum { G_Q, G_K, G_V, G_O, G_GATE, G_UP, G_DOWN, G_HEAD, G_KINDS };
static const char *gemm_kind_name[G_KINDS] = {"q", "k", "v", "o", "gate", "up", "down", "lm_head"};

static void fill_random(float *x, size_t n, uint64_t seed, float scale)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        x[i] = scale * ((float)(s >> 40) / (float)(1 << 24) * 2.0f - 1.0f);
    }
}

/* An f32 view of w: the model's own data when stored f32, else a converted copy
 * (kept in *owned to free). */
static const float *f32_of(const tp_mat *w, float **owned)
{
    *owned = NULL;
    if (w->dtype == TP_DTYPE_F32) return w->data;
    size_t n = (size_t)w->rows * (size_t)w->cols;
    float *p = malloc(n * sizeof *p);
    if (!p) DIE("out of memory for a %zu-element f32 copy of %s", n, w->name);
    tp_convert_to_f32(w->dtype, w->data, p, n);
    *owned = p;
    return p;
}

typedef struct {
    const tp_model *m;
    int T;
    float *A, *C;
    const float *(*W)[7];   /* [layer][kind] f32 weights */
    const float *Wh;
    float *owned[8];
    double flops, kind_flops[G_KINDS];
} ceiling_t;

static void ceiling_init(ceiling_t *g, const tp_model *m, int T)
{
    const tp_model_config *c = &m->cfg;
    memset(g, 0, sizeof *g);
    g->m = m;
    g->T = T;
    int64_t maxk = c->hidden_size > c->intermediate_size ? c->hidden_size : c->intermediate_size;
    int64_t qd = (int64_t)c->num_heads * c->head_dim;
    if (qd > maxk) maxk = qd;
    g->A = malloc((size_t)T * (size_t)maxk * sizeof *g->A);
    g->C = malloc((size_t)T * (size_t)c->vocab_size * sizeof *g->C);
    g->W = malloc((size_t)c->num_layers * sizeof *g->W);
    if (!g->A || !g->C || !g->W) DIE("out of memory for the ceiling buffers");
    fill_random(g->A, (size_t)T * (size_t)maxk, 7, 1.0f);

    /* Per layer, the model's f32 matrices; for non-f32 layers one converted copy of
     * layer 0's seven matrices stands in for every layer (same shapes; each is far
     * larger than the 32 MiB L3, so reuse across layers gains no cache hits). */
    const tp_mat *mats0[7];
    model_layer_mats(m, 0, mats0, NULL);
    const float *copy0[7];
    for (int i = 0; i < 7; i++) copy0[i] = f32_of(mats0[i], &g->owned[i]);
    for (int L = 0; L < c->num_layers; L++) {
        const tp_mat *mats[7];
        model_layer_mats(m, L, mats, NULL);
        for (int i = 0; i < 7; i++) {
            g->W[L][i] = mats[i]->dtype == TP_DTYPE_F32 ? mats[i]->data : copy0[i];
            double fl = 2.0 * T * (double)mats[i]->rows * (double)mats[i]->cols;
            g->kind_flops[i] += fl;
            g->flops += fl;
        }
    }
    g->Wh = f32_of(&m->lm_head, &g->owned[7]);
    g->kind_flops[G_HEAD] = 2.0 * T * (double)m->lm_head.rows * (double)m->lm_head.cols;
    g->flops += g->kind_flops[G_HEAD];
}

/* One pass of the GEMM-only sequence; per-kind seconds into kt[G_KINDS]. */
static double ceiling_run(ceiling_t *g, double *kt)
{
    const tp_model *m = g->m;
    int T = g->T;
    for (int k = 0; k < G_KINDS; k++) kt[k] = 0;
    double t_all = now_s();
    for (int L = 0; L < m->cfg.num_layers; L++) {
        const tp_mat *mats[7];
        model_layer_mats(m, L, mats, NULL);
        for (int i = 0; i < 7; i++) {
            const tp_mat *w = mats[i];
            double t0 = now_s();
            cpu_gemm_nt(T, w->rows, w->cols, 1.0f, g->A, w->cols, g->W[L][i], w->cols, 0.0f, g->C,
                        w->rows);
            kt[i] += now_s() - t0;
        }
    }
    const tp_mat *h = &m->lm_head;
    double t0 = now_s();
    cpu_gemm_nt(T, h->rows, h->cols, 1.0f, g->A, h->cols, g->Wh, h->cols, 0.0f, g->C, h->rows);
    double t1 = now_s();
    kt[G_HEAD] = t1 - t0;
    return t1 - t_all;
}

static void ceiling_free(ceiling_t *g)
{
    for (int i = 0; i < 8; i++) free(g->owned[i]);
    free(g->A);
    free(g->C);
    free(g->W);
}

/* ---- BF16/F16 -> f32 conversion alone, tile by tile as fwd_linear does ------ */

static void run_conversion(const tp_model *m, int reps)
{
    const tp_model_config *c = &m->cfg;
    const size_t tile_max = (size_t)4 << 20;   /* WTILE_MAX_ELEMS in forward.c */
    float *tile = malloc(tile_max * sizeof *tile);
    if (!tile) DIE("out of memory");
    double *tt = calloc((size_t)reps, sizeof *tt);
    if (!tt) DIE("out of memory");
    double elems = 0;
    for (int rep = -1; rep < reps; rep++) {
        double t0 = now_s();
        for (int L = -1; L < c->num_layers; L++) {
            const tp_mat *mats[7];
            int n = 1;
            if (L < 0) mats[0] = &m->lm_head;
            else n = model_layer_mats(m, L, mats, NULL);
            for (int i = 0; i < n; i++) {
                const tp_mat *w = mats[i];
                if (w->dtype == TP_DTYPE_F32) continue;
                size_t R = tile_max / (size_t)w->cols, esz = tp_dtype_size(w->dtype);
                if (R < 1) R = 1;
                for (size_t r0 = 0; r0 < (size_t)w->rows; r0 += R) {
                    size_t r = (size_t)w->rows - r0 < R ? (size_t)w->rows - r0 : R;
                    tp_convert_to_f32(w->dtype, (const char *)w->data + r0 * (size_t)w->cols * esz,
                                      tile, r * (size_t)w->cols);
                    if (rep == 0) elems += (double)(r * (size_t)w->cols);
                }
            }
        }
        if (rep >= 0) tt[rep] = now_s() - t0;
    }
    if (elems > 0) {
        double med = median(tt, reps);
        printf("convert_kernel=%s\n", tp_dtype_kernel_name());
        double lo = tt[0], hi = tt[0];
        for (int i = 1; i < reps; i++) {
            lo = tt[i] < lo ? tt[i] : lo;
            hi = tt[i] > hi ? tt[i] : hi;
        }
        printf("convert_ms=%.1f convert_min_ms=%.1f convert_max_ms=%.1f convert_gelem_per_s=%.2f\n",
               1e3 * med, 1e3 * lo, 1e3 * hi, elems / med / 1e9);
    }
    free(tt);
    free(tile);
}

/* ---- --serve: one pass per command, for the paired driver ------------------- */

static int serve_loop(tp_model *m, tp_forward *f, const int32_t *ids, int T, tp_hooks *hooks,
                      double fl)
{
    const float *logits = NULL;
    CHECK(forward_run(f, ids, 1, T, hooks, TP_LOGITS_ALL, -1, &logits));   /* warm-up */
    printf("gflop=%.2f peak_rss_mb=%.0f\nready\n", fl / 1e9, peak_rss_mb());
    fflush(stdout);
    ceiling_t g;
    int have_ceiling = 0;
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        if (!strncmp(line, "run", 3)) {
            double ts = now_s();
            CHECK(forward_run(f, ids, 1, T, hooks, TP_LOGITS_ALL, -1, &logits));
            printf("forward_s=%.6f\n", now_s() - ts);
        } else if (!strncmp(line, "ceil", 4)) {
            double kr[G_KINDS];
            if (!have_ceiling) {
                ceiling_init(&g, m, T);
                have_ceiling = 1;
                ceiling_run(&g, kr);   /* warm-up */
                printf("ceiling_gflop=%.2f\n", g.flops / 1e9);
            }
            printf("ceiling_s=%.6f\n", ceiling_run(&g, kr));
        } else if (!strncmp(line, "quit", 4)) {
            break;
        } else {
            printf("error=unknown command\n");
        }
        fflush(stdout);
    }
    if (have_ceiling) ceiling_free(&g);
    hooks_free(hooks);
    forward_free(f);
    model_close(m);
    return 0;
}

/* ---- main ------------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr,
            "usage: bench_forward --model DIR [--conversion per_matrix|upfront] [--seq 512]\n"
            "                     [--threads 2] [--reps 5] [--capture-layer L]\n"
            "                     [--gemm auto|openblas] [--bf16-compute auto|on|off] [--no-profile]\n"
            "                     [--no-ceiling] [--serve]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *dir = NULL, *conv = "per_matrix", *gemm = "auto", *bf16 = "auto";
    int T = 512, threads = 2, reps = 5, cap_layer = -1, do_profile = 1, do_ceiling = 1, serve = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--no-profile")) { do_profile = 0; continue; }
        if (!strcmp(a, "--no-ceiling")) { do_ceiling = 0; continue; }
        if (!strcmp(a, "--serve")) { serve = 1; continue; }
        if (!v) usage();
        if (!strcmp(a, "--model")) dir = v;
        else if (!strcmp(a, "--conversion")) conv = v;
        else if (!strcmp(a, "--gemm")) gemm = v;
        else if (!strcmp(a, "--bf16-compute")) bf16 = v;
        else if (!strcmp(a, "--seq")) T = atoi(v);
        else if (!strcmp(a, "--threads")) threads = atoi(v);
        else if (!strcmp(a, "--reps")) reps = atoi(v);
        else if (!strcmp(a, "--capture-layer")) cap_layer = atoi(v);
        else usage();
        i++;
    }
    if (!dir || T < 1 || threads < 1 || reps < 1) usage();
    tp_convert_mode mode;
    if (!strcmp(conv, "per_matrix")) mode = TP_CONVERT_PER_MATRIX;
    else if (!strcmp(conv, "upfront")) mode = TP_CONVERT_UPFRONT;
    else DIE("--conversion must be per_matrix or upfront, not '%s'", conv);

    if (strcmp(gemm, "auto") && strcmp(gemm, "openblas")) DIE("--gemm must be auto or openblas, not '%s'", gemm);
    tp_backend *be = NULL;
    tp_bf16_compute b16 = TP_BF16_COMPUTE_AUTO;
    if (!strcmp(bf16, "on")) b16 = TP_BF16_COMPUTE_ON;
    else if (!strcmp(bf16, "off")) b16 = TP_BF16_COMPUTE_OFF;
    else if (strcmp(bf16, "auto")) DIE("--bf16-compute must be auto, on or off, not '%s'", bf16);
    CHECK(backend_open("cpu", &(tp_backend_options){.threads = threads, .own_gemm = !strcmp(gemm, "auto"),
                                                    .bf16_compute = b16}, &be));
    tp_backend_info info;
    be_info(be, &info);
    printf("blas=%s threads=%d cpu_features=%s gemm=%s\n", openblas_get_corename(), info.threads, info.kernels,
           info.linear_gemm);

    double t0 = now_s();
    tp_model *m = NULL;
    CHECK(model_open(dir, mode, &m));
    double t_load = now_s() - t0;
    const tp_model_config *c = &m->cfg;
    printf("model=%s layers=%d weight_dtype=%s conversion=%s\n", dir, c->num_layers,
           tp_dtype_name(m->weight_dtype), conv);
    printf("load_s=%.2f rss_after_load_mb=%.0f upfront_mb=%.0f\n", t_load, peak_rss_mb(),
           (double)m->upfront_bytes / 1048576.0);
    printf("f32_weights_mb=%.0f\n", (double)m->n_params * 4.0 / 1048576.0);

    tp_forward *f = NULL;
    CHECK(forward_new(m, 1, T, &f));
    int L = cap_layer >= 0 ? cap_layer : c->num_layers / 2;
    if (L >= c->num_layers) DIE("--capture-layer %d: model has %d layers", L, c->num_layers);

    capture_t cap = {.n = (size_t)T * (size_t)c->hidden_size};
    cap.buf = malloc(cap.n * sizeof(float));
    int32_t *ids = malloc((size_t)T * sizeof *ids);
    double *times = calloc((size_t)reps, sizeof *times);
    if (!cap.buf || !ids || !times) DIE("out of memory");
    uint64_t s = 1234;
    for (int t = 0; t < T; t++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        ids[t] = (int32_t)((s >> 33) % (uint64_t)c->vocab_size);
    }

    tp_hooks *hooks = NULL;
    CHECK(hooks_new(c->num_layers, &hooks));
    CHECK(hooks_add(hooks, L, TP_HOOK_RESID_POST, capture_cb, &cap));

    const float *logits = NULL;
    double fl = forward_flops(c, 1, T, TP_LOGITS_ALL);
    if (serve) {
        int rc = serve_loop(m, f, ids, T, hooks, fl);
        free(cap.buf);
        free(ids);
        free(times);
        return rc;
    }
    long flt0 = 0, majflt0 = 0, flt1, majflt1;
    for (int rep = -1; rep < reps; rep++) {   /* rep -1: warm-up */
        if (rep == 0) page_faults(&flt0, &majflt0);
        double ts = now_s();
        CHECK(forward_run(f, ids, 1, T, hooks, TP_LOGITS_ALL, -1, &logits));
        if (rep >= 0) times[rep] = now_s() - ts;
    }
    page_faults(&flt1, &majflt1);
    double rss = peak_rss_mb();
    int finite = 1;
    for (size_t i = 0; i < (size_t)T * (size_t)c->vocab_size; i++)
        if (!isfinite(logits[i])) { finite = 0; break; }
    for (size_t i = 0; i < cap.n; i++)
        if (!isfinite(cap.buf[i])) { finite = 0; break; }
    double cap_sum = 0;
    for (size_t i = 0; i < cap.n; i++) cap_sum += cap.buf[i];

    double med = median(times, reps), lo = times[0], hi = times[0];
    for (int i = 1; i < reps; i++) {
        lo = times[i] < lo ? times[i] : lo;
        hi = times[i] > hi ? times[i] : hi;
    }
    printf("seq=%d capture_layer=%d reps=%d scratch_mb=%.0f\n", T, L, reps,
           (double)forward_scratch_bytes(f) / 1048576.0);
    printf("median_s=%.4f min_s=%.4f max_s=%.4f\n", med, lo, hi);
    printf("pass_s=");
    for (int i = 0; i < reps; i++) printf("%s%.3f", i ? "," : "", times[i]);
    printf("\nfaults_per_pass minor=%.0f major=%.0f\n", (double)(flt1 - flt0) / reps,
           (double)(majflt1 - majflt0) / reps);
    printf("tokens_per_s=%.1f\n", T / med);
    printf("gflop=%.2f gflops=%.1f\n", fl / 1e9, fl / med / 1e9);
    printf("peak_rss_mb=%.0f\n", rss);
    printf("finite=%d capture_sum=%.6g\n", finite, cap_sum);

    if (do_ceiling) {
        /* the OpenBLAS path's separate conversion (the kernel converts while packing) */
        if (mode == TP_CONVERT_PER_MATRIX && !strcmp(info.linear_gemm, "openblas")) run_conversion(m, reps);
        /* Forward and GEMM-only passes alternate, so a slow spell of the machine hits
         * both sides of each pair; the ratio is the median of the per-pair ratios. */
        ceiling_t g;
        ceiling_init(&g, m, T);
        double *ct = calloc((size_t)reps, sizeof *ct), *ft = calloc((size_t)reps, sizeof *ft);
        double *ratio = calloc((size_t)reps, sizeof *ratio);
        double *kt = calloc((size_t)G_KINDS * (size_t)reps, sizeof *kt);
        if (!ct || !ft || !ratio || !kt) DIE("out of memory");
        for (int rep = -1; rep < reps; rep++) {
            double kr[G_KINDS];
            double tc = ceiling_run(&g, kr);
            double ts = now_s();
            CHECK(forward_run(f, ids, 1, T, hooks, TP_LOGITS_ALL, -1, &logits));
            double tf = now_s() - ts;
            if (rep < 0) continue;
            ct[rep] = tc;
            ft[rep] = tf;
            ratio[rep] = (fl / tf) / (g.flops / tc);
            for (int k = 0; k < G_KINDS; k++) kt[(size_t)k * reps + rep] = kr[k];
        }
        double mc = median(ct, reps), mf = median(ft, reps);
        printf("ceiling_gflop=%.2f ceiling_median_s=%.4f ceiling_gflops=%.1f\n", g.flops / 1e9, mc,
               g.flops / mc / 1e9);
        printf("paired_forward_median_s=%.4f paired_forward_gflops=%.1f\n", mf, fl / mf / 1e9);
        printf("forward_over_ceiling=%.3f\n", median(ratio, reps));
        for (int k = 0; k < G_KINDS; k++) {
            double mk = median(kt + (size_t)k * reps, reps);
            printf("ceiling_%s_ms=%.1f ceiling_%s_gflops=%.1f\n", gemm_kind_name[k], 1e3 * mk,
                   gemm_kind_name[k], g.kind_flops[k] / mk / 1e9);
        }
        free(ct);
        free(ft);
        free(ratio);
        free(kt);
        ceiling_free(&g);
    }

    if (do_profile) {
        tp_hooks *ph = NULL;
        profile_t prof;
        CHECK(hooks_new(c->num_layers, &ph));
        /* The stamp goes first, so the capture copy is charged to the next phase. */
        for (int l = 0; l < c->num_layers; l++)
            for (int pt = 0; pt < TP_HOOK_LAYER_COUNT; pt++) {
                if (pt == TP_HOOK_PATTERN) continue;
                CHECK(hooks_add(ph, l, (tp_hook_point)pt, stamp_cb, &prof));
                if (l == L && pt == TP_HOOK_RESID_POST)
                    CHECK(hooks_add(ph, l, (tp_hook_point)pt, capture_cb, &cap));
            }
        CHECK(hooks_add(ph, -1, TP_HOOK_EMBED, stamp_cb, &prof));
        CHECK(hooks_add(ph, -1, TP_HOOK_LN_FINAL, stamp_cb, &prof));
        int np = TP_HOOK_POINT_COUNT + 1;
        double *pt_times = calloc((size_t)np * (size_t)reps, sizeof *pt_times);
        double *tot = calloc((size_t)reps, sizeof *tot);
        if (!pt_times || !tot) DIE("out of memory");
        for (int rep = -1; rep < reps; rep++) {
            memset(&prof, 0, sizeof prof);
            prof.last = now_s();
            double ts = prof.last;
            CHECK(forward_run(f, ids, 1, T, ph, TP_LOGITS_ALL, -1, &logits));
            double te = now_s();
            prof.acc[PHASE_END] += te - prof.last;
            if (rep < 0) continue;
            tot[rep] = te - ts;
            for (int p = 0; p < np; p++) pt_times[(size_t)p * reps + rep] = prof.acc[p];
        }
        double attn_fl = 4.0 * c->num_heads * (double)T * T * c->head_dim * c->num_layers;
        printf("profile_total_ms=%.1f\n", 1e3 * median(tot, reps));
        for (int p = 0; p < np; p++) {
            if (p == TP_HOOK_PATTERN) continue;
            double ms = 1e3 * median(pt_times + (size_t)p * reps, reps);
            printf("phase %-20s %8.1f ms  %s", phase_key(p), ms, phase_label(p));
            if (p == TP_HOOK_Z) printf(" (%.1f GFLOP/s)", attn_fl / (ms * 1e-3) / 1e9);
            printf("\n");
        }
        free(pt_times);
        free(tot);
        hooks_free(ph);
    }

    hooks_free(hooks);
    forward_free(f);
    model_close(m);
    free(cap.buf);
    free(ids);
    free(times);
    return 0;
}
