/* submit_cmd.c — `transpolmo submit` (submit_cmd.h): job scripts from the phase list,
 * submitted as a chain. */
#define _GNU_SOURCE   /* open_memstream, realpath, posix_spawnp */
#include "cmd/submit_cmd.h"

#include "core/fsutil.h"
#include "core/log.h"
#include "dist/stop.h"
#include "dist/world.h"
#include "pipeline.h"
#include "run_layout.h"

#include <errno.h>
#include <limits.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SUBMIT_MAX_PHASES 64

static char **g_env;   /* the environment before MPI_Init (NULL: environ) */

void submit_cmd_keep_environ(char **envp)
{
    size_t n = 0;
    while (envp && envp[n]) n++;
    char **copy = calloc(n + 1, sizeof *copy);
    if (!copy) return;
    for (size_t i = 0; i < n; i++)
        if (!(copy[i] = strdup(envp[i]))) {
            while (i--) free(copy[i]);
            free(copy);
            return;
        }
    g_env = copy;
}

static void free_kept_environ(void)
{
    for (size_t i = 0; g_env && g_env[i]; i++) free(g_env[i]);
    free(g_env);
    g_env = NULL;
}

typedef struct {
    long nodes, ntasks_per_node, gpus_per_task, cpus_per_task;   /* 0: not given (cpus, gpus) */
    const char *time, *partition, *account, *mpi;
    long grace;                        /* seconds before the time limit: SIGUSR1 */
    bool dry_run, local;
    char run[TP_PATH_MAX];             /* absolute run directory */
    char cwd[TP_PATH_MAX];             /* where the jobs run: relative paths of the config */
    char bin[TP_PATH_MAX];             /* this program */
    char config[TP_PATH_MAX];          /* run/jobs/config.yaml */
    char name[128];                    /* the run directory's last component, for job names */
} submit_opts;

/* ---- options, checked at the border ------------------------------------------ */

static tp_status take_count(tp_cli *cli, const char *opt, long min, long *out)
{
    const char *v = cli_take_value(cli, opt);
    if (!v) return TP_OK;
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || end == v || *end || n < min || n > 1000000)
        return tp_err(TP_ERR_CONFIG, "submit: %s '%s': expected a whole number >= %ld", opt, v, min);
    *out = n;
    return TP_OK;
}

