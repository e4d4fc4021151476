/* main.c — command-line dispatch. Each command parses its own arguments, runs its
 * phase or tool, and main decides the exit code; a failure on any rank ends every
 * rank (MPI_Abort) with the message naming the rank. */
#define _GNU_SOURCE   /* sched_getaffinity, CPU_COUNT */
#include "analysis/constraints/inspect_phase.h"
#include "backend/cpu.h"
#include "backend/linear.h"
#include "core/cli.h"
#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "core/progress.h"
#include "dist/world.h"
#include "pipeline.h"
#include "cmd/forward_cmd.h"
#include "cmd/tokenize_cmd.h"
#include "cmd/eval_cmd.h"
#include "cmd/features_cmd.h"
#include "cmd/generate_cmd.h"

#include <sched.h>
#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
        "TranspOLMo %s — make a transformer language model transparent\n"
        "\n"
        "usage: transpolmo <command> [options]\n"
        "\n"
        "commands:\n"
        "  run [CONFIG.yaml]   run every phase in order into the run directory (resumes)\n"
        "  inspect             phase 1: architecture, parameter counts, weight spectra\n"
        "                      -> <run>/results/architecture.json\n"
        "  capture             phase 2: activations at the capture points -> <run>/activations.h5\n"
        "  geometry            phase 3: PCA, intrinsic dimension, local geometry, clusters, norms\n"
        "                      -> <run>/results/geometric_analysis.json, /pca/<hook>/ in the store\n"
        "  sae                 phase 4: sparse autoencoders per capture point (docs/sae.md)\n"
        "                      -> <run>/results/sae_layer_<L>/ (SAELens layout), sae_summary.json\n"
        "  forward             run the model on token ids: top next tokens, dump capture points\n"
        "                      --ids 1,2,3[/4,5,6]  sequences of equal length ('/' separates)\n"
        "                      --ids-file F.npy     int32/int64 [B,T] or [T]\n"
        "                      --top K              top next tokens to print (default 10)\n"
        "                      --dump HOOK[,HOOK]   capture points to save as .npy (docs/hooks.md)\n"
        "                      --dump-dir DIR       where to save them (default <run>/forward)\n"
        "                      --logits-out F.npy   save all logits [B,T,V]\n"
        "  tokenize            text to token ids, or ids to text (docs/tokenizer.md)\n"
        "                      --text \"...\" | --file F (- for stdin) | --ids 1,2,3\n"
        "                      --tokenizer FILE     tokenizer.json (default <model>/tokenizer.json)\n"
        "                      --replace-invalid    replace invalid UTF-8 instead of failing\n"
        "                      --no-special / --skip-special / --show-tokens\n"
        "  eval                per-token loss and perplexity over sampled corpus documents\n"
        "                      -> <run>/results/eval.json (overall and per domain)\n"
        "                      --per-token-out F.npy  every predicted token's loss, in order\n"
        "  features query      features of <run>/results/features_catalog.json, one JSON line each\n"
        "                      --layer L  --hook NAME  --feature ID  --token TEXT  --dead\n"
        "                      --density-min X  --density-max X  --domain NAME [--domain-min F]\n"
        "                      --limit N  --catalog FILE  (docs/features.md)\n"
        "  generate            greedy continuation with the KV cache\n"
        "                      --prompt \"text\" | --ids 1,2,3   --max-new N (40)  --no-stop\n"
        "  config show         print the effective configuration as YAML\n"
        "  config schema       print every configuration key as a Markdown table\n"
        "  version             print the version\n"
        "\n"
        "options of every command (precedence: defaults < config file < command line):\n"
        "  --config FILE       YAML configuration (configs/default.yaml for `run` if absent)\n"
        "  --set KEY=VALUE     any configuration key (see docs/config.md)\n"
        "  --model DIR         Hugging Face model directory       (model.path)\n"
        "  --num-samples N     documents to sample                (data.num_samples)\n"
        "  --device cpu|cuda                                     (device)\n"
        "  --skip-sae                                            (sae.skip)\n"
        "  --layers 0,6,11     layers to analyse                  (layers)\n"
        "  --out DIR           run directory                      (run.out_dir)\n",
        TP_VERSION);
}

static tp_status apply_runtime_config(const tp_config *cfg)
{
    const char *mode = tp_config_str(cfg, "log.progress");
    tp_progress_mode pm = !strcmp(mode, "always") ? TP_PROGRESS_ALWAYS
                        : !strcmp(mode, "never") ? TP_PROGRESS_NEVER : TP_PROGRESS_AUTO;
    tp_progress_set_default(pm, tp_config_float(cfg, "log.progress_interval"));
    cpu_set_threads((int)tp_config_int(cfg, "forward.threads"));
    cpu_linear_enable(strcmp(tp_config_str(cfg, "forward.gemm"), "openblas") != 0);
    /* mpirun binds a lone rank (and each of 2 ranks) to one core by default: BLAS
     * threads beyond the CPUs this rank may run on only take turns. */
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && cpu_get_threads() > CPU_COUNT(&set))
        tp_log_warn("%d BLAS threads but this rank may run on %d CPU(s) only: start it with `mpirun --bind-to none` "
                    "(or set forward.threads=%d)", cpu_get_threads(), CPU_COUNT(&set), CPU_COUNT(&set));
    if (!strcmp(tp_config_str(cfg, "device"), "cuda"))
        return tp_err(TP_ERR_UNSUPPORTED,
                      "device 'cuda': the GPU forward pass is not implemented yet; use --device cpu");
    return TP_OK;
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

static tp_status dispatch(tp_cli *cli)
{
    const char *cmd = cli->command;
    char run_dir[4096];
    if (!strcmp(cmd, "config")) return cmd_config(cli);
    TP_CHECK(apply_runtime_config(cli->cfg));
    cli_run_dir(cli->cfg, run_dir, sizeof run_dir);
    if (!strcmp(cmd, "run")) {
        TP_CHECK(cli_reject_rest(cli));
        return pipeline_run_all(cli->cfg, run_dir);
    }
    if (!strcmp(cmd, "forward")) return forward_cmd_run(cli, run_dir);
    if (!strcmp(cmd, "tokenize")) return tokenize_cmd_run(cli);
    if (!strcmp(cmd, "eval")) return eval_cmd_run(cli, run_dir);
    if (!strcmp(cmd, "features")) return features_cmd_run(cli, run_dir);
    if (!strcmp(cmd, "generate")) return generate_cmd_run(cli, run_dir);
    const tp_phase *p = pipeline_find(cmd);
    if (p) {
        TP_CHECK(cli_reject_rest(cli));
        TP_CHECK(pipeline_record_run(cli->cfg, run_dir));
        return pipeline_run_phase(p, cli->cfg, run_dir);
    }
    return tp_err(TP_ERR_CONFIG, "unknown command '%s' (try 'transpolmo help')", cmd);
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
        printf("transpolmo %s\n", TP_VERSION);
        return 0;
    }
    if (dist_init(&argc, &argv) != TP_OK) {
        tp_log_error("%s", tp_err_msg());
        return 1;
    }
    tp_cli cli;
    tp_status st = cli_parse(argc, argv, &cli);
    if (st == TP_OK) st = dispatch(&cli);
    cli_free(&cli);
    if (st != TP_OK) {
        tp_log_error("%s", tp_err_msg());
        dist_abort(st == TP_ERR_CONFIG ? 2 : 1);
    }
    dist_finalize();
    return 0;
}
