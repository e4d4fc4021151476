/* verify_phase.c — phase 7: the driver, its descriptor and headline (verify_phase.h). */
#include "analysis/verify/verify_phase.h"

#include "analysis/circuits/circuits_phase.h"
#include "analysis/sae/sae_phase.h"
#include "analysis/verify/verify_features.h"
#include "analysis/verify/verify_heads.h"
#include "core/fault.h"
#include "core/log.h"
#include "dist/world.h"
#include "run_layout.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void verify_skip(verify_ctx *vx, const char *what, const char *fmt, ...)
{
    char why[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    tp_log_warn("verify: skipped %s: %s", what, why);
    json_array_append_new(vx->skipped, json_pack("{s:s, s:s}", "what", what, "why", why));
}

/* Every head of the model under mean ablation, its statistics collected once (the
 * source of every head set's statistics). Collective. */
static tp_status head_statistics(verify_ctx *vx)
{
    const tp_model_config *c = &vx->cx->m->cfg;
    int n = c->num_layers * c->num_heads;
    iv_target *t = tp_malloc(((size_t)n + 1) * sizeof *t);
    if (!t) return TP_ERR_NOMEM;
    for (int k = 0; k < n; k++) t[k] = (iv_target){.kind = IV_HEAD, .layer = k / c->num_heads, .index = k % c->num_heads};
    tp_status st = iv_new(vx->cx->m, t, n, IV_MEAN, 0, NULL, NULL, &vx->head_stats);
    free(t);
    if (st == TP_OK) {
        tp_log_info("verify: head statistics over %zu sequences of %s", vx->stats.seqs.n_seqs, vx->stats_source);
        st = iv_collect_statistics(vx->head_stats, vx->stats_fwd, &vx->stats.seqs, vx->set->batch_size, vx->vs->seed);
    }
    return st;
}

tp_status verify_intervention(verify_ctx *vx, const iv_target *targets, int n, iv_mode mode, double alpha, iv_set **out)
{
    TP_CHECK(iv_new(vx->cx->m, targets, n, mode, alpha, NULL, NULL, out));
    if (!iv_needs_statistics(*out)) return TP_OK;
    tp_status st = TP_OK;
    bool heads = true;
    for (int k = 0; k < n; k++) heads = heads && targets[k].kind == IV_HEAD;
    if (heads && !vx->head_stats) st = head_statistics(vx);
    if (st == TP_OK)
        st = heads ? iv_share_statistics(*out, vx->head_stats)
                   : iv_collect_statistics(*out, vx->stats_fwd, &vx->stats.seqs, vx->set->batch_size, vx->vs->seed);
    if (st != TP_OK) iv_free(*out), *out = NULL;
    return st;
}

/* Statistics documents: held-out corpus documents outside the run's sample, or the
 * sample itself when it is the whole corpus. */
static tp_status open_statistics(verify_ctx *vx)
{
    tp_dataset sample = {0};
    const circuits_ctx *cx = vx->cx;
    int32_t eos = cx->m->cfg.eos_token_id;
    TP_CHECK(dataset_open(&vx->set->data, cx->tok, eos, "verify statistics", &sample));
    int64_t *ex = tp_malloc((sample.ndocs + 1) * sizeof *ex);
    tp_status st = ex ? TP_OK : TP_ERR_NOMEM;
    for (size_t i = 0; ex && i < sample.ndocs; i++) ex[i] = (int64_t)sample.docs[i];
    bool whole = false;
    if (st == TP_OK && sample.ndocs >= corpus_count(sample.corpus)) whole = true;
    if (st == TP_OK && !whole)
        st = dataset_open_heldout(&vx->set->data, cx->tok, eos, "verify statistics", ex, sample.ndocs,
                                  (size_t)vx->vs->stat_docs, vx->vs->seed, &vx->stats);
    free(ex);
    if (st == TP_OK && whole) {
        vx->stats = sample;
        vx->stats_source = "the run's data sample (it is the whole corpus)";
    } else {
        dataset_close(&sample);
        vx->stats_source = "held-out corpus documents (outside the run's data sample, drawn by verify.seed)";
    }
    if (st == TP_OK) st = forward_new(cx->m, vx->set->batch_size, vx->stats.seq_len, &vx->stats_fwd);
    return st;
}

static json_t *summary_json(const json_t *features, const json_t *heads, const json_t *circuits)
{
    json_int_t ft = 0, fv = 0, fd = 0, hv = 0, cv = 0;
    size_t i;
    json_t *v;
    json_array_foreach(features, i, v) {
        ft += json_integer_value(json_object_get(v, "tested"));
        fv += json_integer_value(json_object_get(v, "verified"));
        fd += json_integer_value(json_object_get(v, "described"));
    }
    json_array_foreach(heads, i, v) hv += json_is_true(json_object_get(v, "verified"));
    json_array_foreach(circuits, i, v) cv += json_is_true(json_object_get(v, "verified"));
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "features_tested", ft, "features_verified", fv,
                     "features_described", fd, "heads_tested", (json_int_t)json_array_size(heads), "heads_verified", hv,
                     "circuits_tested", (json_int_t)json_array_size(circuits), "circuits_verified", cv);
}

