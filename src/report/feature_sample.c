/* feature_sample.c — SAE feature activations on sampled store rows (feature_sample.h). */
#include "report/feature_sample.h"

#include "analysis/sae/sae_export.h"
#include "io/store.h"
#include "run_layout.h"

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BLOCKS 64

void feature_sample_free(feature_sample *s)
{
    for (int i = 0; s->fired && i < s->n; i++) free(s->fired[i]);
    free(s->fired), free(s->n_fired);
    memset(s, 0, sizeof *s);
}

static tp_status append(feature_sample *s, int i, float v, size_t *cap)
{
    if (s->n_fired[i] == cap[i]) {
        size_t c = cap[i] ? 2 * cap[i] : 64;
        float *p = realloc(s->fired[i], c * sizeof *p);
        if (!p) return tp_err(TP_ERR_NOMEM, "report: out of memory for feature activations");
        s->fired[i] = p, cap[i] = c;
    }
    s->fired[i][s->n_fired[i]++] = v;
    return TP_OK;
}

tp_status feature_sample_read(const char *run_dir, const char *hook, const int *ids, int n, int64_t max_rows,
                              feature_sample *out)
{
    memset(out, 0, sizeof *out);
    char store_path[TP_PATH_MAX], sae_dir[TP_PATH_MAX], ds[512];
    TP_CHECK(run_path(store_path, sizeof store_path, run_dir, RUN_STORE));
    TP_CHECK(run_sae_dir(sae_dir, sizeof sae_dir, run_dir, hook));
    if (!fs_exists(store_path)) return tp_err(TP_ERR_IO, "no activation store %s", store_path);
    saelens_sae sae;
    TP_CHECK(saelens_load(sae_dir, &sae));
    tp_store *st = NULL;
    tp_status rc = store_open_read(store_path, MPI_COMM_SELF, &st);
    float *rows = NULL, *recon = NULL, *codes = NULL;
    uint8_t *mask = NULL;
    size_t *cap = NULL;
    int act = -1;
    if (rc != TP_OK) goto done;
    act = store_find_act(st, hook);
    snprintf(ds, sizeof ds, "acts/%s", hook);
    if (act < 0 || !store_is_complete(st, ds) || !store_is_complete(st, "mask")) {
        rc = tp_err(TP_ERR_FORMAT, "%s: no complete /acts/%s", store_path, hook);
        goto done;
    }
    const int64_t d = store_act(st, act)->cols, F = sae.d_sae, N = store_rows(st);
    if (d != sae.d_in) {
        rc = tp_err(TP_ERR_FORMAT, "%s: d_in %lld but the store's /acts/%s has %lld columns", sae_dir,
                    (long long)sae.d_in, hook, (long long)d);
        goto done;
    }
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= F) {
            rc = tp_err(TP_ERR_RANGE, "feature %d outside the SAE's %lld", ids[i], (long long)F);
            goto done;
        }
    out->n = n;
    out->fired = calloc((size_t)n, sizeof *out->fired);
    out->n_fired = calloc((size_t)n, sizeof *out->n_fired);
    cap = calloc((size_t)n, sizeof *cap);
    int64_t take = max_rows < N ? max_rows : N, blk = (take + BLOCKS - 1) / BLOCKS;
    if (blk < 1) blk = 1;
    rows = tp_malloc((size_t)(blk * d) * sizeof *rows);
    recon = tp_malloc((size_t)(blk * d) * sizeof *recon);
    codes = tp_malloc((size_t)(blk * F) * sizeof *codes);
    mask = tp_malloc((size_t)blk);
    if (!out->fired || !out->n_fired || !cap || !rows || !recon || !codes || !mask) {
        rc = tp_err(TP_ERR_NOMEM, "report: out of memory for %lld rows of %s", (long long)blk, hook);
        goto done;
    }
    int64_t nblocks = (take + blk - 1) / blk;
    for (int64_t b = 0; b < nblocks && rc == TP_OK; b++) {
        /* every row in order, or block b at an even share of the store (the last ends at its end) */
        int64_t r0 = take == N ? b * blk : nblocks > 1 ? (N - blk) * b / (nblocks - 1) : 0;
        int64_t m = blk < N - r0 ? blk : N - r0;
        if ((rc = store_read_u8(st, "mask", r0, m, mask)) != TP_OK) break;
        if ((rc = store_read_acts(st, act, r0, m, rows)) != TP_OK) break;
        int64_t kept = 0;
        for (int64_t r = 0; r < m; r++)
            if (mask[r]) memmove(rows + kept * d, rows + r * d, (size_t)d * sizeof *rows), kept++;
        if (!kept) continue;
        if ((rc = saelens_reconstruct(&sae, rows, kept, recon, codes)) != TP_OK) break;
        out->rows += kept;
        for (int64_t r = 0; r < kept && rc == TP_OK; r++)
            for (int i = 0; i < n && rc == TP_OK; i++) {
                float v = codes[r * F + ids[i]];
                if (v > 0) rc = append(out, i, v, cap);
            }
    }
done:
    if (st) {
        if (rc == TP_OK) rc = store_close(st);
        else store_close_after_error(st);
    }
    saelens_free(&sae);
    free(rows), free(recon), free(codes), free(mask), free(cap);
    if (rc != TP_OK) feature_sample_free(out);
    return rc;
}
