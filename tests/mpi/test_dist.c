/* MPI: the collectives the phases share, and that a sequence's forward pass gives
 * bit-identical results on whichever rank runs it (the basis of sharding prompts
 * and documents over ranks). Run by ctest with 2 and 4 ranks; the forward pass on
 * the f32 kernel and (where the CPU has AVX512-BF16) on the bf16 one, which every rank
 * then runs: forward.bf16_compute must keep the property. */
#include "tp_test.h"

#include "backend/cpu/linear.h"   /* cpu_linear_bf16_enable, cpu_linear_bf16_supported */
#include "dist/world.h"
#include "io/npy.h"
#include "model/forward.h"
#include "model/model.h"

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

START_TEST(test_gather_strings)
{
    int rank = dist_rank(), size = dist_size();
    char mine[256];
    /* Lengths differ per rank, including an empty string. */
    int len = rank == 1 ? 0 : 10 * rank + 3;
    for (int i = 0; i < len; i++) mine[i] = (char)('a' + (rank + i) % 26);
    mine[len] = '\0';
    char **all = NULL;
    ck_assert(dist_gather_strings(mine, &all) == TP_OK);
    if (rank == 0) {
        ck_assert_ptr_nonnull(all);
        for (int r = 0; r < size; r++) {
            int want = r == 1 ? 0 : 10 * r + 3;
            ck_assert_int_eq((int)strlen(all[r]), want);
            for (int i = 0; i < want; i++) ck_assert_int_eq(all[r][i], 'a' + (r + i) % 26);
        }
        ck_assert_ptr_null(all[size]);
    } else {
        ck_assert_ptr_null(all);
    }
    dist_free_strings(all);
}
END_TEST

START_TEST(test_forward_same_on_every_rank) /* _i = 1: bf16 compute */
{
    int rank = dist_rank(), size = dist_size();
    if (_i == 1 && !cpu_linear_bf16_supported()) {
        if (rank == 0) printf("skipped: this CPU has no AVX512-BF16: bf16 compute does not apply\n");
        return;
    }
    cpu_linear_bf16_enable(_i == 1);
    tp_model *m = NULL;
    ck_assert_msg(model_open(tp_test_data("models/olmo2-gqa-bf16"), TP_CONVERT_PER_MATRIX, &m) == TP_OK,
                  "%s", tp_err_msg());
    npy_array ids;
    ck_assert(npy_read(tp_test_data("golden/olmo2-gqa-bf16/input_ids.npy"), &ids) == TP_OK);
    int B = (int)ids.shape[0], T = (int)ids.shape[1];
    int32_t *tok = malloc((size_t)B * T * sizeof *tok);
    for (int i = 0; i < B * T; i++) tok[i] = (int32_t)((int64_t *)ids.data)[i];
    size_t V = (size_t)m->cfg.vocab_size;
    tp_forward *f;
    ck_assert(forward_new(m, 1, T, &f) == TP_OK);
    const float *lg;
    /* Rank r runs sequence r % B; rank 0 recomputes every rank's and compares bits. */
    int seq = rank % B;
    ck_assert(forward_run(f, tok + (size_t)seq * T, 1, T, NULL, TP_LOGITS_ALL, -1, &lg) == TP_OK);
    float *all = rank == 0 ? malloc((size_t)size * T * V * sizeof(float)) : NULL;
    ck_assert_int_eq(MPI_Gather(lg, (int)(T * V), MPI_FLOAT, all, (int)(T * V), MPI_FLOAT, 0, MPI_COMM_WORLD),
                     MPI_SUCCESS);
    if (rank == 0) {
        for (int r = 0; r < size; r++) {
            ck_assert(forward_run(f, tok + (size_t)(r % B) * T, 1, T, NULL, TP_LOGITS_ALL, -1, &lg) == TP_OK);
            ck_assert_msg(memcmp(lg, all + (size_t)r * T * V, (size_t)T * V * sizeof(float)) == 0,
                          "rank %d's logits differ from rank 0's for the same sequence", r);
        }
    }
    free(all);
    free(tok);
    npy_free(&ids);
    forward_free(f);
    model_close(m);
    cpu_linear_bf16_enable(0);
}
END_TEST

int main(int argc, char **argv)
{
    if (dist_init(&argc, &argv) != TP_OK) return 2;
    Suite *s = suite_create("dist");
    TCase *tc = tcase_create("collectives");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_gather_strings);
    tcase_add_loop_test(tc, test_forward_same_on_every_rank, 0, 2);
    suite_add_tcase(s, tc);
    int worst = tp_test_run_suite_mpi(s);
    dist_finalize();
    return worst;
}
