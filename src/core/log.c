#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>

static int g_rank = 0, g_size = 1;
static bool g_quiet = false;

void tp_log_set_rank(int rank, int size) { g_rank = rank; g_size = size; }
int tp_log_rank_id(void) { return g_rank; }
int tp_log_world_size(void) { return g_size; }
void tp_log_set_quiet(bool quiet) { g_quiet = quiet; }

static void vline(FILE *f, const char *tag, bool prefix_rank, const char *fmt, va_list ap)
{
    char buf[4096];
    vsnprintf(buf, sizeof buf, fmt, ap);
    if (prefix_rank || g_size > 1)
        fprintf(f, "[rank %d] %s%s\n", g_rank, tag, buf);
    else
        fprintf(f, "%s%s\n", tag, buf);
    fflush(f);
}

void tp_log_info(const char *fmt, ...)
{
    if (g_rank != 0 || g_quiet) return;
    va_list ap;
    va_start(ap, fmt);
    vline(stderr, "", false, fmt, ap);
    va_end(ap);
}

void tp_log_warn(const char *fmt, ...)
{
    if (g_rank != 0) return;
    va_list ap;
    va_start(ap, fmt);
    vline(stderr, "warning: ", false, fmt, ap);
    va_end(ap);
}

void tp_log_rank(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vline(stderr, "", true, fmt, ap);
    va_end(ap);
}

void tp_log_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (g_size > 1)
        vline(stderr, "error: ", true, fmt, ap);
    else
        vline(stderr, "transpolmo: error: ", false, fmt, ap);
    va_end(ap);
}
