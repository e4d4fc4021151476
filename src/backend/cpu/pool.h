/* pool.h — the CPU backend's thread pool and its thread count.
 *
 * One process-wide pool of workers that run the kernels that are not BLAS (attention,
 * silu, the AVX-512 GEMM, weight conversion). Its size is the BLAS thread count, so
 * the kernels and OpenBLAS share one setting and nothing is oversubscribed (1 per
 * rank at mpiexec -np 2 on 2 cores). Work is cut into fixed tasks whose arithmetic
 * does not depend on which thread runs them, so results are bit-identical for any
 * thread count.
 */
#ifndef TP_BACKEND_CPU_POOL_H
#define TP_BACKEND_CPU_POOL_H

#include <stdint.h>

/* Most threads the pool (and any per-thread workspace sized by it) uses. */
#define CPU_POOL_MAX 64

/* Runs fn(arg, t, thread) for t in [0, ntasks) on up to cpu_get_threads() threads
 * (the caller is thread 0); returns when all are done. thread < cpu_get_threads().
 * One process-wide pool: call it from one thread at a time, never from inside a task.
 * Idle workers spin ~50 us, then sleep. */
typedef void (*cpu_task_fn)(void *arg, int64_t task, int thread);
void cpu_parallel_for(int64_t ntasks, cpu_task_fn fn, void *arg);

/* BLAS threads (0 leaves the library default); also the pool's thread count. */
void cpu_set_threads(int n);
int cpu_get_threads(void);

#endif