/* A word that goes into a script as is: Slurm names (partition, account, MPI type). */
static tp_status take_word(tp_cli *cli, const char *opt, const char **out)
{
    const char *v = cli_take_value(cli, opt);
    if (!v) return TP_OK;
    if (!*v || strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.,:+-") != strlen(v))
        return tp_err(TP_ERR_CONFIG, "submit: %s '%s': letters, digits and _ . , : + - only", opt, v);
    *out = v;
    return TP_OK;
}

/* Slurm's time formats: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S; "UNLIMITED" is -1. */
static bool parse_time(const char *s, long *sec)
{
    if (!strcmp(s, "UNLIMITED") || !strcmp(s, "infinite")) { *sec = -1; return true; }
    long v[4] = {0};
    int n = 0, days = 0;
    const char *p = s;
    const char *dash = strchr(s, '-');
    if (dash) {
        char *end;
        long d = strtol(s, &end, 10);
        if (end != dash || d < 0 || end == s) return false;
        v[0] = d, days = 1, p = dash + 1;
    }
    long f[3];
    for (;;) {
        char *end;
        if (*p < '0' || *p > '9' || n == 3) return false;
        f[n++] = strtol(p, &end, 10);
        if (*end == '\0') break;
        if (*end != ':') return false;
        p = end + 1;
    }
    if (days) {   /* D-H, D-H:M, D-H:M:S */
        long h = f[0], m = n > 1 ? f[1] : 0, sc = n > 2 ? f[2] : 0;
        *sec = ((v[0] * 24 + h) * 60 + m) * 60 + sc;
    } else if (n == 1) *sec = f[0] * 60;                       /* M */
    else if (n == 2) *sec = f[0] * 60 + f[1];                  /* M:S */
    else *sec = (f[0] * 60 + f[1]) * 60 + f[2];                /* H:M:S */
    return true;
}

static tp_status read_options(tp_cli *cli, submit_opts *o)
{
    *o = (submit_opts){.nodes = 1, .ntasks_per_node = 1, .mpi = "pmix", .grace = 120};
    TP_CHECK(take_count(cli, "--nodes", 1, &o->nodes));
    TP_CHECK(take_count(cli, "--ntasks-per-node", 1, &o->ntasks_per_node));
    TP_CHECK(take_count(cli, "--gpus-per-task", 0, &o->gpus_per_task));
    TP_CHECK(take_count(cli, "--cpus-per-task", 1, &o->cpus_per_task));
    TP_CHECK(take_count(cli, "--grace", 10, &o->grace));
    TP_CHECK(take_word(cli, "--partition", &o->partition));
    TP_CHECK(take_word(cli, "--account", &o->account));
    TP_CHECK(take_word(cli, "--mpi", &o->mpi));
    o->time = cli_take_value(cli, "--time");
    o->dry_run = cli_take_flag(cli, "--dry-run");
    o->local = cli_take_flag(cli, "--local");
    TP_CHECK(cli_reject_rest(cli));
    if (o->time) {
        long sec;
        if (!parse_time(o->time, &sec))
            return tp_err(TP_ERR_CONFIG, "submit: --time '%s': expected minutes, M:S, H:M:S, D-H, D-H:M or D-H:M:S",
                          o->time);
        /* The warning must leave the job time to work: otherwise every run of it
         * would stop at once and be requeued again. */
        if (sec >= 0 && sec < 2 * o->grace)
            return tp_err(TP_ERR_CONFIG, "submit: --time %s is less than twice the warning before the time limit "
                          "(--grace %ld s): give a longer --time or a shorter --grace", o->time, o->grace);
    }
    if (o->dry_run && o->local) return tp_err(TP_ERR_CONFIG, "submit: --dry-run or --local, not both");
    return TP_OK;
}

/* ---- the scripts --------------------------------------------------------------- */

/* s as one shell word: '...' with each ' written '\''. */
static void put_quoted(FILE *f, const char *s)
{
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') fputs("'\\''", f);
        else fputc(*s, f);
    }
    fputc('\'', f);
}

static void put_needs(FILE *f, const tp_phase *p)
{
    fprintf(f, "# It reads the outputs of: ");
    int n = 0;
    for (const tp_phase *const *q = p->needs; q && *q; q++) fprintf(f, "%s%s", n++ ? ", " : "", (*q)->name);
    fprintf(f, n ? " (its needs).\n" : "no other phase (its needs: none).\n");
}

static void put_time(FILE *f)
{
    char when[32];
    time_t now = time(NULL);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    fputs(when, f);
}

