/* discover_run.c — `circuits discover`: target, resampled corruption, discover.h, and
 * the files (discover_run.h). */
#include "analysis/circuits/discover_run.h"

#include "analysis/circuits/attribute.h"
#include "analysis/circuits/discover.h"
#include "core/fsutil.h"
#include "core/sample.h"
#include "dist/world.h"
#include "model/forward.h"
#include "run_layout.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

tp_status discover_top_token(const tp_model *m, const int32_t *ids, int T, int32_t *top)
{
    tp_forward *f = NULL;
    const float *logits = NULL;
    TP_CHECK(forward_new(m, 1, T, &f));
    tp_status st = forward_run(f, ids, 1, T, NULL, TP_LOGITS_LAST, -1, &logits);
    if (st == TP_OK) {
        int32_t best = 0;
        for (int32_t v = 1; v < m->cfg.vocab_size; v++)
            if (logits[v] > logits[best]) best = v;
        *top = best;
    }
    forward_free(f);
    return st;
}

/* The corruption chosen: resampled ids and where they came from, or node means. */
typedef struct {
    int mean;                /* 1: mean ablation */
    char chosen_by[200];
    int32_t *ids;            /* resample */
    char source[160];
    int offset, tries, candidates, found;
    int32_t top;
    double *node_mean;       /* mean: [n_up][d] */
    int docs;
    long rows;
} corruption;

/* Windows (doc, offset) of the held-out documents, seeded order; the first whose top
 * next token differs from clean_top. */
static tp_status pick_window(const circuits_ctx *cx, const prompt_set *ps, const int32_t *clean, int T, int b,
                             int32_t clean_top, corruption *pk)
{
    const circuits_settings *cs = cx->cs;
    int n = 0, step = T - b, cap = 0;
    for (int i = 0; i < ps->n; i++) cap += ps->p[i].n >= T ? (ps->p[i].n - b) / step : 0;
    int *cand = malloc((size_t)(cap ? cap : 1) * 2 * sizeof *cand);
    if (!cand || !(pk->ids = malloc((size_t)T * sizeof *pk->ids))) { free(cand); return TP_ERR_NOMEM; }
    for (int i = 0; i < ps->n; i++)
        for (int o = 0; b + o + step <= ps->p[i].n; o += step) cand[2 * n] = i, cand[2 * n + 1] = o, n++;
    uint64_t rng = cs->seed ^ 0x646973636f766572ULL;   /* "discover" */
    for (int i = n - 1; i > 0; i--) {   /* Fisher–Yates */
        int j = (int)tp_rng_below(&rng, (uint64_t)i + 1), t0 = cand[2 * i], t1 = cand[2 * i + 1];
        cand[2 * i] = cand[2 * j], cand[2 * i + 1] = cand[2 * j + 1], cand[2 * j] = t0, cand[2 * j + 1] = t1;
    }
    pk->candidates = n;
    tp_status st = TP_OK;
    int found = 0;
    for (int k = 0; st == TP_OK && !found && k < n && k < cs->discover_tries; k++) {
        const circuit_prompt *p = &ps->p[cand[2 * k]];
        memcpy(pk->ids, clean, (size_t)b * sizeof *pk->ids);
        memcpy(pk->ids + b, p->ids + b + cand[2 * k + 1], (size_t)step * sizeof *pk->ids);
        st = discover_top_token(cx->m, pk->ids, T, &pk->top);
        pk->tries = k + 1;
        if (st == TP_OK && pk->top != clean_top) {
            found = 1, pk->offset = cand[2 * k + 1];
            snprintf(pk->source, sizeof pk->source, "%s", p->source);
        }
    }
    free(cand);
    pk->found = found;
    return st;
}

/* The resampled corrupted prompt of rq's length. */
static tp_status resample(const circuits_ctx *cx, const discover_request *rq, int32_t clean_top, corruption *pk)
{
    prompt_limits lim = circuits_limits(cx, 1);
    prompt_set ps = {0};
    int b = lim.bos >= 0 ? 1 : 0;
    if (rq->T <= b) return tp_err(TP_ERR_CONFIG, "circuits discover: --prompt has no token after the BOS");
    tp_status st = prompts_add_heldout(&ps, cx->tok, &cx->set->data, cx->m->cfg.eos_token_id,
                                       cx->cs->discover_docs, cx->cs->seed, &lim);
    if (st == TP_OK) st = pick_window(cx, &ps, rq->ids, rq->T, b, clean_top, pk);
    if (st == TP_OK && !pk->found) free(pk->ids), pk->ids = NULL;
    prompt_set_free(&ps);
    return st;
}

/* Every node's output (eap.h's a_u) averaged over every position but the first of the
 * held-out documents (the rows the activation store keeps). */
