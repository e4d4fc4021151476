/* circuits_phase.c — phase 5: the driver, its descriptor and the table of its
 * subcommands (circuits_phase.h). A subcommand is one line of `subs` below. */
#include "analysis/circuits/circuits_phase.h"

#include "analysis/circuits/circuits_common.h"
#include "analysis/circuits/heads.h"
#include "analysis/circuits/library.h"
#include "analysis/circuits/library_task.h"
#include "analysis/circuits/patch.h"
#include "analysis/circuits/trace.h"
#include "analysis/circuits/weights.h"
#include "core/fault.h"
#include "core/log.h"
#include "run_layout.h"
#include "settings.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The subcommands: `transpolmo circuits <name> [options]`. */
static const tp_phase_sub subs[] = {
    {"trace", circuits_trace_cmd,
     "attention of one prompt per layer and head -> results/circuits/trace/<id>.json + a heat map per layer (SVG)",
     "  --prompt \"text\"      the prompt (BOS first when circuits.prepend_bos)\n"
     "  --heads L.H[,L.H]    trace only these heads (default: every head of `layers`, all when unset)\n"
     "  --name ID            names the outputs (default: a slug of the prompt and its hash)\n"
     "  keys: circuits.trace.top, circuits.prepend_bos (docs/circuits.md)\n"},
    {"heads", circuits_heads_cmd,
     "head scores and classes (previous-token, induction, ...) -> results/circuits/head_scores.json",
     "  --prompts FILE       .txt (one prompt per line) or .jsonl ({\"text\": ...} per line); default:\n"
     "                       circuits.heads.prompts, else held-out corpus documents (data.*); plus\n"
     "                       circuits.heads.synthetic repeated random-token prompts\n"
     "  keys: circuits.heads.* (thresholds, null shuffles, examples) (docs/circuits.md)\n"},
    {"weights", circuits_weights_cmd,
     "Q/K/V composition and OV copying scores from the weights -> results/circuits/weight_circuits.json",
     "  keys: circuits.weights.baseline_samples, circuits.seed (docs/circuits.md)\n"},
    {"dla", circuits_dla_cmd,
     "direct logit attribution of a target token's logit (difference) -> results/circuits/dla_<id>.json",
     "  --prompt \"text\"      the prompt; the logits of its last position are attributed\n"
     "  --target \" tok\"      the token whose logit is attributed (must be one token)\n"
     "  --distractor \" tok\"  attribute logit(target) - logit(distractor) instead\n"
     "  --name ID            names the output (default: a slug of the prompt and a hash)\n"},
    {"attribute", circuits_attribute_cmd,
     "edge attribution patching (EAP, EAP-IG) of a clean/corrupted pair -> results/circuits/attribute_<id>.json + the "
     "top-K circuit graph <id>.json/.dot/.svg",
     "  --clean \"text\"       the clean prompt\n"
     "  --corrupt \"text\"     the corrupted prompt (the same number of tokens)\n"
     "  --pairs FILE.jsonl   several pairs instead, one {\"clean\", \"corrupt\", \"target\", \"distractor\"} per line\n"
     "                       (target/distractor default to the options); scores are the mean over the pairs,\n"
     "                       which the ranks share\n"
     "  --target \" tok\"      m = logit(target) [- logit(distractor)] at the last position (one token)\n"
     "  --distractor \" tok\"  optional\n"
     "  --ig-steps M         EAP-IG over M interpolation steps of the embeddings (default 0: plain EAP)\n"
     "  --top K              edges kept in the graph (default 30)\n"
     "  --sae-features N     the top N features of each of the run's residual-stream SAEs become graph nodes\n"
     "                       (default 8; 0: none)\n"
     "  --name ID            names the outputs (default: a slug of the prompts and a hash)\n"},
    {"discover", circuits_discover_cmd,
     "a circuit for one prompt: EAP-ranked edges, the faithfulness curve f(k) (CPR, CMD) by exact node patching, the "
     "top nodes verified -> results/circuits/<id>.json/.dot/.svg",
     "  --prompt \"text\"      the clean prompt\n"
     "  --target \" tok\"      m = logit(target) [- logit(distractor)] (default: the model's top next token)\n"
     "  --distractor \" tok\"  optional\n"
     "  --corruption MODE    resample: a corpus window of the prompt's length (held-out documents, seeded);\n"
     "                       mean: every node at its mean output over corpus rows (default: resample, mean\n"
     "                       when no window has another top next token)\n"
     "  --name ID            names the outputs (default: a slug of the prompt and a hash)\n"
     "  keys: circuits.discover.* (docs/circuits.md)\n"},
    {"patch", circuits_patch_cmd,
     "activation patching (TransformerLens sweeps) and causal tracing (ROME) -> results/circuits/patch_<name>.json",
     "  --clean \"P\" --corrupt \"P'\" --target \" T\" --distractor \" D\"   activation patching (TransformerLens)\n"
     "  --clean \"P\" --corrupt-noise TOKENS --target \" T\"              causal tracing (ROME)\n"
     "  --sweep resid_pre,attn_out,mlp_out,z   (default: all; tracing: the first three)\n"
     "  TOKENS   positions (2, 1,3, 2-4) or a substring of the clean prompt (text:... to force one)\n"
     "  --seeds N (10)  --seed S (0)  --noise-scale X (3: noise std = X x the embedding std)\n"
     "  --name NAME     output name (default: from the prompts)\n"
     "  --cells-per-batch N   patched sequences per forward (default: 4096 rows' worth)\n"
     "  --layers L,...  layers to sweep (default: all)   (docs/patching.md)\n"},
    {NULL, NULL, NULL, NULL},
};

