/* mpi_check.h — MPI_CHECK(call): on failure record "call failed: <MPI error
 * string>" with file and line and return TP_ERR_MPI from the enclosing function.
 * The world sets MPI_ERRORS_RETURN so that failures reach this check. */
#ifndef TP_MPI_CHECK_H
#define TP_MPI_CHECK_H

#include "core/error.h"

#include <mpi.h>

#define MPI_CHECK(call)                                                            \
    do {                                                                           \
        int mpi_rc_ = (call);                                                      \
        if (mpi_rc_ != MPI_SUCCESS) {                                              \
            char mpi_es_[MPI_MAX_ERROR_STRING];                                    \
            int mpi_el_ = 0;                                                       \
            MPI_Error_string(mpi_rc_, mpi_es_, &mpi_el_);                          \
            return tp_err(TP_ERR_MPI, "%s failed: %s", #call, mpi_es_);            \
        }                                                                          \
    } while (0)

/* The same, storing the status in st and jumping to label (for cleanup). */
#define MPI_CHECK_GOTO(call, st, label)                                            \
    do {                                                                           \
        int mpi_rc_ = (call);                                                      \
        if (mpi_rc_ != MPI_SUCCESS) {                                              \
            char mpi_es_[MPI_MAX_ERROR_STRING];                                    \
            int mpi_el_ = 0;                                                       \
            MPI_Error_string(mpi_rc_, mpi_es_, &mpi_el_);                          \
            (st) = tp_err(TP_ERR_MPI, "%s failed: %s", #call, mpi_es_);            \
            goto label;                                                            \
        }                                                                          \
    } while (0)

#endif
