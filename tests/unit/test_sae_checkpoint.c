/* checkpoints/sae/checkpoint.json as a resume reads it (sae_checkpoint_read): the
 * position and each hook's record when it fits the run, and an error naming the
 * file and the field — nothing filled in — when it does not (another configuration,
 * a negative or inconsistent position, not JSON); no file is no checkpoint. The
 * inputs are the fuzz target's seeds (tests/fuzz/corpus/sae_checkpoint). */
#include "tp_test.h"

#include "analysis/sae/sae_phase.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const hooks[2] = {"blocks.1.hook_resid_post", "blocks.2.hook_resid_post"};

/* The run the seeds were written for: 2 epochs of 3 windows of 148 rows, batches of
 * 4 (37 a window: epoch 0, window 1, batch 3 is step 40). */
static int64_t rows148(void *user, int64_t e, int64_t w)
{
    (void)user, (void)e, (void)w;
    return 148;
}
static const sae_ck_shape shape = {.epochs = 2, .windows = 3, .batch = 4, .window_rows = rows148};

static tp_status read_file(const char *path, sae_checkpoint *ck, sae_metrics *last, json_t **curve)
{
    memset(last, 0, 2 * sizeof *last);
    curve[0] = curve[1] = NULL;
    *ck = (sae_checkpoint){.last = last, .curve = curve};
    tp_err_clear();
    return sae_checkpoint_read(path, "0123abcd", hooks, 2, &shape, ck);
}

static tp_status read_seed(const char *name, sae_checkpoint *ck, sae_metrics *last, json_t **curve)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/fuzz/corpus/sae_checkpoint/%s", getenv("TP_SOURCE_DIR"), name);
    return read_file(path, ck, last, curve);
}

START_TEST(test_resume_record)
{
    sae_checkpoint ck;
    sae_metrics last[2];
    json_t *curve[2];
    ck_assert_msg(read_seed("valid.json", &ck, last, curve) == TP_OK, "%s", tp_err_msg());
    ck_assert(ck.present);
    ck_assert_int_eq(ck.step, 40);
    ck_assert_int_eq(ck.window, 1);
    ck_assert_int_eq(ck.batch, 3);
    ck_assert_int_eq(last[0].step, 40);
    ck_assert(last[1].fvu == 0.2);
    ck_assert_int_eq((int)json_array_size(curve[0]), 2);
    ck_assert(curve[1] && json_array_size(curve[1]) == 0);
    json_decref(curve[0]);
    json_decref(curve[1]);
}
END_TEST

/* Refused with the file and the field named, nothing filled in. */
static void refused(const char *seed, const char *words)
{
    sae_checkpoint ck;
    sae_metrics last[2];
    json_t *curve[2];
    ck_assert_msg(read_seed(seed, &ck, last, curve) != TP_OK, "%s accepted", seed);
    ck_assert(ck.present && !curve[0] && !curve[1] && last[0].step == 0);
    ck_assert_msg(strstr(tp_err_msg(), seed) && strstr(tp_err_msg(), words), "%s: %s", seed, tp_err_msg());
}

START_TEST(test_not_resumed)
{
    refused("other-key.json", "was made with another configuration");
    refused("negative-step.json", "does not fit this run: step = -5 is out of range (this run: 40..40)");
    refused("older-no-jobs.json", "step = 7 is out of range (this run: 0..0)");
    refused("wrong-types.json", "does not fit this run");
    sae_checkpoint ck;
    sae_metrics last[2];
    json_t *curve[2];
    ck_assert(read_seed("no-such-file.json", &ck, last, curve) == TP_OK && !ck.present);
}
END_TEST

START_TEST(test_shapes)
{
    char path[] = "/tmp/tp_ckpt_XXXXXX";
    int fd = mkstemp(path);
    ck_assert(fd >= 0);
    FILE *f = fdopen(fd, "w");
    sae_checkpoint ck;
    sae_metrics last[2];
    json_t *curve[2];
    /* no per-hook record (older checkpoints): the position alone */
    fputs("{\"key\": \"0123abcd\", \"step\": 111, \"epoch\": 1, \"window\": 0, \"batch\": 0}", f);
    fclose(f);
    ck_assert_msg(read_file(path, &ck, last, curve) == TP_OK, "%s", tp_err_msg());
    ck_assert(ck.present && ck.step == 111 && ck.epoch == 1 && !curve[0]);
    /* the end of training: epoch E, window 0, batch 0 */
    f = fopen(path, "w");
    fputs("{\"key\": \"0123abcd\", \"step\": 222, \"epoch\": 2, \"window\": 0, \"batch\": 0}", f);
    fclose(f);
    ck_assert_msg(read_file(path, &ck, last, curve) == TP_OK, "%s", tp_err_msg());
    /* past the window's batches, and not JSON */
    f = fopen(path, "w");
    fputs("{\"key\": \"0123abcd\", \"step\": 37, \"epoch\": 0, \"window\": 0, \"batch\": 37}", f);
    fclose(f);
    ck_assert(read_file(path, &ck, last, curve) != TP_OK && strstr(tp_err_msg(), "batch = 37 is out of range (this run: 0..36)"));
    f = fopen(path, "w");
    fputs("{\"key\": \"0123abcd\", \"step\": 3", f);
    fclose(f);
    ck_assert(read_file(path, &ck, last, curve) != TP_OK && strstr(tp_err_msg(), "is not a readable checkpoint"));
    unlink(path);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sae_checkpoint");
    TCase *tc = tcase_create("read");
    tcase_add_test(tc, test_resume_record);
    tcase_add_test(tc, test_not_resumed);
    tcase_add_test(tc, test_shapes);
    suite_add_tcase(s, tc);
    return tp_test_run_suite(s);
}
