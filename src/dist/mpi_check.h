/* mpi_check.h — MPI_CHECK(call): on failure record "call failed: <MPI error
 * string>" with file and line and return TP_ERR_MPI from the enclosing function.
 * The world sets MPI_ERRORS_RETURN so that failures reach this check. */
#ifndef TP_MPI_CHECK_H
#define TP_MPI_CHECK_H

#include "core/error.h"

#include <mpi.h>

/* The error of a failed MPI call, located at the caller's file and line. */
static inline tp_status tp_mpi_fail(int rc, const char *call, const char *file, int line)
{
    char es[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, es, &len);
    return tp_err_at(TP_ERR_MPI, file, line, "%s failed: %s", call, es);
}

#define MPI_CHECK(call)                                                            \
    do {                                                                           \
        int mpi_rc_ = (call);                                                      \
        if (mpi_rc_ != MPI_SUCCESS) return tp_mpi_fail(mpi_rc_, #call, __FILE__, __LINE__); \
    } while (0)

/* The same, storing the status in st and jumping to label (for cleanup). */
#define MPI_CHECK_GOTO(call, st, label)                                            \
    do {                                                                           \
        int mpi_rc_ = (call);                                                      \
        if (mpi_rc_ != MPI_SUCCESS) {                                              \
            (st) = tp_mpi_fail(mpi_rc_, #call, __FILE__, __LINE__);                \
            goto label;                                                            \
        }                                                                          \
    } while (0)

#endif
