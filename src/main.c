/* main.c — command-line dispatch from two tables: the phases (pipeline.c) and the
 * commands that are not phases (below). Each command parses its own arguments, runs
 * its phase or tool, and main decides the exit code; a failure on any rank ends every
 * rank (MPI_Abort) with the message naming the rank. */
#define _GNU_SOURCE   /* sched_getaffinity, CPU_COUNT */
#include "backend/backend.h"
#include "cli.h"
#include "cmd/ablate_cmd.h"
#include "cmd/eval_cmd.h"
#include "cmd/features_cmd.h"
#include "cmd/forward_cmd.h"
#include "cmd/generate_cmd.h"
#include "cmd/plan_cmd.h"
#include "cmd/query_cmd.h"
#include "cmd/report_cmd.h"
#include "cmd/submit_cmd.h"
#include "cmd/tokenize_cmd.h"
#include "core/config.h"
#include "core/error.h"
#include "core/fault.h"
#include "core/fsutil.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/text.h"
#include "dist/stop.h"
#include "dist/world.h"
#include "pipeline.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef tp_status (*command_fn)(tp_cli *cli);

typedef struct {
    const char *name;
    command_fn run;
    const char *help;         /* one line */
    const char *usage;        /* option lines, or NULL */
    bool runtime;             /* threads, kernels and the device are set up first */
} command;

static tp_status cmd_run(tp_cli *cli);
static tp_status cmd_config(tp_cli *cli);
static tp_status cmd_phases(tp_cli *cli);

/* Commands that are not phases, in the order `help` lists them after `run` and the
 * phases. */