/* jobs/<k>-<phase>.sbatch */
static void write_phase_script(FILE *f, const submit_opts *o, const tp_phase *p, int k, int n)
{
    fprintf(f, "#!/bin/bash\n# TranspOLMo: phase %s (%d of %d) of the run %s\n", p->name, k, n, o->run);
    fprintf(f, "# Written by `transpolmo submit` at ");
    put_time(f);
    fprintf(f, "; submitted after the job of the phase before it (--dependency=afterok).\n");
    put_needs(f, p);
    fprintf(f, "#SBATCH --job-name=%s-%s\n", o->name, p->name);
    fprintf(f, "#SBATCH --output=%s/%s/logs/%d-%s-%%j.out\n", o->run, RUN_JOBS_DIR, k, p->name);
    fprintf(f, "#SBATCH --open-mode=append\n");
    fprintf(f, "#SBATCH --chdir=%s\n", o->cwd);
    fprintf(f, "#SBATCH --nodes=%ld\n#SBATCH --ntasks-per-node=%ld\n", o->nodes, o->ntasks_per_node);
    if (o->cpus_per_task) fprintf(f, "#SBATCH --cpus-per-task=%ld\n", o->cpus_per_task);
    if (o->gpus_per_task) fprintf(f, "#SBATCH --gpus-per-task=%ld\n", o->gpus_per_task);
    if (o->time) fprintf(f, "#SBATCH --time=%s\n", o->time);
    if (o->partition) fprintf(f, "#SBATCH --partition=%s\n", o->partition);
    if (o->account) fprintf(f, "#SBATCH --account=%s\n", o->account);
    fprintf(f, "#SBATCH --requeue\n#SBATCH --signal=B:USR1@%ld\n", o->grace);
    fprintf(f, "set -u\nphase=%s\nrun=", p->name);
    put_quoted(f, o->run);
    fprintf(f, "\nbin=");
    put_quoted(f, o->bin);
    fprintf(f, "\ngrace=%ld\n", o->grace);
    fputs(
        "# Fault injection (TP_FAULT, docs/reliability.md) applies to a job's first run: a\n"
        "# requeued job runs without it.\n"
        "if [ \"${SLURM_RESTART_COUNT:-0}\" -gt 0 ]; then unset TP_FAULT; fi\n"
        "# BLAS threads: the CPUs Slurm gave each task.\n"
        "export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}\n"
        "echo \"transpolmo job: phase $phase, job ${SLURM_JOB_ID:-?}, restart ${SLURM_RESTART_COUNT:-0}, $(date -u +%FT%TZ)\"\n"
        "# Near the time limit Slurm sends SIGUSR1 to this script (--signal=B:USR1): the\n"
        "# ranks get it, and a phase with safe points (capture, sae) stops at the next one\n"
        "# with exit code 75 after making its work durable; the job is then requeued and\n"
        "# its next run resumes. A phase without safe points runs on; if it is still\n"
        "# running 3/4 of the warning later, the job is requeued before the limit ends it.\n"
        "step= watchdog=\n"
        "on_usr1() {\n"
        "  echo \"transpolmo job: SIGUSR1: $phase stops at its next safe point\"\n"
        "  [ -n \"$step\" ] && kill -USR1 \"$step\" 2>/dev/null\n"
        "  if [ -z \"$watchdog\" ]; then\n"
        "    ( sleep $((grace * 3 / 4)); echo \"transpolmo job: $phase still running: requeued\"\n"
        "      scontrol requeue \"$SLURM_JOB_ID\" ) &\n"
        "    watchdog=$!\n"
        "  fi\n"
        "}\n"
        "trap on_usr1 USR1\n", f);
    fprintf(f, "srun --mpi=%s \"$bin\" \"$phase\" --skip-complete --config \"$run/%s\" --out \"$run\" &\n", o->mpi,
            RUN_JOBS_CONFIG_YAML);
    fprintf(f,
        "step=$!\n"
        "# wait returns early when the trap runs: wait again until srun has ended\n"
        "while :; do\n"
        "  wait \"$step\"; rc=$?\n"
        "  kill -0 \"$step\" 2>/dev/null || break\n"
        "done\n"
        "[ -n \"$watchdog\" ] && kill \"$watchdog\" 2>/dev/null\n"
        "if [ \"$rc\" -eq %d ]; then\n"
        "  echo \"transpolmo job: $phase stopped at a safe point: requeued, its next run resumes it\"\n"
        "  scontrol requeue \"$SLURM_JOB_ID\" && exit 0\n"
        "fi\n"
        "exit \"$rc\"\n", TP_EXIT_STOPPED);
}

