/* fuzz_sae_checkpoint — checkpoints/sae/checkpoint.json as a resumed SAE phase reads
 * it (sae_checkpoint_read). */
#include "fuzz.h"
#include "analysis/sae/sae_phase.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *hooks[3] = {"blocks.1.hook_resid_post", "blocks.2.hook_resid_post", "blocks.1.hook_resid_post"};
    sae_metrics last[3] = {{0}};
    json_t *curve[3] = {NULL, NULL, NULL};
    sae_checkpoint ck = {.last = last, .curve = curve};
    (void)sae_checkpoint_read(fuzz_write_file("checkpoint.json", data, size), "0123abcd", hooks, 3, &ck);
    if (ck.ok && (ck.step < 0 || ck.epoch < 0 || ck.window < 0 || ck.batch < 0)) abort();
    for (int i = 0; i < 3; i++) json_decref(curve[i]);
    tp_err_clear();
    return 0;
}