static const command commands[] = {
    {"run", cmd_run, "run every phase in order into the run directory (resumes)",
     "  transpolmo run [CONFIG.yaml]     configs/default.yaml when none is given\n", true},
    {"submit", submit_cmd_run, "the phases as a chain of Slurm jobs, one per phase, each after the one before (resumes)",
     "  transpolmo submit [CONFIG.yaml]  configs/default.yaml when none is given\n"
     "  --nodes N (1)  --ntasks-per-node T (1)  --cpus-per-task C  --gpus-per-task G\n"
     "  --time T       Slurm's time limit of each job (minutes, H:M:S, D-H:M ...)\n"
     "  --partition P  --account A\n"
     "  --mpi TYPE     srun --mpi= (default pmix; `srun --mpi=list` names what the cluster has)\n"
     "  --grace S      a job gets SIGUSR1 S seconds before its time limit (default 120): it stops at\n"
     "                 a safe point and is requeued, and its next run resumes\n"
     "  --dry-run      print the scripts and the sbatch lines; write and submit nothing\n"
     "  --local        write <run>/jobs/ (scripts and chain.sh, the chain with mpirun) and submit nothing\n"
     "  writes <run>/jobs/; phases already complete are not submitted (docs/clusters.md)\n", false},
    {"forward", forward_cmd_run, "run the model on a prompt or token ids: top next tokens, dump capture points",
     "  --prompt \"text\"      the text, tokenized as the model's tokenizer does\n"
     "  --ids 1,2,3[/4,5,6]  sequences of equal length ('/' separates)\n"
     "  --ids-file F.npy     int32/int64 [B,T] or [T]\n"
     "  --top K              top next tokens to print (default 10)\n"
     "  --dump HOOK[,HOOK]   capture points to save as .npy (docs/hooks.md)\n"
     "  --dump-dir DIR       where to save them (default <run>/forward)\n"
     "  --logits-out F.npy   save all logits [B,T,V]\n", true},
    {"tokenize", tokenize_cmd_run, "text to token ids, or ids to text (docs/tokenizer.md)",
     "  --text \"...\" | --file F (- for stdin) | --ids 1,2,3\n"
     "  --tokenizer FILE     tokenizer.json (default <model>/tokenizer.json)\n"
     "  --replace-invalid    replace invalid UTF-8 instead of failing\n"
     "  --no-special / --skip-special / --show-tokens\n", true},
    {"eval", eval_cmd_run, "per-token loss and perplexity over sampled corpus documents -> results/eval.json",
     "  --per-token-out F.npy  every predicted token's loss, in order\n", true},
    {"features", features_cmd_run, "features query: the features of results/features_catalog.json, as a table or JSON",
     "  features query [filters] [--fields a,b,c] [--sort FIELD[:asc|desc]] [--limit N] [--json] [--catalog FILE]\n"
     "  filters: --layer L  --hook NAME  --feature ID  --token TEXT  --dead\n"
     "           --density-min X  --density-max X  --domain NAME [--domain-min F]\n"
     "  --fields   columns: index columns (hook layer feature fires density mean max dead dense\n"
     "             top_domain share top_token top_context ...) or feature keys (activation_mass,\n"
     "             monosemanticity.score, ...); default hook,feature,density,fires,mean,max,\n"
     "             top_domain,share,top_token,top_context\n"
     "  --sort     by a field (default: catalog order); --json: one JSON object per feature\n"
     "  (docs/features.md)\n", true},
    {"query", query_cmd_run, "query the documentation: features by token or domain, heads by class, circuits by task, layers by geometry",
     "  query features [--token TEXT] [--domain NAME] [--layer L] [--hook NAME] [--verified]\n"
     "  query heads [--class NAME] [--layer L] [--verified]\n"
     "  query circuits [--task NAME] [--verified]\n"
     "  query layers [--geometry TEXT] [--layer L]\n"
     "  --json     one JSON object per line (the documentation's entry)   --limit N\n"
     "  --doc FILE another model_documentation.json (default <run>/docs/findings/, `transpolmo document`)\n"
     "  (docs/document.md)\n", false},
    {"ablate", ablate_cmd_run, "ablate or steer heads, MLPs, neurons or SAE features over prompts -> results/ablations/<name>.json",
     "  --heads 1.3,2.0 | --mlp 1,3 | --neurons 2:101,... | --features HOOK:ID,...   (any combination)\n"
     "  --mode zero|mean|resample   what they become (default zero); mean/resample from corpus\n"
     "                       documents that are not prompts (--stat-docs N, default 64)\n"
     "  --steer ALPHA        instead of --mode: heads/MLPs/neurons times ALPHA, features += ALPHA*W_dec\n"
     "  --prompts FILE       .txt (a prompt per line) or .jsonl ({\"text\": ...}); default: the corpus sample\n"
     "  --max-prompts N (256)  --tokens \" Paris| London\" | --token-ids 1,2   last-position logit changes\n"
     "  --bootstrap B (1000)  --seed S (0)  --name NAME (of the JSON)\n", true},
    {"generate", generate_cmd_run, "greedy continuation with the KV cache",
     "  --prompt \"text\" | --ids 1,2,3   --max-new N (40)  --no-stop\n", true},
    {"report", report_cmd_run, "the run's findings as one self-contained HTML page -> docs/findings/report.html",
     "  --html PATH          where to write it (default <run>/docs/findings/report.html)\n"
     "  reads whatever results/ holds (docs/report.md); a missing phase is a section saying \"not run\"\n", true},
    {"plan", plan_cmd_run, "predict each phase's time, memory per rank, disk and traffic for a config (docs/planning.md)",
     "  transpolmo plan CONFIG.yaml --ranks N [--nodes M] [--gpus-per-rank G] [--mem-per-rank GB] [--json]\n"
     "  --cores-per-node C   cores of a node (default: this machine's)   --node-mem GB (default: this machine's)\n"
     "  --model-config F|NAME  shapes from a config.json or a built-in name (1b, 7b, 13b, 32b)\n"
     "  --rows N             tokens of the sample (default: tokenize it)\n"
     "  --calibration FILE   rates (default $TP_CALIBRATION, else ~/.cache/transpolmo/calibration.json)\n"
     "  transpolmo plan --calibrate [--out FILE]   time this machine's kernels and write the calibration\n", true},
    {"config", cmd_config, "config show: the effective configuration as YAML; config schema: every key (Markdown)",
     NULL, false},
    {"phases", cmd_phases, "the phases in order, one per line (--json: with outputs, needs and config keys)",
     "  --json               a JSON array of the phase descriptors\n", false},
};

#define NCOMMANDS (sizeof commands / sizeof *commands)

static const char common_options[] =
    "options of every command (precedence: defaults < config file < command line):\n"
    "  --config FILE       YAML configuration (configs/default.yaml for `run` if absent)\n"
    "  --set KEY=VALUE     any configuration key (see docs/config.md)\n"
    "  --model DIR         Hugging Face model directory       (model.path)\n"
    "  --num-samples N     documents to sample                (data.num_samples)\n"
    "  --device cpu|cuda                                     (device)\n"
    "  --skip-sae                                            (sae.skip)\n"
    "  --layers 0,6,11     layers to analyse                  (layers)\n"
    "  --out DIR           run directory                      (run.out_dir)\n"
    "  --verbose           errors also say where in the source they were raised\n"
    "  -h, --help          this command's usage\n";

static const command *find_command(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (!strcmp(commands[i].name, name)) return &commands[i];
    return NULL;
}