/* jobs/chain.sh: every phase in order with mpirun (complete ones skip themselves). */
static void write_chain_script(FILE *f, const submit_opts *o, const tp_phase *const *ps, int n)
{
    fprintf(f, "#!/bin/bash\n# TranspOLMo: the phases of the run %s, one after another with mpirun, for a\n"
               "# machine without Slurm. Written by `transpolmo submit` at ", o->run);
    put_time(f);
    fprintf(f, ".\n"
               "# A phase already complete skips itself; the chain stops at the first phase that\n"
               "# fails (or stops on SIGUSR1); run it again to resume from there.\n"
               "#   usage: chain.sh [-n RANKS]     (default %ld)\n"
               "set -u\nranks=%ld\n", o->nodes * o->ntasks_per_node, o->nodes * o->ntasks_per_node);
    fputs("if [ \"${1:-}\" = -n ]; then ranks=${2:?chain.sh: -n needs a number}; fi\nrun=", f);
    put_quoted(f, o->run);
    fprintf(f, "\nbin=${TP_BIN:-");
    put_quoted(f, o->bin);
    fprintf(f, "}   # TP_BIN: another transpolmo\ncd ");
    put_quoted(f, o->cwd);
    fprintf(f, " || exit 1\nphases=(");
    for (int i = 0; i < n; i++) fprintf(f, "%s%s", i ? " " : "", ps[i]->name);
    fprintf(f, ")\n");
    fputs(
        "if [ \"$ranks\" -eq 1 ]; then\n"
        "  launch=(mpirun --bind-to none -np 1)   # one rank: its BLAS threads may use every core\n"
        "else\n"
        "  launch=(mpirun -np \"$ranks\")\n"
        "  export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}   # ranks share the cores\n"
        "fi\n"
        "if [ \"$(id -u)\" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi\n"
        "for phase in \"${phases[@]}\"; do\n"
        "  echo \"== $phase ($(date -u +%FT%TZ))\"\n", f);
    fprintf(f, "  \"${launch[@]}\" \"$bin\" \"$phase\" --skip-complete --config \"$run/%s\" --out \"$run\"\n",
            RUN_JOBS_CONFIG_YAML);
    fprintf(f,
        "  rc=$?\n"
        "  if [ \"$rc\" -eq %d ]; then echo \"chain: $phase stopped at a safe point; run $0 again to resume\" >&2; exit \"$rc\"; fi\n"
        "  if [ \"$rc\" -ne 0 ]; then echo \"chain: $phase failed (exit $rc); run $0 again to resume from it\" >&2; exit \"$rc\"; fi\n"
        "done\n"
        "echo \"chain: every phase complete: $run\"\n", TP_EXIT_STOPPED);
}

/* The phase's script, or the chain (p NULL), as a malloc'ed string. */
static tp_status render(char **out, const submit_opts *o, const tp_phase *const *ps, int n, int i)
{
    size_t len;
    *out = NULL;
    FILE *f = open_memstream(out, &len);
    if (!f) return tp_err(TP_ERR_NOMEM, "submit: cannot build a script");
    if (i < n) write_phase_script(f, o, ps[i], i + 1, n);
    else write_chain_script(f, o, ps, n);
    if (fclose(f) != 0 || !*out) {
        free(*out);
        *out = NULL;
        return tp_err(TP_ERR_NOMEM, "submit: cannot build a script");
    }
    return TP_OK;
}

static tp_status write_file(const char *path, const char *text, bool exec)
{
    TP_CHECK(fs_write_atomic(path, text, strlen(text)));
    if (exec && chmod(path, 0755) != 0) return tp_err(TP_ERR_IO, "submit: chmod %s: %s", path, strerror(errno));
    return TP_OK;
}

/* ---- sbatch ---------------------------------------------------------------------- */

/* Runs argv with the kept environment; its stdout and stderr together in out. */
static tp_status run_capture(char *const argv[], char *out, size_t n, int *status)
{
    int fd[2];
    if (pipe(fd) != 0) return tp_err(TP_ERR_IO, "submit: pipe: %s", strerror(errno));
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fd[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&fa, fd[1], STDERR_FILENO);
    posix_spawn_file_actions_addclose(&fa, fd[0]);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, g_env ? g_env : environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fd[1]);
    if (rc != 0) {
        close(fd[0]);
        return tp_err(TP_ERR_IO, "submit: cannot run %s: %s (is this a Slurm cluster? tools/slurm-local.sh starts "
                      "one here; --local writes the chain for mpirun)", argv[0], strerror(rc));
    }
    size_t got = 0;
    ssize_t r;
    char sink[256];
    while ((r = read(fd[0], got + 1 < n ? out + got : sink, got + 1 < n ? n - 1 - got : sizeof sink)) != 0) {
        if (r < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (got + 1 < n) got += (size_t)r;
    }
    out[got] = '\0';
    close(fd[0]);
    while (waitpid(pid, status, 0) < 0)
        if (errno != EINTR) return tp_err(TP_ERR_IO, "submit: waitpid: %s", strerror(errno));
    return TP_OK;
}

