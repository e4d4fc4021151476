#include "core/progress.h"

#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static tp_progress_mode g_mode = TP_PROGRESS_AUTO;
static double g_interval = 10.0;

void tp_progress_set_default(tp_progress_mode mode, double interval_s)
{
    g_mode = mode;
    if (interval_s > 0) g_interval = interval_s;
}

double tp_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void fmt_eta(char *buf, size_t n, double s)
{
    if (s < 0 || s > 1e7) { snprintf(buf, n, "?"); return; }
    int h = (int)(s / 3600), m = (int)(s / 60) % 60, sec = (int)s % 60;
    if (h) snprintf(buf, n, "%dh%02dm", h, m);
    else if (m) snprintf(buf, n, "%dm%02ds", m, sec);
    else snprintf(buf, n, "%ds", sec);
}

static void print_line(const tp_progress *p, double now)
{
    /* done may overshoot an estimated total (capture counts rank 0's share times
     * the ranks): never print more than 100 %. */
    uint64_t done = p->done < p->total ? p->done : p->total;
    double el = now - p->t_start;
    double rate = el > 0 ? (double)done / el : 0.0;
    char eta[32];
    fmt_eta(eta, sizeof eta, rate > 0 ? (double)(p->total - done) / rate : -1);
    double pct = p->total ? 100.0 * (double)done / (double)p->total : 100.0;
    tp_log_info("%s: %llu/%llu %s (%.1f%%), %.1f %s/s, ETA %s%s%s", p->label,
                (unsigned long long)done, (unsigned long long)p->total, p->unit, pct,
                rate, p->unit, eta, p->note[0] ? "; " : "", p->note);
}

void tp_progress_begin(tp_progress *p, const char *label, const char *unit, uint64_t total)
{
    memset(p, 0, sizeof *p);
    snprintf(p->label, sizeof p->label, "%s", label);
    snprintf(p->unit, sizeof p->unit, "%s", unit);
    p->total = total;
    p->interval_s = g_interval;
    p->t_start = p->t_last = tp_now();
    /* Under mpirun or sbatch stderr is a file or a pipe, not a terminal: progress
     * is printed there too (auto), on rank 0 only. */
    p->enabled = tp_log_rank_id() == 0 && g_mode != TP_PROGRESS_NEVER;
}

/* A line every interval_s, and one at each further tenth of the work, but never two
 * within PROGRESS_MIN_GAP_S: long work reports steadily, short work stays quiet. */
#define PROGRESS_MIN_GAP_S 1.0

void tp_progress_add(tp_progress *p, uint64_t n)
{
    p->done += n;
    if (!p->enabled) return;
    double now = tp_now(), since = now - p->t_last;
    int tenth = p->total ? (int)(10.0 * (double)(p->done < p->total ? p->done : p->total) / (double)p->total) : 10;
    if (since >= p->interval_s || (tenth > p->tenth_printed && since >= PROGRESS_MIN_GAP_S)) {
        p->t_last = now;
        p->tenth_printed = tenth;
        print_line(p, now);
    }
}

void tp_progress_end(tp_progress *p)
{
    if (p->enabled) print_line(p, tp_now());
}

void tp_progress_note(tp_progress *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->note, sizeof p->note, fmt, ap);
    va_end(ap);
}
