/* bench_linear.c — backend/linear's GEMM against OpenBLAS sgemm on the same operands,
 * same thread count, alternating call by call (so a slow spell of the machine hits both).
 *
 *   bench_linear [--m 512] [--threads 2] [--reps 5] [--type f32|bf16|f16]
 *                [--shapes "2048x2048 8192x2048 2048x8192 100352x2048"] [--bf16-compute]
 *
 * A shape is NxK: W [N, K] (the nn.Linear layout), X [m, K], Y [m, N]. Default: the
 * OLMo-2-1B shapes (q/k/v/o, gate/up, down, LM head). For bf16/f16, W is stored in that
 * type; OpenBLAS is given the converted f32 W (its time does not include a conversion:
 * a lower bound on the OpenBLAS path's cost). Prints per shape the median seconds and
 * GFLOP/s of both, the median of the per-pair speed ratios, and the largest relative
 * difference between the two results.
 *
 * --bf16-compute (with --type bf16): the bf16 kernel (X rounded to bf16, VDPBF16PS)
 * against our f32 kernel on the same bf16 W instead of OpenBLAS (the `openblas_*`
 * columns are then the f32 kernel's): the speed-up forward.bf16_compute gives a GEMM.
 *
 * Run it with OPENBLAS_THREAD_TIMEOUT=4: otherwise OpenBLAS's threads spin for ~0.1 s
 * after each sgemm and take the core the next cpu_linear call's second thread needs.
 */
#include "backend/cpu/linear.h"   /* cpu_linear, cpu_linear_supported, cpu_linear_enable */
#include "backend/cpu/pool.h"     /* cpu_set_threads, cpu_get_threads */
#include "core/dtype.h"

#define BENCH_NAME "bench_linear"
#include "bench_common.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

int main(int argc, char **argv)
{
    int64_t m = 512;
    int threads = 2, reps = 5;
    const char *type = "f32", *shapes = "2048x2048 8192x2048 2048x8192 100352x2048";
    int bf16 = 0;
    for (int i = 1; i < argc; i += 2) {
        if (!strcmp(argv[i], "--bf16-compute")) { bf16 = 1, i--; continue; }
        if (i + 1 >= argc) DIE("option %s takes a value", argv[i]);
        if (!strcmp(argv[i], "--m")) m = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--type")) type = argv[i + 1];
        else if (!strcmp(argv[i], "--shapes")) shapes = argv[i + 1];
        else DIE("unknown option %s", argv[i]);
    }
    cpu_wtype wt = !strcmp(type, "bf16") ? CPU_W_BF16 : !strcmp(type, "f16") ? CPU_W_F16 : CPU_W_F32;
    tp_dtype dt = wt == CPU_W_BF16 ? TP_DTYPE_BF16 : TP_DTYPE_F16;
    if (!cpu_linear_supported()) DIE("this CPU has no AVX-512 (F, BW, VL): nothing to compare");
    if (bf16 && (wt != CPU_W_BF16 || !cpu_linear_bf16_supported()))
        DIE("--bf16-compute needs --type bf16 and a CPU with AVX512-BF16");
    cpu_set_threads(threads);
    printf("m=%lld threads=%d type=%s reps=%d baseline=%s\n", (long long)m, cpu_get_threads(), type, reps,
           bf16 ? "f32-kernel (the openblas_* columns)" : "openblas");

    const char *p = shapes;
    while (*p) {
        long long N, K;
        int used;
        if (sscanf(p, " %lldx%lld%n", &N, &K, &used) != 2) break;
        p += used;
        float *x = malloc((size_t)m * (size_t)K * 4), *wf = malloc((size_t)N * (size_t)K * 4);
        float *y = malloc((size_t)m * (size_t)N * 4), *yb = malloc((size_t)m * (size_t)N * 4);
        void *w = wf;
        if (!x || !wf || !y || !yb) DIE("out of memory");
        uint64_t s = 42;
        for (size_t i = 0; i < (size_t)m * (size_t)K; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            x[i] = (float)((double)(s >> 40) / 16777216.0 - 0.5);
        }
        for (size_t i = 0; i < (size_t)N * (size_t)K; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            wf[i] = (float)((double)(s >> 40) / 16777216.0 - 0.5) * 0.05f;
        }
        if (wt != CPU_W_F32) {
            w = malloc((size_t)N * (size_t)K * 2);
            if (!w) DIE("out of memory");
            tp_convert_from_f32(dt, wf, w, (size_t)N * (size_t)K);
            tp_convert_to_f32(dt, w, wf, (size_t)N * (size_t)K);
        }
        cpu_linear_out o = {w, N, K, wt, y, N};
        double *tl = calloc((size_t)reps, sizeof *tl), *tb = calloc((size_t)reps, sizeof *tb),
               *ratio = calloc((size_t)reps, sizeof *ratio);
        if (!tl || !tb || !ratio) DIE("out of memory");
        for (int r = -1; r < reps; r++) {   /* r = -1: warm-up of both */
            cpu_linear_bf16_enable(bf16);
            double t0 = now_s();
            if (cpu_linear(m, K, x, K, &o, 1)) DIE("cpu_linear failed");
            double t1 = now_s();
            if (bf16) {
                cpu_linear_out ob = {w, N, K, wt, yb, N};
                cpu_linear_bf16_enable(0);
                if (cpu_linear(m, K, x, K, &ob, 1)) DIE("cpu_linear failed");
            } else {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)N, (int)K, 1.0f, x, (int)K, wf,
                            (int)K, 0.0f, yb, (int)N);
            }
            double t2 = now_s();
            if (r >= 0) tl[r] = t1 - t0, tb[r] = t2 - t1, ratio[r] = (t2 - t1) / (t1 - t0);
        }
        double diff = 0, scale = 0;
        for (size_t i = 0; i < (size_t)m * (size_t)N; i++) {
            double d = fabs((double)y[i] - (double)yb[i]);
            diff = d > diff ? d : diff;
            scale = fabs((double)yb[i]) > scale ? fabs((double)yb[i]) : scale;
        }
        double fl = 2.0 * (double)m * (double)N * (double)K, ml = median(tl, reps), mb = median(tb, reps);
        printf("shape=%lldx%lld linear_s=%.4f linear_gflops=%.1f openblas_s=%.4f openblas_gflops=%.1f "
               "speedup=%.3f max_diff_rel=%.2e\n",
               N, K, ml, fl / ml / 1e9, mb, fl / mb / 1e9, median(ratio, reps), diff / (scale + 1e-30));
        fflush(stdout);
        if (w != wf) free(w);
        free(x), free(wf), free(y), free(yb), free(tl), free(tb), free(ratio);
    }
    return 0;
}
