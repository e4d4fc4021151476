/* bench_gpu.c — the CUDA backend's `linear` at prefill shapes against cuBLAS itself
 * (cublasGemmEx, bf16 × bf16 → f32, compute 32F: the ceiling), same GPU, same process,
 * alternating round by round; and both against the GPU's bf16 dense peak (issue 19:
 * linear ≥ 50 % of peak). Run by tools/bench/gpu.sh.
 *
 *   bench_gpu [--m "4096 8192 16384"] [--shapes "2048x2048 8192x2048 2048x8192"]
 *             [--type bf16|f16|f32] [--reps 10] [--rounds 3] [--peak TFLOPS] [--device 0]
 *
 * A shape is NxK: W [N, K] (nn.Linear's layout, stored in --type), X [m, K] f32,
 * Y [m, N] f32; the default shapes are OLMo-2-1B's q/k/v/o (2048x2048), gate/up
 * (8192x2048) and down (2048x8192). The backend's linear rounds X to the weights' type
 * into scratch on every call, then one cublasGemmEx: that conversion is part of its
 * time. The ceiling gets X already rounded (no conversion) and W in the same type.
 * Timing: `reps` calls queued back to back, then a stream / device sync, host wall
 * time / reps; one warm-up call each first; median over `rounds` (backend and cuBLAS
 * alternating). TFLOP/s = 2·m·N·K / s.
 *
 * Peak (dense, no sparsity): --peak, else from the device name: H100 PCIe 756,
 * other H100 (SXM / HBM3 / NVL) 989, H200 989, H800 989, A100 312; unknown: 0 (no
 * fraction printed, only the ratio to cuBLAS). For f32 weights the TF32 figure is not
 * assumed: no fraction.
 *
 * Output: JSON lines, one per (m, shape), plus one "device" line first. No GPU (or a
 * build without CUDA): one line {"bench":"gpu_linear","skipped":"..."} and exit 0.
 */
#include "backend/backend.h"
#include "core/dtype.h"
#include "core/error.h"