static tp_status node_means(const circuits_ctx *cx, corruption *pk)
{
    prompt_limits lim = circuits_limits(cx, 2);
    prompt_set ps = {0};
    eap_graph g = eap_graph_of(&cx->m->cfg);
    size_t d = (size_t)cx->m->cfg.hidden_size;
    eap_engine *e = NULL;
    double *acts = NULL, m;
    tp_status st = prompts_add_heldout(&ps, cx->tok, &cx->set->data, cx->m->cfg.eos_token_id, cx->cs->discover_docs,
                                       cx->cs->seed, &lim);
    if (st == TP_OK && ps.n == 0) st = tp_err(TP_ERR_CONFIG, "circuits discover: --corruption mean: no held-out "
                                               "corpus document (data.*) to take the means from");
    if (st == TP_OK) st = eap_engine_new(cx->m, ps.max_len, &e);
    if (st == TP_OK && (!(acts = malloc((size_t)g.n_up * ps.max_len * d * sizeof *acts)) ||
                        !(pk->node_mean = calloc((size_t)g.n_up * d, sizeof(double)))))
        st = TP_ERR_NOMEM;
    for (int i = 0; st == TP_OK && i < ps.n; i++) {
        int T = ps.p[i].n;
        st = eap_node_outputs(e, ps.p[i].ids, T, 0, -1, acts, &m);
        for (int u = 0; st == TP_OK && u < g.n_up; u++)
            for (int t = 1; t < T; t++)
                for (size_t k = 0; k < d; k++) pk->node_mean[u * d + k] += acts[((size_t)u * T + t) * d + k];
        pk->rows += T - 1;
    }
    for (size_t k = 0; st == TP_OK && k < (size_t)g.n_up * d; k++) pk->node_mean[k] /= (double)pk->rows;
    pk->docs = ps.n;
    free(acts);
    eap_engine_free(e);
    prompt_set_free(&ps);
    return st;
}

/* --corruption as given; by default resample, and mean when no corpus window has a
 * top next token other than the prompt's. */
static tp_status choose_corruption(const circuits_ctx *cx, const discover_request *rq, int32_t clean_top,
                                   corruption *pk)
{
    if (!rq->corruption || !strcmp(rq->corruption, "resample")) {
        TP_CHECK(resample(cx, rq, clean_top, pk));
        snprintf(pk->chosen_by, sizeof pk->chosen_by, "%s", rq->corruption ? "--corruption resample"
                                                                             : "default (resample)");
        if (pk->found) return TP_OK;
        if (rq->corruption)
            return tp_err(TP_ERR_CONFIG, "circuits discover: none of the %d corpus windows of %d tokens tried (of %d) "
                          "has a top next token other than the prompt's; raise circuits.discover.corpus_docs or "
                          "data.seq_len, or use --corruption mean", pk->tries, rq->T, pk->candidates);
        snprintf(pk->chosen_by, sizeof pk->chosen_by, "default: resample found no corpus window (of %d tried) with "
                 "another top next token, so mean", pk->tries);
    } else snprintf(pk->chosen_by, sizeof pk->chosen_by, "--corruption mean");
    pk->mean = 1;
    return node_means(cx, pk);
}

static json_t *token_json(const circuits_ctx *cx, int32_t id, const char *source)
{
    if (id < 0) return json_null();
    return json_pack("{s:i, s:o, s:s}", "id", id, "text", circuits_text_json(cx, &id, 1), "source", source);
}

static json_t *meta_json(const circuits_ctx *cx, const discover_request *rq, const corruption *pk, int32_t target,
                         const dc_result *r)
{
    json_t *prompts = json_pack("{s:{s:s, s:i, s:o}, s:o}", "clean", "text", rq->prompt, "tokens", rq->T, "ids",
        circuits_tokens_json(cx, rq->ids, rq->T), "corrupt", pk->mean ? json_null() : json_pack("{s:o, s:i, s:o}",
        "text", circuits_text_json(cx, pk->ids, rq->T), "tokens", rq->T, "ids", circuits_tokens_json(cx, pk->ids,
        rq->T)));
    json_t *corr = pk->mean
        ? json_pack("{s:s, s:s, s:s, s:i, s:I}", "mode", "mean", "chosen_by", pk->chosen_by, "means",
                    "each node's output (eap.h's a_u, residual space) averaged over every position but the first of "
                    "held-out corpus documents; LD_corr = the clean run with every node at its mean; EAP with g_v on "
                    "the clean run; verification = LD_clean - m(the node alone at its mean)", "documents", pk->docs,
                    "rows", (json_int_t)pk->rows)
        : json_pack("{s:s, s:s, s:s, s:i, s:i, s:i, s:i}", "mode", "resample", "chosen_by", pk->chosen_by, "document",
                    pk->source, "offset", pk->offset, "tries", pk->tries, "candidates", pk->candidates,
                    "corrupt_top_token", pk->top);
    return json_pack("{s:o, s:o, s:s, s:s, s:o, s:o, s:o, s:o, s:{s:o, s:o, s:o}, s:o, s:o, s:o}", "model",
        circuits_model_json(cx), "settings", circuits_settings_json(cx->cs), "id", rq->id, "method",
        "EAP (Syed et al. 2023) ranks edges; faithfulness by exact node patching; top nodes verified by exact patching",
        "corruption", corr, "prompts", prompts, "target",
        token_json(cx, target, rq->target_text ? "--target" : "the model's top next token on the clean prompt"),
        "distractor", token_json(cx, rq->distractor, "--distractor"), "metric", "ld_clean", circuits_num(r->ld_clean),
        "ld_corr", circuits_num(r->ld_corr), "ld_clean_minus_corr", circuits_num(r->ld_clean - r->ld_corr),
        "faithfulness", dc_curve_json(r), "verification", dc_verify_json(r), "definitions",
        attribute_definitions_json(0));
}