/* "unknown command 'x'", with the nearest command or phase when one is close. */
static tp_status unknown_command(const char *name)
{
    const char *names[NCOMMANDS + 64 + 2];
    size_t n = 0;
    for (size_t i = 0; i < NCOMMANDS; i++) names[n++] = commands[i].name;
    int np;
    const tp_phase *const *ps = pipeline_phases(&np);
    for (int i = 0; i < np && i < 64; i++) names[n++] = ps[i]->name;
    names[n++] = "help", names[n++] = "version";
    const char *near = tp_nearest(name, names, n);
    if (near) return tp_err(TP_ERR_CONFIG, "unknown command '%s' (did you mean '%s'? try 'transpolmo help')", name, near);
    return tp_err(TP_ERR_CONFIG, "unknown command '%s' (try 'transpolmo help')", name);
}

static void usage(FILE *f)
{
    fprintf(f, "TranspOLMo %s — make a transformer language model transparent\n\n"
               "usage: transpolmo <command> [options]   (transpolmo <command> --help for its options)\n\ncommands:\n",
            TP_VERSION);
    fprintf(f, "  %-12s %s\n", commands[0].name, commands[0].help);
    int n;
    const tp_phase *const *ps = pipeline_phases(&n);
    for (int i = 0; i < n; i++) {
        fprintf(f, "  %-12s %s\n", ps[i]->name, ps[i]->help);
        for (const tp_phase_sub *s = ps[i]->subs; s && s->name; s++) fprintf(f, "    %-10s %s\n", s->name, s->help);
    }
    for (size_t i = 1; i < NCOMMANDS; i++) fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "  %-12s %s\n  %-12s %s\n\n%s", "help", "this text, or `help <command>`", "version",
            "print the version", common_options);
}

static const tp_phase_sub *find_sub(const tp_phase *p, const char *name)
{
    for (const tp_phase_sub *s = p->subs; s && s->name; s++)
        if (!strcmp(s->name, name)) return s;
    return NULL;
}

/* "circuits: unknown subcommand 'x'", with the nearest one when one is close. */
static tp_status unknown_sub(const tp_phase *p, const char *name)
{
    const char *names[64];
    size_t n = 0;
    char list[512] = "";
    for (const tp_phase_sub *s = p->subs; s && s->name && n < 64; s++) {
        size_t l = strlen(list);
        snprintf(list + l, sizeof list - l, "%s%s", n ? ", " : "", s->name);
        names[n++] = s->name;
    }
    const char *near = tp_nearest(name, names, n);
    if (near)
        return tp_err(TP_ERR_CONFIG, "%s: unknown subcommand '%s' (did you mean '%s'? subcommands: %s)", p->name, name,
                      near, list);
    return tp_err(TP_ERR_CONFIG, "%s: unknown subcommand '%s' (subcommands: %s)", p->name, name, list);
}

/* `transpolmo <phase> <sub> --help`: the subcommand's own usage. */
static int sub_usage(const tp_phase *p, const char *name)
{
    const tp_phase_sub *s = find_sub(p, name);
    if (!s) {
        unknown_sub(p, name);
        fprintf(stderr, "transpolmo: error: %s\n", tp_err_msg());
        return 2;
    }
    printf("usage: transpolmo %s %s [options]\n\n%s\n", p->name, s->name, s->help);
    if (s->usage) printf("\n%s", s->usage);
    printf("\n%s", common_options);
    return 0;
}

/* `transpolmo <cmd> --help` / `help <cmd> [sub]`: 0, or 2 for an unknown command
 * or subcommand. `sub` is the word after the command (NULL: none); only a phase
 * with subcommands reads it. */
static int command_usage(const char *name, const char *sub)
{
    const command *c = find_command(name);
    const tp_phase *p = pipeline_find(name);
    if (!c && !p) {
        unknown_command(name);
        fprintf(stderr, "transpolmo: error: %s\n", tp_err_msg());
        return 2;
    }
    if (p && p->subs && sub) return sub_usage(p, sub);
    printf("usage: transpolmo %s %s[options]\n\n%s\n", name, p && p->subs ? "[subcommand] " : "",
           c ? c->help : p->help);
    const char *u = c ? c->usage : p->usage;
    if (u) printf("\n%s", u);
    if (p && p->subs) {
        printf("\nsubcommands (transpolmo %s <subcommand> --help for its options):\n", name);
        for (const tp_phase_sub *s = p->subs; s->name; s++) printf("  %-10s %s\n", s->name, s->help);
    }
    if (p) {
        printf("\nwrites (under the run directory):\n");
        for (const char *const *o = p->outputs; *o; o++) printf("  %s\n", *o);
        if (p->config) printf("\nits configuration keys: %s.* (docs/config.md)\n", p->config->name);
        printf("\n  --skip-complete     do nothing when the phase is complete for this configuration (what\n"
               "                      `run` does for each phase; the job chains of `submit` pass it)\n");
    }
    printf("\n%s", common_options);
    return 0;
}