/* sbatch --parsable [--dependency=afterok:<after>] script -> the job id. */
static tp_status sbatch(const char *script, const char *after, char *id, size_t n)
{
    char dep[64], out[4096];
    char *argv[5];
    int a = 0;
    argv[a++] = "sbatch";
    argv[a++] = "--parsable";
    if (after) {
        snprintf(dep, sizeof dep, "--dependency=afterok:%s", after);
        argv[a++] = dep;
    }
    argv[a++] = (char *)script;
    argv[a] = NULL;
    int status;
    TP_CHECK(run_capture(argv, out, sizeof out, &status));
    /* --parsable: "<id>" or "<id>;<cluster>" on a line of its own; warnings may come
     * first. */
    const char *line = NULL;
    size_t digits = 0;
    for (const char *l = out; *l; l += strcspn(l, "\n"), l += *l == '\n') {
        size_t d = strspn(l, "0123456789");
        if (d > 0 && d < n && (l[d] == '\0' || l[d] == '\n' || l[d] == ';')) line = l, digits = d;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || !line) {
        /* the message is sbatch's, on one line */
        for (char *c = out; *c; c++)
            if (*c == '\n') *c = ' ';
        return tp_err(TP_ERR_IO, "submit: sbatch %s failed (exit %d): %s", script,
                      WIFEXITED(status) ? WEXITSTATUS(status) : -1, out[0] ? out : "no message");
    }
    memcpy(id, line, digits);
    id[digits] = '\0';
    return TP_OK;
}

/* ---- the command ------------------------------------------------------------------ */