/* circuits.trace.prompt, every head: results/circuits/trace/phase.json and its heat maps. */
static tp_status phase_trace(const circuits_ctx *cx, const char *prompt, const char *run_dir)
{
    const tp_model_config *c = &cx->m->cfg;
    prompt_limits lim = circuits_limits(cx, 1);
    int32_t *ids = NULL;
    int T = 0;
    size_t n = (size_t)c->num_layers * c->num_heads;
    uint8_t *sel = tp_malloc(n ? n : 1);
    tp_status st = sel ? prompts_encode(cx->tok, prompt, &lim, "circuits.trace.prompt", &ids, &T) : TP_ERR_NOMEM;
    if (st == TP_OK) {
        memset(sel, 1, n);
        trace_request rq = {.prompt = prompt, .ids = ids, .T = T, .id = "phase", .select = sel};
        st = trace_run(cx, &rq, run_dir);
    }
    free(ids), free(sel);
    return st;
}

tp_status circuits_phase_run(const tp_config *cfg, const char *run_dir)
{
    tp_settings set;
    circuits_settings cs;
    circuits_ctx cx = {0};
    TP_CHECK(settings_read(cfg, &set));
    TP_CHECK(circuits_settings_read(cfg, &cs));
    tp_status st = circuits_open(&set, &cs, &cx);
    if (st == TP_OK) st = heads_run(&cx, NULL, run_dir);
    if (st == TP_OK) st = tp_fault("circuits", "heads");
    if (st == TP_OK) st = weights_run(&cx, run_dir);
    if (st == TP_OK) st = tp_fault("circuits", "weights");
    if (st == TP_OK) st = library_run(&cx, run_dir);
    if (st == TP_OK) st = tp_fault("circuits", "library");
    if (st == TP_OK && cs.trace_prompt[0]) st = phase_trace(&cx, cs.trace_prompt, run_dir);
    circuits_close(&cx);
    return st;
}

/* "best previous_token L1H3 0.61 | ... | top Q-composition ..." */
static void circuits_headline(const char *run_dir, char *buf, size_t n)
{
    char a[384] = "", b[256] = "", c[96] = "";
    heads_headline(run_dir, a, sizeof a);
    weights_headline(run_dir, b, sizeof b);
    library_headline(run_dir, c, sizeof c);
    snprintf(buf, n, "%s%s%s%s%s", a, a[0] && b[0] ? " | " : "", b, (a[0] || b[0]) && c[0] ? " | " : "", c);
}

/* The circuit library's task files are inputs: a changed task reruns the phase. */
static uint64_t circuits_inputs_hash(const tp_config *cfg)
{
    const char *dir = tp_config_str(cfg, "circuits.library.dir");
    return dir && dir[0] ? lib_tasks_hash(dir) : 0;
}

static const char *const circuits_outputs[] = {RUN_CIRCUITS_HEAD_SCORES_JSON, RUN_CIRCUITS_WEIGHTS_JSON,
                                               RUN_CIRCUITS_LIBRARY_JSON, NULL};
static const char *const circuits_reads[] = {"model.", "data.", "forward.gemm", "forward.bf16_compute", NULL};

static const char *const circuits_faults[] = {"heads", "weights", "library", NULL};
const tp_phase circuits_phase = {
    .name = "circuits",
    .help = "phase 5: head scores and classes, weight circuits, the circuit library; subcommands trace, heads, weights, dla, "
            "attribute, discover",
    .run = circuits_phase_run,
    .outputs = circuits_outputs,
    .config = &circuits_section,
    .reads = circuits_reads,
    .needs = NULL,
    .usage = "  transpolmo circuits                 runs heads, weights, the circuit library and a trace of\n"
             "                                      circuits.trace.prompt (the phase)\n"
             "  transpolmo circuits <sub> [options] runs one subcommand (below)\n",
    .headline = circuits_headline,
    .subs = subs,
    .inputs_hash = circuits_inputs_hash,
    .faults = circuits_faults,
};
