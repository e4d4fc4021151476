#define _POSIX_C_SOURCE 200809L
#include "dist/stop.h"

#include "dist/mpi_check.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static volatile sig_atomic_t g_stop;

static void on_usr1(int sig)
{
    (void)sig;
    g_stop = 1;
}

void dist_stop_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;   /* reads and writes in progress carry on */
    sigaction(SIGUSR1, &sa, NULL);
}

bool dist_stop_requested(void) { return g_stop != 0; }

tp_status dist_stop_agreed(MPI_Comm comm, bool *stop)
{
    int size = 1, mine = g_stop != 0, any = mine;
    MPI_CHECK(MPI_Comm_size(comm, &size));
    if (size > 1) MPI_CHECK(MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, comm));
    *stop = any != 0;
    return TP_OK;
}

tp_status dist_stop_error(const char *what, const char *where_fmt, ...)
{
    char where[256];
    va_list ap;
    va_start(ap, where_fmt);
    vsnprintf(where, sizeof where, where_fmt, ap);
    va_end(ap);
    return tp_err(TP_ERR_STOPPED, "%s stopped on SIGUSR1 %s: rerun the same command to resume", what, where);
}