tp_status discover_features(const circuits_ctx *cx, const char *run_dir, const dc_pair *pairs, int n, double denom,
                            eap_sae_set *saes, eap_feat_scores *fs, json_t **json)
{
    memset(saes, 0, sizeof *saes), memset(fs, 0, sizeof *fs);
    *json = json_null();
    if (cx->cs->sae_features <= 0) return TP_OK;
    TP_CHECK(eap_sae_set_open(run_dir, &cx->m->cfg, saes));
    if (saes->n == 0) return TP_OK;
    TP_CHECK(dc_features(cx->m, pairs, n, saes, cx->cs->sae_features, fs));
    json_decref(*json);
    *json = eap_feat_json(fs, 1.0, denom);
    json_object_set_new(*json, "per_point", json_integer(cx->cs->sae_features));
    json_object_set_new(*json, "definitions", attribute_features_definitions_json());
    json_object_set_new(*json, "in_graph", json_string("each kept feature with its edges to and from the circuit's "
                                                       "nodes that are at least as strong (|score|) as the circuit's "
                                                       "weakest edge; a feature without one is left out (the "
                                                       "faithfulness curve is over the components alone)"));
    return TP_OK;
}

static tp_status discover_rank0(const circuits_ctx *cx, const discover_request *rq, const char *run_dir)
{
    int32_t clean_top = -1, target = rq->target;
    corruption pk = {0};
    dc_result r = {0};
    cg_graph *cg = NULL;
    json_t *meta = NULL, *features = NULL;
    eap_sae_set saes = {0};
    eap_feat_scores fs = {0};
    char dir[TP_PATH_MAX];
    tp_status st = discover_top_token(cx->m, rq->ids, rq->T, &clean_top);
    if (st == TP_OK && !rq->target_text) target = clean_top;
    if (st == TP_OK && target == rq->distractor)
        st = tp_err(TP_ERR_CONFIG, "circuits discover: the target (id %d) and --distractor are the same token", target);
    if (st == TP_OK) st = choose_corruption(cx, rq, clean_top, &pk);
    if (st == TP_OK) {
        dc_pair p = {.clean = rq->ids, .corrupt = pk.mean ? NULL : pk.ids, .T = rq->T, .target = target,
                     .distractor = rq->distractor, .mean = pk.node_mean};
        st = dc_run(cx->m, &p, 1, cx->cs->faithfulness, &r);
        if (st == TP_OK) st = discover_features(cx, run_dir, &p, 1, r.ld_clean - r.ld_corr, &saes, &fs, &features);
    }
    if (st == TP_OK && !(meta = meta_json(cx, rq, &pk, target, &r))) st = tp_err(TP_ERR_NOMEM, "circuits discover");
    if (st == TP_OK) json_object_set(meta, "features", features);
    if (st == TP_OK) st = run_path(dir, sizeof dir, run_dir, RUN_CIRCUITS_DIR);
    if (st == TP_OK) st = dc_graph(&r, fs.n ? &fs : NULL, &cg);
    if (st == TP_OK) st = cg_write(cg, meta, dir, rq->id);
    cg_free(cg);
    json_decref(meta), json_decref(features);
    eap_feat_scores_free(&fs);
    eap_sae_set_free(&saes);
    dc_result_free(&r);
    free(pk.ids), free(pk.node_mean);
    return st;
}

tp_status discover_run(const circuits_ctx *cx, const discover_request *rq, const char *run_dir)
{
    tp_status st = dist_rank() == 0 ? discover_rank0(cx, rq, run_dir) : TP_OK;
    return dist_agree(MPI_COMM_WORLD, st, "circuits discover");
}