/* Compute threads of this rank: forward.threads when set; else what OPENBLAS_NUM_THREADS
 * or OMP_NUM_THREADS say; else the CPUs this rank may run on (its affinity, which
 * mpirun's binding and srun's --cpus-per-task set), shared with the other ranks of
 * the node when they may run on the same CPUs (mpirun --bind-to none), so ranks
 * never oversubscribe the node's cores. The same rule under mpirun, srun and a lone
 * rank. */
static int threads_for_rank(const tp_settings *s, int *allowed, int *online)
{
    cpu_set_t set;
    *allowed = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
    long on = sysconf(_SC_NPROCESSORS_ONLN);
    *online = on > 0 ? (int)on : *allowed;
    if (s->backend.threads > 0) return s->backend.threads;
    const char *env = getenv("OPENBLAS_NUM_THREADS");
    if (!env || !*env) env = getenv("OMP_NUM_THREADS");
    if (env && atoi(env) > 0) return atoi(env);
    int share = *online / dist_local_size();
    int t = *allowed < share ? *allowed : share;
    return t > 0 ? t : 1;
}

/* --device cuda: the CUDA backend (no GPU: its reason), made the default only when
 * it runs every op of the forward pass (a guard for a table with a slot left NULL);
 * models opened after this upload their weights to it (model_open). */
static tp_status open_device(const tp_backend_options *opt)
{
    /* one rank per GPU: the node's ranks take GPUs 0, 1, ... (more ranks than GPUs is
     * backend_open's "device N out of range") */
    tp_backend_options o = *opt;
    o.device = dist_local_rank();
    tp_backend *be;
    TP_CHECK(backend_open("cuda", &o, &be));
    const char *missing = !be->iface.linear ? "linear" : !be->iface.attention ? "attention" : !be->iface.embed ? "embed" : NULL;
    if (missing) {
        backend_close(be);
        return tp_err(TP_ERR_UNSUPPORTED, "device 'cuda': op %s is not available on cuda yet, so the forward pass runs on "
                      "the CPU only; use --device cpu (docs/cuda.md)", missing);
    }
    backend_set_default(be);
    return TP_OK;
}

static tp_status apply_runtime_config(const tp_settings *s)
{
    tp_progress_set_default(s->progress, s->progress_interval);
    int allowed, online, threads = threads_for_rank(s, &allowed, &online);
    tp_backend_options opt = s->backend;
    opt.threads = threads;
    tp_backend *cpu;
    TP_CHECK(backend_open("cpu", &opt, &cpu));
    if (threads > allowed)
        tp_log_warn("%d compute threads but this rank may run on %d CPU(s) only: they take turns (start it with "
                    "`mpirun --bind-to none`, or set forward.threads=%d)", threads, allowed, allowed);
    else if (dist_size() == 1 && allowed < online && s->backend.threads == 0)
        tp_log_info("this rank may run on %d of the node's %d CPUs (mpirun binds a rank to a core; "
                    "`mpirun --bind-to none -np 1` lets it use all)", allowed, online);
    if (!strcmp(s->device, "cuda")) return open_device(&opt);
    return TP_OK;
}

static tp_status cmd_run(tp_cli *cli)
{
    TP_CHECK(cli_reject_rest(cli));
    return pipeline_run_all(cli->cfg, cli->run_dir);
}

static tp_status cmd_config(tp_cli *cli)
{
    const char *what = cli_take_positional(cli);
    TP_CHECK(cli_reject_rest(cli));
    if (!what || !strcmp(what, "show")) {
        if (dist_rank() == 0) return tp_config_write_yaml(cli->cfg, stdout);
        return TP_OK;
    }
    if (!strcmp(what, "schema")) {
        if (dist_rank() == 0) tp_config_write_schema_md(stdout);
        return TP_OK;
    }
    return tp_err(TP_ERR_CONFIG, "config: unknown subcommand '%s' (show, schema)", what);
}

static tp_status cmd_phases(tp_cli *cli)
{
    bool json = cli_take_flag(cli, "--json");
    TP_CHECK(cli_reject_rest(cli));
    return dist_rank() == 0 ? pipeline_print_phases(stdout, json) : TP_OK;
}