static const char *const DEFINITIONS[][2] = {
    {"estimate", "{mean, ci95_low, ci95_high, n}: the mean over n units (contexts, prompts or pairs) and its 95% "
                 "percentile bootstrap interval (verify.bootstrap resamples, seeded by verify.seed)"},
    {"features", "per SAE its top features by activation mass: zero ablation on top vs random contexts (delta_ce, kl), "
                 "steering x += alpha*W_dec[f] on random contexts (promoted tokens' delta_logprob), and a rule "
                 "(token, bigram or domain) fitted on training windows and scored on held-out ones (detection: window "
                 "accuracy/precision/recall/F1; simulation: Pearson r of predicted and true activations per token)"},
    {"heads", "each head of a class with a defining task ablated (verify.heads.mode) on repeated random-token "
              "sequences; effect = delta CE per prompt, baseline = the mean delta CE of the other heads of its layer "
              "without the class, verified when the interval of effect - baseline lies above 0"},
    {"circuits", "each library task: faithfulness = LD with every head outside the circuit ablated / mean clean LD; "
                 "completeness = 1 - LD with the circuit's heads ablated / mean clean LD; per head its share of LD "
                 "removed; for zero, mean and resample ablation"},
};

static json_t *definitions_json(void)
{
    json_t *d = json_object();
    for (size_t i = 0; i < sizeof DEFINITIONS / sizeof *DEFINITIONS; i++)
        json_object_set_new(d, DEFINITIONS[i][0], json_string(DEFINITIONS[i][1]));
    return d;
}

static tp_status write_result(verify_ctx *vx, json_t *features, json_t *heads, json_t *circuits)
{
    json_t *stats = json_pack("{s:s, s:I, s:I}", "source", vx->stats_source, "documents", (json_int_t)vx->stats.ndocs,
                              "sequences", (json_int_t)vx->stats.seqs.n_seqs);
    json_t *doc = json_pack("{s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:O, s:o, s:o}", "schema", "transpolmo.verification/1",
                            "model", circuits_model_json(vx->cx), "settings", verify_settings_json(vx->vs), "statistics",
                            stats, "features", json_incref(features), "heads", json_incref(heads), "circuits",
                            json_incref(circuits), "skipped", vx->skipped, "summary",
                            summary_json(features, heads, circuits), "definitions", definitions_json());
    if (!doc) return tp_err(TP_ERR_NOMEM, "verify: building %s failed", RUN_VERIFICATION_JSON);
    char path[TP_PATH_MAX];
    tp_status st = run_path(path, sizeof path, vx->run_dir, RUN_VERIFICATION_JSON);
    if (st == TP_OK) st = fs_mkdir_parent(path);
    if (st == TP_OK) st = fs_write_json(path, doc);
    if (st == TP_OK) tp_log_info("verify: wrote %s", path);
    json_decref(doc);
    return st;
}

tp_status verify_phase_run(const tp_config *cfg, const char *run_dir)
{
    tp_settings set;
    circuits_settings cs;
    verify_settings vs;
    circuits_ctx cx = {0};
    TP_CHECK(settings_read(cfg, &set));
    TP_CHECK(circuits_settings_read(cfg, &cs));
    TP_CHECK(verify_settings_read(cfg, &vs));
    verify_ctx vx = {.set = &set, .vs = &vs, .cx = &cx, .run_dir = run_dir, .skipped = json_array()};
    json_t *features = NULL, *heads = NULL, *circuits = NULL;
    tp_status st = circuits_open(&set, &cs, &cx);
    if (st == TP_OK) st = open_statistics(&vx);
    if (st == TP_OK && tp_config_bool(cfg, "sae.skip"))
        verify_skip(&vx, "features", "sae.skip is set (--skip-sae): the run has no SAE features to verify");
    else if (st == TP_OK)
        st = verify_features(&vx, &features);
    if (st == TP_OK) st = tp_fault("verify", "features");
    if (st == TP_OK) st = verify_heads(&vx, &heads);
    if (st == TP_OK) st = tp_fault("verify", "heads");
    if (st == TP_OK) st = verify_circuits(&vx, &circuits);
    if (st == TP_OK) st = tp_fault("verify", "circuits");
    if (st == TP_OK && dist_rank() == 0) {
        if (!features) features = json_array();
        st = write_result(&vx, features, heads ? heads : json_array(), circuits ? circuits : json_array());
    }
    st = dist_agree(MPI_COMM_WORLD, st, "verify (writing results)");
    json_decref(features), json_decref(heads), json_decref(circuits), json_decref(vx.skipped);
    forward_free(vx.stats_fwd);
    dataset_close(&vx.stats);
    iv_free(vx.head_stats);
    circuits_close(&cx);
    return st;
}

/* "features 5/16 verified, 9/16 described | heads 5/5 | circuits 1/3" */
static void verify_headline(const char *run_dir, char *buf, size_t n)
{
    json_t *j = run_load_json(run_dir, RUN_VERIFICATION_JSON), *s = json_object_get(j, "summary");
    if (!s) {
        json_decref(j);
        return;
    }
#define G(k) (long long)json_integer_value(json_object_get(s, k))
    snprintf(buf, n, "features %lld/%lld verified, %lld described | heads %lld/%lld verified | circuits %lld/%lld verified",
             G("features_verified"), G("features_tested"), G("features_described"), G("heads_verified"),
             G("heads_tested"), G("circuits_verified"), G("circuits_tested"));
#undef G
    json_decref(j);
}

static const char *const verify_outputs[] = {RUN_VERIFICATION_JSON, NULL};
static const char *const verify_reads[] = {"model.", "data.", "forward.gemm", "forward.bf16_compute", "circuits.", "sae.skip", NULL};
static const tp_phase *const verify_needs[] = {&sae_phase, &circuits_phase, NULL};

static const char *const verify_faults[] = {"features", "heads", "circuits", NULL};
const tp_phase verify_phase = {
    .name = "verify",
    .help = "phase 7: SAE features ablated, steered and described; head classes and library circuits ablated "
            "(faithfulness, completeness) -> results/verification.json",
    .run = verify_phase_run,
    .outputs = verify_outputs,
    .config = &verify_section,
    .reads = verify_reads,
    .needs = verify_needs,
    .headline = verify_headline,
    .faults = verify_faults,
};
