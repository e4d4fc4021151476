/* backend.c — the registry of backends and the choice of the default one. */
#include "backend/backend.h"

#include "backend/cpu/cpu_backend.h"
#ifdef TP_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

#include <string.h>

typedef struct {
    const char *name;
    tp_status (*open)(const tp_backend_options *opt, tp_backend **out);
    void (*close)(tp_backend *be);   /* NULL: nothing to release (singleton) */
} backend_entry;

/* One line per backend. */
static const backend_entry registry[] = {
    {"cpu", backend_cpu_configure, NULL},
#ifdef TP_HAVE_CUDA
    {"cuda", backend_cuda_open, backend_cuda_close},
#endif
};

#define NREG (sizeof registry / sizeof *registry)

static tp_backend *default_backend;

const char *backend_names(void)
{
#ifdef TP_HAVE_CUDA
    return "cpu, cuda";
#else
    return "cpu";
#endif
}

tp_status backend_open(const char *name, const tp_backend_options *opt, tp_backend **out)
{
    /* forward.gemm's default is auto: TranspOLMo's GEMM where the CPU has it */
    static const tp_backend_options defaults = {.own_gemm = true};
    *out = NULL;
    for (size_t i = 0; i < NREG; i++)
        if (!strcmp(registry[i].name, name)) return registry[i].open(opt ? opt : &defaults, out);
    if (!strcmp(name, "cuda"))
        return tp_err(TP_ERR_CONFIG, "backend 'cuda': this build has no CUDA backend (nvcc was not found when it "
                      "was built); backends: %s", backend_names());
    return tp_err(TP_ERR_CONFIG, "unknown backend '%s' (backends: %s)", name, backend_names());
}

void backend_close(tp_backend *be)
{
    if (!be) return;
    if (default_backend == be) default_backend = NULL;
    for (size_t i = 0; i < NREG; i++)
        if (!strcmp(registry[i].name, be->name) && registry[i].close) registry[i].close(be);
}

tp_backend *backend_cpu(void) { return backend_cpu_get(); }

tp_backend *backend_default(void) { return default_backend ? default_backend : backend_cpu_get(); }

void backend_set_default(tp_backend *be) { default_backend = be; }

tp_status backend_unsupported(const tp_backend *be, const char *op)
{
    return tp_err(TP_ERR_UNSUPPORTED, "op %s is not available on %s", op, be->name);
}

tp_status backend_check_copy_slot(const tp_backend *be, int slot)
{
    if (slot < 0 || slot >= TP_BE_COPY_SLOTS)
        return tp_err(TP_ERR_RANGE, "%s: copy slot %d out of range [0, %d)", be->name, slot, (int)TP_BE_COPY_SLOTS);
    return TP_OK;
}
