#define _POSIX_C_SOURCE 200809L
#include "core/fault.h"

#include "core/log.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

/* Copies [s, e) into dst (size n) if it fits and is not empty. */
static int take(char *dst, size_t n, const char *s, const char *e)
{
    if (e <= s || (size_t)(e - s) >= n) return 0;
    memcpy(dst, s, (size_t)(e - s));
    dst[e - s] = '\0';
    return 1;
}

static int parse_long(const char *s, const char *e, long *out)
{
    if (e <= s || e - s > 9) return 0;
    long v = 0;
    for (const char *c = s; c < e; c++) {
        if (*c < '0' || *c > '9') return 0;
        v = v * 10 + (*c - '0');
    }
    *out = v;
    return 1;
}

tp_status tp_fault_parse(const char *text, tp_fault_spec *out)
{
    memset(out, 0, sizeof *out);
    out->n = 1;
    out->action = TP_FAULT_KILL;
    const char *end = text + strlen(text);
    const char *slash = strchr(text, '/');
    if (slash) {
        const char *a = slash + 1;
        if (!strcmp(a, "kill")) out->action = TP_FAULT_KILL;
        else if (!strcmp(a, "term")) out->action = TP_FAULT_TERM;
        else if (!strcmp(a, "fail")) out->action = TP_FAULT_FAIL;
        else if (!strcmp(a, "pause")) out->action = TP_FAULT_PAUSE;
        else
            return tp_err(TP_ERR_CONFIG, "TP_FAULT=%s: unknown action '%s' (kill, term, fail, pause)", text, a);
        end = slash;
    }
    const char *colon = memchr(text, ':', (size_t)(end - text));
    if (colon) {
        long r;
        if (!parse_long(colon + 1, end, &r))
            return tp_err(TP_ERR_CONFIG, "TP_FAULT=%s: the rank after ':' must be a number", text);
        out->rank = (int)r;
        end = colon;
    }
    const char *at = memchr(text, '@', (size_t)(end - text));
    if (at) {
        if (!parse_long(at + 1, end, &out->n) || out->n < 1)
            return tp_err(TP_ERR_CONFIG, "TP_FAULT=%s: the count after '@' must be a number >= 1", text);
        end = at;
    }
    const char *dot = memchr(text, '.', (size_t)(end - text));
    if (!dot || !take(out->phase, sizeof out->phase, text, dot) || !take(out->point, sizeof out->point, dot + 1, end))
        return tp_err(TP_ERR_CONFIG, "TP_FAULT=%s: expected <phase>.<point>[@<n>][:<rank>][/kill|term|fail|pause]", text);
    return TP_OK;
}

static tp_fault_spec g_spec;
static int g_parsed, g_have;
static tp_status g_parse_st = TP_OK;
static char g_parse_msg[512];
static long g_hits;

static void parse_env(void)
{
    if (g_parsed) return;
    g_parsed = 1;
    const char *v = getenv("TP_FAULT");
    if (!v || !v[0]) return;
    g_parse_st = tp_fault_parse(v, &g_spec);
    if (g_parse_st != TP_OK) snprintf(g_parse_msg, sizeof g_parse_msg, "%s", tp_err_msg());
    else g_have = 1;
}

const tp_fault_spec *tp_fault_env(void)
{
    parse_env();
    return g_have ? &g_spec : NULL;
}

tp_status tp_fault_check_env(void)
{
    parse_env();
    return g_parse_st == TP_OK ? TP_OK : tp_err(g_parse_st, "%s", g_parse_msg);
}

tp_status tp_fault(const char *phase, const char *point)
{
    const tp_fault_spec *f = tp_fault_env();
    if (!f || strcmp(f->phase, phase) || strcmp(f->point, point) || f->rank != tp_log_rank_id()) return TP_OK;
    if (++g_hits != f->n) return TP_OK;
    const char *v = getenv("TP_FAULT");
    switch (f->action) {
    case TP_FAULT_FAIL:
        return tp_err(TP_ERR_INTERNAL, "injected fault (TP_FAULT=%s) on rank %d", v, f->rank);
    case TP_FAULT_PAUSE:
        tp_log_rank("TP_FAULT=%s reached: this rank waits for a signal", v);
        pause();   /* a handled signal (SIGUSR1) returns here; SIGTERM's handler ends the rank */
        return TP_OK;
    case TP_FAULT_TERM:
        tp_log_rank("TP_FAULT=%s reached: SIGTERM to this rank", v);
        raise(SIGTERM);
        return TP_OK;   /* the handler ends the process; without one, so does SIGTERM */
    case TP_FAULT_KILL:
    default:
        tp_log_rank("TP_FAULT=%s reached: SIGKILL to this rank", v);
        raise(SIGKILL);
        return TP_OK;
    }
}

/* The terminated rank's line, built outside the handler (which only writes it): two
 * copies, switched by one atomic index, so that the handler never reads a half-made
 * one. */
static char g_head[2][160], g_tail[2][160];
static size_t g_head_len[2], g_tail_len[2];
static volatile sig_atomic_t g_cur;

void tp_fault_set_phase(const char *phase)
{
    int next = !g_cur, rank = tp_log_rank_id();
    if (tp_log_world_size() > 1) snprintf(g_head[next], sizeof g_head[next], "[rank %d] error: terminated by ", rank);
    else snprintf(g_head[next], sizeof g_head[next], "transpolmo: error: terminated by ");
    if (phase && phase[0])
        snprintf(g_tail[next], sizeof g_tail[next], " in phase %s: it is not marked complete; rerun the same command to "
                 "resume\n", phase);
    else
        snprintf(g_tail[next], sizeof g_tail[next], "; rerun the same command to resume\n");
    g_head_len[next] = strlen(g_head[next]), g_tail_len[next] = strlen(g_tail[next]);
    g_cur = next;
}

static void on_signal(int sig)
{
    int saved = errno, i = g_cur;
    /* once per process: mpiexec may signal again while a thread is already here */
    static int said;
    if (__atomic_exchange_n(&said, 1, __ATOMIC_SEQ_CST)) {
        errno = saved;
        return;
    }
    static char term[] = "SIGTERM", intr[] = "SIGINT";
    struct iovec v[3] = {{g_head[i], g_head_len[i]}, {sig == SIGINT ? intr : term, sig == SIGINT ? 6 : 7},
                         {g_tail[i], g_tail_len[i]}};
    (void)!writev(STDERR_FILENO, v, 3);
    /* end by the signal, as without a handler: the exit status says how it ended */
    signal(sig, SIG_DFL);
    raise(sig);
    errno = saved;
}

void tp_fault_install_signals(void)
{
    tp_fault_set_phase(NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
}
