/* store_compare A.h5 B.h5 — exit 0 when two activation stores hold the same data:
 * equal /tokens, /positions, /mask, /doc_offsets, /doc_index, the same capture points,
 * and bit-identical capture datasets (compared on the f32 values, which for f16/bf16 storage
 * map one to one onto the stored bits). Prints the first difference otherwise. */
#include "io/store.h"

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_i32(tp_store *a, tp_store *b, const char *name, int64_t n)
{
    int32_t *x = malloc((size_t)(n ? n : 1) * 4), *y = malloc((size_t)(n ? n : 1) * 4);
    if (store_read_i32(a, name, 0, n, x) != TP_OK || store_read_i32(b, name, 0, n, y) != TP_OK) {
        fprintf(stderr, "store_compare: %s\n", tp_err_msg());
        exit(2);
    }
    for (int64_t i = 0; i < n; i++)
        if (x[i] != y[i]) {
            printf("/%s differs at row %lld: %d vs %d\n", name, (long long)i, x[i], y[i]);
            return 1;
        }
    free(x), free(y);
    return 0;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    if (argc != 3) {
        fprintf(stderr, "usage: store_compare A.h5 B.h5\n");
        return 2;
    }
    tp_store *a, *b;
    if (store_open_read(argv[1], MPI_COMM_SELF, &a) != TP_OK || store_open_read(argv[2], MPI_COMM_SELF, &b) != TP_OK) {
        fprintf(stderr, "store_compare: %s\n", tp_err_msg());
        return 2;
    }
    int64_t n = store_rows(a);
    int diff = 0;
    if (n != store_rows(b)) { printf("rows differ: %lld vs %lld\n", (long long)n, (long long)store_rows(b)); diff = 1; }
    if (!diff) diff = cmp_i32(a, b, "tokens", n) || cmp_i32(a, b, "positions", n);
    if (!diff && store_num_acts(a) != store_num_acts(b)) { printf("capture points differ\n"); diff = 1; }
    for (int i = 0; !diff && i < store_num_acts(a); i++) {
        const store_act_spec *sa = store_act(a, i);
        int j = store_find_act(b, sa->name);
        if (j < 0 || store_act(b, j)->cols != sa->cols || store_act(b, j)->dtype != sa->dtype) {
            printf("/acts/%s missing or different in %s\n", sa->name, argv[2]);
            diff = 1;
            break;
        }
        if (!store_is_complete(a, "tokens") || !store_is_complete(b, "tokens")) {
            printf("a store is not marked complete\n");
            diff = 1;
            break;
        }
        int64_t block = 4096;
        float *x = malloc((size_t)(block * sa->cols) * 4), *y = malloc((size_t)(block * sa->cols) * 4);
        for (int64_t r = 0; r < n && !diff; r += block) {
            int64_t k = n - r < block ? n - r : block;
            if (store_read_acts(a, i, r, k, x) != TP_OK || store_read_acts(b, j, r, k, y) != TP_OK) {
                fprintf(stderr, "store_compare: %s\n", tp_err_msg());
                return 2;
            }
            if (memcmp(x, y, (size_t)(k * sa->cols) * 4) != 0) {
                printf("/acts/%s differs in rows %lld..%lld\n", sa->name, (long long)r, (long long)(r + k));
                diff = 1;
            }
        }
        free(x), free(y);
    }
    store_close(a);
    store_close(b);
    if (!diff) printf("identical: %lld rows\n", (long long)n);
    MPI_Finalize();
    return diff;
}