static tp_status resolve_paths(const tp_cli *cli, submit_opts *o)
{
    if (!getcwd(o->cwd, sizeof o->cwd)) return tp_err(TP_ERR_IO, "submit: getcwd: %s", strerror(errno));
    char exe[PATH_MAX];
    if (!realpath("/proc/self/exe", exe)) return tp_err(TP_ERR_IO, "submit: cannot find this program: %s", strerror(errno));
    TP_CHECK(fs_path(o->bin, sizeof o->bin, "%s", exe));
    if (cli->run_dir[0] == '/') TP_CHECK(fs_path(o->run, sizeof o->run, "%s", cli->run_dir));
    else TP_CHECK(fs_path(o->run, sizeof o->run, "%s/%s", o->cwd, cli->run_dir));
    /* no trailing slashes, no "./" in the names the scripts print */
    size_t l = strlen(o->run);
    while (l > 1 && o->run[l - 1] == '/') o->run[--l] = '\0';
    const char *base = strrchr(o->run, '/');
    snprintf(o->name, sizeof o->name, "%s", base && base[1] ? base + 1 : "transpolmo");
    for (char *c = o->name; *c; c++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-", *c)) *c = '_';
    return run_path(o->config, sizeof o->config, o->run, RUN_JOBS_CONFIG_YAML);
}

static tp_status write_config(const tp_config *cfg, const char *path)
{
    FILE *f;
    TP_CHECK(fs_open_tmp(path, &f));
    fprintf(f, "# The configuration every job of the chain runs with (transpolmo submit).\n");
    tp_status st = tp_config_write_yaml(cfg, f);
    if (st != TP_OK) { fs_abort(f, path); return st; }
    return fs_commit(f, path);
}

static tp_status submit_rank0(tp_cli *cli)
{
    submit_opts o;
    TP_CHECK(read_options(cli, &o));
    TP_CHECK(resolve_paths(cli, &o));
    int n;
    const tp_phase *const *ps = pipeline_phases(&n);
    if (n > SUBMIT_MAX_PHASES) return tp_err(TP_ERR_INTERNAL, "submit: %d phases, at most %d", n, SUBMIT_MAX_PHASES);
    char *scripts[SUBMIT_MAX_PHASES] = {0}, *chain = NULL, *log = NULL;
    char ids[SUBMIT_MAX_PHASES][32] = {{0}};
    size_t loglen = 0;
    char (*paths)[TP_PATH_MAX] = tp_calloc((size_t)n, sizeof *paths);
    if (!paths) return TP_ERR_NOMEM;
    bool todo[SUBMIT_MAX_PHASES];
    tp_status st = TP_OK;
    int ntodo = 0;
    for (int i = 0; i < n && st == TP_OK; i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "%s/%d-%s.sbatch", RUN_JOBS_DIR, i + 1, ps[i]->name);
        st = run_path(paths[i], sizeof paths[i], o.run, rel);
        todo[i] = !pipeline_phase_complete(ps[i], cli->cfg, o.run);
        ntodo += todo[i];
        if (st == TP_OK) st = render(&scripts[i], &o, ps, n, i);
    }
    if (st == TP_OK) st = render(&chain, &o, ps, n, n);
    char chain_path[TP_PATH_MAX], logs[TP_PATH_MAX], record[TP_PATH_MAX];
    if (st == TP_OK) st = fs_path(chain_path, sizeof chain_path, "%s/%s/chain.sh", o.run, RUN_JOBS_DIR);
    if (st == TP_OK) st = fs_path(logs, sizeof logs, "%s/%s/logs", o.run, RUN_JOBS_DIR);
    if (st == TP_OK) st = fs_path(record, sizeof record, "%s/%s/submitted.tsv", o.run, RUN_JOBS_DIR);

    if (st == TP_OK && o.dry_run) {
        /* The scripts as they would be written, then the lines that would submit them. */
        for (int i = 0; i < n; i++)
            if (todo[i]) printf("#### %s\n%s\n", paths[i], scripts[i]);
            else printf("#### %s: phase %s complete, not submitted\n\n", paths[i], ps[i]->name);
        printf("#### %s\n%s\n#### submitting (sbatch):\n", chain_path, chain);
        int prev = -1;
        for (int i = 0; i < n; i++) {
            if (!todo[i]) continue;
            if (prev < 0) printf("job_%s=$(sbatch --parsable %s)\n", ps[i]->name, paths[i]);
            else printf("job_%s=$(sbatch --parsable --dependency=afterok:$job_%s %s)\n", ps[i]->name, ps[prev]->name,
                        paths[i]);
            prev = i;
        }
        if (!ntodo) printf("# nothing to submit: every phase is complete\n");
        goto done;
    }
    if (st == TP_OK) st = fs_mkdir_p(logs);
    if (st == TP_OK) st = write_config(cli->cfg, o.config);
    for (int i = 0; i < n && st == TP_OK; i++) st = write_file(paths[i], scripts[i], true);
    if (st == TP_OK) st = write_file(chain_path, chain, true);
    if (st != TP_OK) goto done;
    if (o.local) {
        tp_log_info("submit: wrote the chain of %d phases (%d to run) for mpirun; run it with: %s", n, ntodo, chain_path);
        goto done;
    }
    if (!ntodo) {
        tp_log_info("submit: every phase of %s is complete: nothing to submit", o.run);
        goto done;
    }
    FILE *rec = open_memstream(&log, &loglen);
    if (!rec) { st = tp_err(TP_ERR_NOMEM, "submit: out of memory"); goto done; }
    int prev = -1;
    for (int i = 0; i < n && st == TP_OK; i++) {
        if (!todo[i]) continue;
        st = sbatch(paths[i], prev >= 0 ? ids[prev] : NULL, ids[i], sizeof ids[i]);
        if (st != TP_OK) break;
        printf("%s %s\n", ps[i]->name, ids[i]);
        fflush(stdout);
        fprintf(rec, "%s\t%s\t%s\n", ps[i]->name, ids[i], paths[i]);
        prev = i;
    }
    fclose(rec);
    if (st != TP_OK && prev >= 0) {
        char list[SUBMIT_MAX_PHASES * 40] = "";
        for (int i = 0; i < n; i++)
            if (ids[i][0]) snprintf(list + strlen(list), sizeof list - strlen(list), " %s", ids[i]);
        tp_err_prefix("jobs%s were submitted before (jobs/submitted.tsv): scancel them, then submit again", list);
    }
    if (log && *log) {
        tp_status wst = fs_write_atomic(record, log, strlen(log));
        if (st == TP_OK) st = wst;
    }
    if (st == TP_OK)
        tp_log_info("submit: %d job(s) chained for %s (logs in %s; squeue -u $USER)", ntodo, o.run, logs);
done:
    free(paths);
    free(log);
    for (int i = 0; i < n; i++) free(scripts[i]);
    free(chain);
    return st;
}

tp_status submit_cmd_run(tp_cli *cli)
{
    tp_status st = dist_rank() == 0 ? submit_rank0(cli) : cli_reject_rest(cli);
    free_kept_environ();
    return dist_agree(MPI_COMM_WORLD, st, "submit");
}