/* `transpolmo <phase> [--skip-complete]`: the phase runs again unless --skip-complete
 * (what the job chains pass) finds it complete for this configuration. */
static tp_status run_phase_command(const tp_phase *p, tp_cli *cli)
{
    bool skip = cli_take_flag(cli, "--skip-complete");
    TP_CHECK(cli_reject_rest(cli));
    if (skip && pipeline_phase_complete(p, cli->cfg, cli->run_dir)) {
        tp_log_info("phase %s: complete, skipped", p->name);
        return TP_OK;
    }
    return pipeline_run_phase(p, cli->cfg, cli->run_dir);
}

static tp_status dispatch(tp_cli *cli)
{
    const command *c = find_command(cli->command);
    const tp_phase *p = c ? NULL : pipeline_find(cli->command);
    if (!c && !p) return unknown_command(cli->command);
    const tp_phase_sub *s = NULL;
    if (p && p->subs && cli_take_subcommand(cli) && !(s = find_sub(p, cli->subcommand)))
        return unknown_sub(p, cli->subcommand);
    if (p || c->runtime) TP_CHECK(apply_runtime_config(&cli->set));
    if (s) return s->run(cli);
    return p ? run_phase_command(p, cli) : c->run(cli);
}

/* The topmost directory of run_dir's path that does not exist yet ("" if run_dir
 * exists): what a failed command may remove again if it stayed empty. */
static void missing_root(const char *run_dir, char *out, size_t n)
{
    out[0] = '\0';
    if (!run_dir[0] || fs_exists(run_dir) || fs_path(out, n, "%s", run_dir) != TP_OK) { out[0] = '\0'; return; }
    for (;;) {
        char *slash = strrchr(out, '/');
        while (slash && slash > out && slash[1] == '\0') *slash = '\0', slash = strrchr(out, '/');
        if (!slash || slash == out) return;
        *slash = '\0';
        if (fs_exists(out)) { *slash = '/'; return; }
    }
}

static int has_arg(int argc, char **argv, const char *a, const char *b)
{
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], a) || (b && !strcmp(argv[i], b))) return 1;
    return 0;
}

/* The message for users names the file and the problem; where in the source it was
 * raised is for --verbose (or log.verbose) and bug reports. */
static void report_error(int verbose)
{
    if (verbose && tp_err_where()[0]) tp_log_error("%s (at %s)", tp_err_msg(), tp_err_where());
    else tp_log_error("%s", tp_err_msg());
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        (!strcmp(argv[1], "help") && argc < 3)) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "help")) return command_usage(argv[2], argc > 3 ? argv[3] : NULL);
    if (has_arg(argc, argv, "--help", "-h"))
        return command_usage(argv[1], argc > 2 && argv[2][0] != '-' ? argv[2] : NULL);
    int verbose = has_arg(argc, argv, "--verbose", NULL);
    if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
        printf("transpolmo %s\n", TP_VERSION);
        return 0;
    }
    submit_cmd_keep_environ(environ);   /* before MPI_Init adds its own */
    /* SIGUSR1 can come at any time (Slurm's warning before the time limit may come
     * within seconds of a job's start): a flag from the first instruction on, not the
     * default action (the rank ends); installed again after MPI_Init below. */
    dist_stop_install();
    if (dist_init(&argc, &argv) != TP_OK) {
        report_error(verbose);
        return 1;
    }
    tp_fault_install_signals();
    dist_stop_install();
    tp_cli cli;
    tp_status st = cli_parse(argc, argv, &cli);
    if (st == TP_OK) st = pipeline_check_fault();
    char created[TP_PATH_MAX] = "";
    if (st == TP_OK) missing_root(cli.run_dir, created, sizeof created);
    if (st == TP_OK) verbose |= cli.set.verbose, st = dispatch(&cli);
    if (st == TP_ERR_STOPPED) {
        /* Every rank stopped at the same safe point (dist/stop.h): a normal end, with
         * the exit code that says "rerun to resume". */
        tp_log_info("%s", tp_err_msg());
        cli_free(&cli);
        dist_finalize();
        return TP_EXIT_STOPPED;
    }
    if (st != TP_OK) {
        report_error(verbose);
        /* A command that failed before writing anything leaves no empty run folders. */
        if (dist_rank() == 0 && created[0]) fs_rmdir_empty(created);
        cli_free(&cli);
        dist_abort(st == TP_ERR_CONFIG ? 2 : 1);
    }
    cli_free(&cli);
    dist_finalize();
    return 0;
}