#define BENCH_NAME "bench_gpu"
#include "bench_common.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef TP_HAVE_CUDA
int main(void)
{
    printf("{\"bench\":\"gpu_linear\",\"skipped\":\"CUDA backend not built\"}\n");
    return 0;
}
#else
#include "backend/cuda/cuda.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#define CU(expr)                                                                                    \
    do {                                                                                            \
        cudaError_t e_ = (expr);                                                                    \
        if (e_ != cudaSuccess) DIE("%s: %s (%d)", #expr, cudaGetErrorString(e_), (int)e_);          \
    } while (0)
#define CB(expr)                                                                                    \
    do {                                                                                            \
        cublasStatus_t e_ = (expr);                                                                 \
        if (e_ != CUBLAS_STATUS_SUCCESS) DIE("%s: cuBLAS status %d", #expr, (int)e_);               \
    } while (0)

static double peak_from_name(const char *name)
{
    if (strstr(name, "H100")) return strstr(name, "PCIe") ? 756.0 : 989.0;
    if (strstr(name, "H200") || strstr(name, "H800") || strstr(name, "GH200")) return 989.0;
    if (strstr(name, "A100")) return 312.0;
    return 0.0;
}

static void fill(float *v, size_t n, uint64_t *s, float scale)
{
    for (size_t i = 0; i < n; i++) {
        *s = *s * 6364136223846793005ull + 1442695040888963407ull;
        v[i] = (float)((double)(*s >> 40) / 16777216.0 - 0.5) * scale;
    }
}

int main(int argc, char **argv)
{
    const char *ms = "4096 8192 16384", *shapes = "2048x2048 8192x2048 2048x8192", *type = "bf16";
    int reps = 10, rounds = 3, device = 0;
    double peak = -1;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--m")) ms = argv[i + 1];
        else if (!strcmp(argv[i], "--shapes")) shapes = argv[i + 1];
        else if (!strcmp(argv[i], "--type")) type = argv[i + 1];
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--rounds")) rounds = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--peak")) peak = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--device")) device = atoi(argv[i + 1]);
        else DIE("unknown option %s", argv[i]);
    }
    if (argc % 2 == 0) DIE("options take a value");
    if (reps < 1 || rounds < 1) DIE("--reps and --rounds must be >= 1");
    tp_dtype dt = !strcmp(type, "bf16") ? TP_DTYPE_BF16 : !strcmp(type, "f16") ? TP_DTYPE_F16 : TP_DTYPE_F32;
    cudaDataType_t cdt = dt == TP_DTYPE_BF16 ? CUDA_R_16BF : dt == TP_DTYPE_F16 ? CUDA_R_16F : CUDA_R_32F;
    const size_t esz = tp_dtype_size(dt);

    int ndev = 0;
    char name[256];
    if (cuda_probe(&ndev, name, sizeof name) != TP_OK || ndev <= device) {
        /* the probe's message starts "no GPU: " */
        printf("{\"bench\":\"gpu_linear\",\"skipped\":\"%s\"}\n", ndev == 0 ? tp_err_msg() : "no GPU: --device out of range");
        return 0;
    }
    if (peak < 0) peak = peak_from_name(name);
    if (dt == TP_DTYPE_F32) peak = 0;
    tp_backend_options opt = {.device = device};
    tp_backend *be = NULL;
    CHECK(backend_open("cuda", &opt, &be));
    tp_backend_info bi;
    be_info(be, &bi);
    CU(cudaSetDevice(device));
    cublasHandle_t h;
    CB(cublasCreate(&h));
    printf("{\"bench\":\"gpu_linear\",\"kind\":\"device\",\"name\":\"%s\",\"backend_device\":\"%s\","
           "\"linear_gemm\":\"%s\",\"type\":\"%s\",\"peak_tflops\":%.0f,\"peak_source\":\"%s\",\"reps\":%d,"
           "\"rounds\":%d}\n",
           name, bi.device, bi.linear_gemm, type, peak, peak > 0 ? "device name / --peak" : "unknown", reps,
           rounds);
    fflush(stdout);

    const char *pm = ms;
    long long m;
    int used;
    while (sscanf(pm, " %lld%n", &m, &used) == 1) {
        pm += used;
        const char *ps = shapes;
        long long N, K;
        while (sscanf(ps, " %lldx%lld%n", &N, &K, &used) == 2) {
            ps += used;
            const size_t nx = (size_t)m * (size_t)K, nw = (size_t)N * (size_t)K, ny = (size_t)m * (size_t)N;
            float *hx = malloc(nx * 4), *hw = malloc(nw * 4), *hy = malloc(ny * 4), *hyc = malloc(ny * 4);
            void *hwt = malloc(nw * esz), *hxt = malloc(nx * esz);
            if (!hx || !hw || !hy || !hyc || !hwt || !hxt) DIE("out of host memory");
            uint64_t s = 42;
            fill(hx, nx, &s, 1.0f);
            fill(hw, nw, &s, 0.05f);
            if (dt == TP_DTYPE_F32) memcpy(hwt, hw, nw * 4), memcpy(hxt, hx, nx * 4);
            else tp_convert_from_f32(dt, hw, hwt, nw), tp_convert_from_f32(dt, hx, hxt, nx);
            void *dx, *dw, *dy, *dxt, *dyc;
            CHECK(be_alloc(be, nx * 4, &dx));
            CHECK(be_alloc(be, nw * esz, &dw));
            CHECK(be_alloc(be, ny * 4, &dy));
            CHECK(be_alloc(be, nx * esz, &dxt));
            CHECK(be_alloc(be, ny * 4, &dyc));
            CHECK(be_upload(be, dx, hx, nx * 4));
            CHECK(be_upload(be, dw, hwt, nw * esz));
            CHECK(be_upload(be, dxt, hxt, nx * esz));
            tp_linear_out o = {.w = dw, .n = N, .ldw = K, .dtype = dt, .y = dy, .ldy = N};
            const float one = 1.0f, zero = 0.0f;
            double *tb = calloc((size_t)rounds, sizeof *tb), *tc = calloc((size_t)rounds, sizeof *tc);
            if (!tb || !tc) DIE("out of host memory");
            for (int r = -1; r < rounds; r++) {   /* r = -1: warm-up (one call each) */
                int n = r < 0 ? 1 : reps;
                double t0 = now_s();
                for (int i = 0; i < n; i++) CHECK(be_linear(be, m, K, dx, K, &o, 1));
                CHECK(be_sync(be));
                double t1 = now_s();
                for (int i = 0; i < n; i++)
                    CB(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)N, (int)m, (int)K, &one, dw, cdt, (int)K, dxt,
                                    cdt, (int)K, &zero, dyc, CUDA_R_32F, (int)N, CUBLAS_COMPUTE_32F,
                                    CUBLAS_GEMM_DEFAULT));
                CU(cudaDeviceSynchronize());
                double t2 = now_s();
                if (r >= 0) tb[r] = (t1 - t0) / n, tc[r] = (t2 - t1) / n;
            }
            CHECK(be_download(be, hy, dy, ny * 4));
            CHECK(be_download(be, hyc, dyc, ny * 4));
            double diff = 0, scale = 0;
            for (size_t i = 0; i < ny; i++) {
                double d = fabs((double)hy[i] - (double)hyc[i]);
                diff = d > diff ? d : diff;
                scale = fabs((double)hyc[i]) > scale ? fabs((double)hyc[i]) : scale;
            }
            const double fl = 2.0 * (double)m * (double)N * (double)K, sb = median(tb, rounds),
                         sc = median(tc, rounds), tfb = fl / sb / 1e12, tfc = fl / sc / 1e12;
            printf("{\"bench\":\"gpu_linear\",\"kind\":\"shape\",\"m\":%lld,\"n\":%lld,\"k\":%lld,\"type\":\"%s\","
                   "\"linear_s\":%.6g,\"linear_tflops\":%.1f,\"cublas_s\":%.6g,\"cublas_tflops\":%.1f,"
                   "\"linear_vs_cublas\":%.3f,\"peak_tflops\":%.0f,\"linear_frac_peak\":%.3f,"
                   "\"cublas_frac_peak\":%.3f,\"max_diff_rel\":%.2e}\n",
                   m, N, K, type, sb, tfb, sc, tfc, tfb / tfc, peak, peak > 0 ? tfb / peak : 0.0,
                   peak > 0 ? tfc / peak : 0.0, diff / (scale + 1e-30));
            fflush(stdout);
            be_free(be, dx), be_free(be, dw), be_free(be, dy), be_free(be, dxt), be_free(be, dyc);
            free(hx), free(hw), free(hy), free(hyc), free(hwt), free(hxt), free(tb), free(tc);
        }
    }
    cublasDestroy(h);
    backend_close(be);
    return 0;
}
#endif
