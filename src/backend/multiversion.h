/* multiversion.h — TP_MULTIVERSION, the attribute that compiles a loop for AVX-512,
 * AVX2 and baseline x86-64 with the CPU picking at load time (GCC target_clones /
 * ifunc), never only at build time. Off under ASan, which does not support ifuncs
 * well, and on other compilers and targets. For the CPU kernels and the host-side
 * loops of the analyses (sae.c's dot and axpy). */
#ifndef TP_BACKEND_MULTIVERSION_H
#define TP_BACKEND_MULTIVERSION_H

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define TP_MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define TP_MULTIVERSION
#endif

#endif
