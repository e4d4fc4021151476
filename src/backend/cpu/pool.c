/* pool.c — the CPU backend's thread pool (see pool.h). */
#include "backend/cpu/pool.h"

#include <cblas.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

/* ---- a small thread pool ------------------------------------------------------
 * Workers are started on first use and live for the process. Between jobs a worker
 * spins ~50 us (the next kernel often follows right away), then sleeps on a
 * condition variable, so it does not take a core from the BLAS threads for long. */

#define POOL_SPIN 2000

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int nworkers;
    atomic_uint gen;           /* bumped for each job */
    atomic_int pending;        /* workers that have not finished the current job */
    atomic_llong next;         /* next task of the current job */
    cpu_task_fn fn;
    void *arg;
    int64_t ntasks;
    int nthreads;
} pool = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_ia32_pause();
#endif
}

static void pool_run_tasks(int thread)
{
    for (;;) {
        long long t = atomic_fetch_add_explicit(&pool.next, 1, memory_order_relaxed);
        if (t >= pool.ntasks) break;
        pool.fn(pool.arg, (int64_t)t, thread);
    }
}

typedef struct {
    int id;
    unsigned gen0;
} worker_start;

static void *pool_worker(void *p)
{
    worker_start ws = *(worker_start *)p;
    free(p);
    unsigned seen = ws.gen0;
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load_explicit(&pool.gen, memory_order_acquire)) == seen) {
            if (++spins < POOL_SPIN) { cpu_relax(); continue; }
            pthread_mutex_lock(&pool.mu);
            while ((g = atomic_load_explicit(&pool.gen, memory_order_acquire)) == seen)
                pthread_cond_wait(&pool.cv, &pool.mu);
            pthread_mutex_unlock(&pool.mu);
            break;
        }
        seen = g;
        if (ws.id < pool.nthreads) pool_run_tasks(ws.id);
        atomic_fetch_sub_explicit(&pool.pending, 1, memory_order_release);
    }
    return NULL;
}

/* Starts workers 1..n-1 if they are not running yet; returns how many threads the
 * pool can use (1 if a thread cannot be created). Called by the one caller thread. */
static int pool_grow(int n)
{
    if (n > CPU_POOL_MAX) n = CPU_POOL_MAX;
    while (pool.nworkers + 1 < n) {
        worker_start *ws = malloc(sizeof *ws);
        if (!ws) break;
        ws->id = pool.nworkers + 1;
        ws->gen0 = atomic_load(&pool.gen);
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        pthread_t th;
        int e = pthread_create(&th, &at, pool_worker, ws);
        pthread_attr_destroy(&at);
        if (e) { free(ws); break; }
        pool.nworkers++;
    }
    return pool.nworkers + 1 < n ? pool.nworkers + 1 : n;
}

void cpu_parallel_for(int64_t ntasks, cpu_task_fn fn, void *arg)
{
    int n = cpu_get_threads();
    if (n > ntasks) n = (int)ntasks;
    if (n > 1) n = pool_grow(n);
    if (n <= 1) {
        for (int64_t t = 0; t < ntasks; t++) fn(arg, t, 0);
        return;
    }
    pool.fn = fn, pool.arg = arg, pool.ntasks = ntasks, pool.nthreads = n;
    atomic_store_explicit(&pool.next, 0, memory_order_relaxed);
    atomic_store_explicit(&pool.pending, pool.nworkers, memory_order_relaxed);
    pthread_mutex_lock(&pool.mu);
    atomic_fetch_add_explicit(&pool.gen, 1, memory_order_release);
    pthread_cond_broadcast(&pool.cv);
    pthread_mutex_unlock(&pool.mu);
    pool_run_tasks(0);
    for (int spins = 0; atomic_load_explicit(&pool.pending, memory_order_acquire) > 0; spins++) {
        if (spins < POOL_SPIN) cpu_relax();
        else sched_yield();
    }
}

/* ---- thread count ---------------------------------------------------------------- */

void cpu_set_threads(int n)
{
    if (n > 0) openblas_set_num_threads(n);
}

int cpu_get_threads(void) { return openblas_get_num_threads(); }
