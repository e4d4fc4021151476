/* npy_allclose A.npy B.npy TOL — exit 0 when both arrays have the same shape and
 * max|a - b| / max|b| <= TOL (the parity measure of the C tests), 1 otherwise. */
#include "io/npy.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: npy_allclose A.npy B.npy TOL\n");
        return 2;
    }
    npy_array a, b;
    if (npy_read_f32(argv[1], &a) != TP_OK || npy_read_f32(argv[2], &b) != TP_OK) {
        fprintf(stderr, "npy_allclose: %s\n", tp_err_msg());
        return 2;
    }
    int same = a.ndim == b.ndim;
    for (int i = 0; same && i < a.ndim; i++) same = a.shape[i] == b.shape[i];
    if (!same) {
        fprintf(stderr, "npy_allclose: shapes differ\n");
        return 1;
    }
    const float *x = a.data, *y = b.data;
    double md = 0, mr = 0;
    for (int64_t i = 0; i < a.numel; i++) {
        double d = fabs((double)x[i] - y[i]);
        if (!(d <= md)) md = d;
        if (fabs(y[i]) > mr) mr = fabs(y[i]);
    }
    double rel = mr > 0 ? md / mr : md;
    double tol = atof(argv[3]);
    printf("relative error %.3g (tolerance %.1g)\n", rel, tol);
    npy_free(&a);
    npy_free(&b);
    return rel <= tol ? 0 : 1;
}
