#include "dist/world.h"

#include "core/log.h"
#include "dist/grad_allreduce.h"   /* dist_grad_allreduce_close */
#include "dist/mpi_check.h"

#include <mpi.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int g_rank = 0, g_size = 1, g_inited = 0, g_local = 1, g_local_rank = 0;

tp_status dist_init(int *argc, char ***argv)
{
    int already = 0;
    MPI_Initialized(&already);
    if (!already) MPI_CHECK(MPI_Init(argc, argv));
    g_inited = !already;
    /* Errors come back as codes we turn into messages, not as MPI's own abort. */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &g_rank));
    MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &g_size));
    tp_log_set_rank(g_rank, g_size);
    /* Ranks on this node, found once here: MPI_Comm_split_type is collective, and
     * later callers (versions.json) run on rank 0 alone. */
    MPI_Comm node;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g_rank, MPI_INFO_NULL, &node) == MPI_SUCCESS) {
        MPI_Comm_size(node, &g_local);
        MPI_Comm_rank(node, &g_local_rank);
        MPI_Comm_free(&node);
    }
    return TP_OK;
}

void dist_finalize(void)
{
    int fin = 0;
    MPI_Finalized(&fin);
    if (g_inited && !fin) {
        dist_grad_allreduce_close();   /* the NCCL communicator, if SAE training made one */
        MPI_Finalize();
    }
}

int dist_local_size(void) { return g_local; }
int dist_local_rank(void) { return g_local_rank; }

int dist_rank(void) { return g_rank; }
int dist_size(void) { return g_size; }

void dist_abort(int code)
{
    /* This rank has said why it ends: the SIGTERM that mpiexec sends every rank of an
     * aborting job must not make it say a second thing (tp_fault_install_signals). */
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (init && !fin && g_size > 1) MPI_Abort(MPI_COMM_WORLD, code);
    /* No MPI_Finalize and no atexit handlers: after a failed write HDF5's own
     * shutdown would try to close the broken file again (and crash doing it). */
    fflush(NULL);
    _exit(code);
}

tp_status dist_gather_strings(const char *mine, char ***all)
{
    *all = NULL;
    int len = (int)strlen(mine) + 1;
    int *lens = NULL, *displs = NULL;
    char *buf = NULL;
    if (g_rank == 0) {
        lens = tp_calloc((size_t)g_size, sizeof *lens);
        displs = tp_calloc((size_t)g_size, sizeof *displs);
        if (!lens || !displs) { free(lens); free(displs); return TP_ERR_NOMEM; }
    }
    MPI_CHECK(MPI_Gather(&len, 1, MPI_INT, lens, 1, MPI_INT, 0, MPI_COMM_WORLD));
    if (g_rank == 0) {
        size_t total = 0;
        for (int r = 0; r < g_size; r++) {
            displs[r] = (int)total;
            total += (size_t)lens[r];
        }
        buf = tp_malloc(total);
        if (!buf) { free(lens); free(displs); return TP_ERR_NOMEM; }
    }
    MPI_CHECK(MPI_Gatherv(mine, len, MPI_CHAR, buf, lens, displs, MPI_CHAR, 0, MPI_COMM_WORLD));
    if (g_rank == 0) {
        char **out = tp_calloc((size_t)g_size + 1, sizeof *out);
        if (!out) { free(buf); free(lens); free(displs); return TP_ERR_NOMEM; }
        for (int r = 0; r < g_size; r++) out[r] = strdup(buf + displs[r]);
        *all = out;
        free(buf);
        free(lens);
        free(displs);
    }
    return TP_OK;
}

void dist_free_strings(char **all)
{
    if (!all) return;
    for (int r = 0; all[r]; r++) free(all[r]);
    free(all);
}

const char *dist_library_version(char *buf, size_t n)
{
    char v[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(v, &len);
    char *nl = strchr(v, '\n');
    if (nl) *nl = '\0';
    snprintf(buf, n, "%s", v);
    return buf;
}

tp_status dist_agree(MPI_Comm comm, tp_status mine, const char *what)
{
    int bad = mine != TP_OK, any = bad;
    MPI_CHECK(MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, comm));
    if (mine != TP_OK) return mine;
    if (any) {
        int rank = 0;
        MPI_Comm_rank(comm, &rank);
        return tp_err(TP_ERR_MPI, "%s: another rank failed (this is rank %d)", what, rank);
    }
    return TP_OK;
}

tp_status dist_allreduce_sum_f64(MPI_Comm comm, double *buf, size_t n)
{
    const size_t chunk = (size_t)1 << 28;
    for (size_t off = 0; off < n; off += chunk) {
        int cnt = (int)(n - off < chunk ? n - off : chunk);
        MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, buf + off, cnt, MPI_DOUBLE, MPI_SUM, comm));
    }
    return TP_OK;
}
