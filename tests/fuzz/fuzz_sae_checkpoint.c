/* fuzz_sae_checkpoint — checkpoints/sae/checkpoint.json as a resumed SAE phase reads
 * it (sae_checkpoint_read), against a fixed run shape. */
#include "fuzz.h"
#include "analysis/sae/sae_phase.h"

/* 2 epochs of 3 windows of 148 rows (the seeds' run), batches of 4 */
static int64_t rows148(void *user, int64_t e, int64_t w)
{
    (void)user, (void)e, (void)w;
    return 148;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *hooks[3] = {"blocks.1.hook_resid_post", "blocks.2.hook_resid_post", "blocks.1.hook_resid_post"};
    sae_metrics last[3] = {{0}};
    json_t *curve[3] = {NULL, NULL, NULL};
    sae_checkpoint ck = {.last = last, .curve = curve};
    const sae_ck_shape shape = {.epochs = 2, .windows = 3, .batch = 4, .window_rows = rows148};
    tp_status st = sae_checkpoint_read(fuzz_write_file("checkpoint.json", data, size), "0123abcd", hooks, 3, &shape, &ck);
    /* an accepted position is a batch of this run, its step the batches before it */
    if (st == TP_OK && ck.present &&
        (ck.epoch < 0 || ck.epoch > 2 || ck.window < 0 || ck.window > 2 || ck.batch < 0 || ck.batch > 36 ||
         ck.step != (ck.epoch * 3 + ck.window) * 37 + ck.batch))
        abort();
    for (int i = 0; i < 3; i++) json_decref(curve[i]);
    tp_err_clear();
    return 0;
}
