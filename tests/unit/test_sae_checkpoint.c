/* checkpoints/sae/checkpoint.json as a resume reads it (sae_checkpoint_read): the
 * position and each hook's record when the key matches, nothing from another
 * configuration, a negative position or a missing file. The inputs are the fuzz
 * target's seeds (tests/fuzz/corpus/sae_checkpoint). */
#include "tp_test.h"

#include "analysis/sae/sae_phase.h"

#include <stdio.h>
#include <stdlib.h>

static const char *const hooks[2] = {"blocks.1.hook_resid_post", "blocks.2.hook_resid_post"};

static void read_seed(const char *name, sae_checkpoint *ck, sae_metrics *last, json_t **curve)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/fuzz/corpus/sae_checkpoint/%s", getenv("TP_SOURCE_DIR"), name);
    memset(last, 0, 2 * sizeof *last);
    curve[0] = curve[1] = NULL;
    *ck = (sae_checkpoint){.last = last, .curve = curve};
    ck_assert_msg(sae_checkpoint_read(path, "0123abcd", hooks, 2, ck) == TP_OK, "%s", tp_err_msg());
}

START_TEST(test_resume_record)
{
    sae_checkpoint ck;
    sae_metrics last[2];
    json_t *curve[2];
    read_seed("valid.json", &ck, last, curve);
    ck_assert(ck.ok && !ck.other_key);
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

START_TEST(test_not_resumed)
{
    sae_checkpoint ck;
    sae_metrics last[2];
    json_t *curve[2];
    read_seed("other-key.json", &ck, last, curve);
    ck_assert(!ck.ok && ck.other_key && !curve[0] && !curve[1]);
    read_seed("negative-step.json", &ck, last, curve);
    ck_assert(!ck.ok && ck.other_key && !curve[0]);
    read_seed("no-such-file.json", &ck, last, curve);
    ck_assert(!ck.ok && !ck.other_key);
    read_seed("older-no-jobs.json", &ck, last, curve);   /* no per-hook record: the position alone */
    ck_assert(ck.ok && ck.step == 7 && !curve[0]);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sae_checkpoint");
    TCase *tc = tcase_create("read");
    tcase_add_test(tc, test_resume_record);
    tcase_add_test(tc, test_not_resumed);
    suite_add_tcase(s, tc);
    return tp_test_run_suite(s);
}
