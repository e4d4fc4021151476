/* heads.c — head scores over prompts split across the ranks (heads.h). */
#include "analysis/circuits/heads.h"

#include "analysis/circuits/head_scores.h"
#include "core/log.h"
#include "core/progress.h"
#include "dist/mpi_check.h"
#include "dist/world.h"
#include "model/forward.h"
#include "model/hooks.h"
#include "run_layout.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

size_t hr_null(const head_records *r, int c, int l, int h)
{
    return (size_t)HS_SCORES * r->L * r->H + ((size_t)c * r->L + (size_t)l) * r->H + (size_t)h;
}

size_t hr_stripe(const head_records *r, int l, int h)
{
    return (size_t)(HS_SCORES + HS_CLASSES) * r->L * r->H + (size_t)l * r->H + (size_t)h;
}

size_t hr_example(const head_records *r, int c, int l, int h, int s)
{
    size_t base = (size_t)(HS_SCORES + HS_CLASSES + 1) * r->L * r->H;
    return base + ((((size_t)c * r->L + (size_t)l) * r->H + (size_t)h) * (size_t)r->k + (size_t)s) * 4;
}

tp_status heads_prompts(const circuits_ctx *cx, const char *file, prompt_set *ps)
{
    const circuits_settings *cs = cx->cs;
    memset(ps, 0, sizeof *ps);
    const char *path = file ? file : cs->prompts;
    if (!path[0] && cs->corpus_docs == 0 && cs->synthetic == 0)
        return tp_err(TP_ERR_CONFIG, "circuits heads: no prompts: circuits.heads.prompts is empty and "
                      "circuits.heads.corpus_docs and circuits.heads.synthetic are 0");
    prompt_limits lim = circuits_limits(cx, 2);
    tp_status st = TP_OK;
    if (path[0]) st = prompts_add_file(ps, cx->tok, path, &lim);
    else if (cs->corpus_docs > 0)
        st = prompts_add_heldout(ps, cx->tok, &cx->set->data, cx->m->cfg.eos_token_id, cs->corpus_docs, cs->seed,
                                 &lim);
    if (st == TP_OK && cs->synthetic > 0) {
        if (cx->bos < 0) st = tp_err(TP_ERR_CONFIG, "circuits heads: the model has neither a bos_token_id nor an "
                                     "eos_token_id to start the synthetic prompts with; set circuits.heads.synthetic=0");
        lim.bos = cx->bos;
        if (st == TP_OK)
            st = prompts_add_synthetic(ps, cx->tok, (int)cs->synthetic, (int)cs->synthetic_len, cx->m->cfg.vocab_size,
                                       cs->seed, &lim);
    }
    if (st == TP_OK && ps->n == 0) st = tp_err(TP_ERR_CONFIG, "circuits heads: no prompts: no held-out "
                                                  "document, no synthetic prompt, or none of the 2 tokens a score needs");
    if (st != TP_OK) prompt_set_free(ps);
    return st;
}

/* What the pattern callback needs for the prompt being run. */
typedef struct {
    const circuits_settings *cs;
    const head_records *r;
    const circuit_prompt *p;
    int index;              /* the prompt's index in the set */
    uint8_t *D;             /* [HS_CLASSES][T][T] detection patterns */
    float *shuffled;        /* [T][T] */
    double *rec;            /* this prompt's record */
    hs_example *ex;         /* [k] */
} heads_work;

/* One head of one prompt: scores, examples, stripe, null baselines. */
static void score_head(heads_work *w, int l, int h, const float *A, int T)
{
    const head_records *r = w->r;
    size_t TT = (size_t)T * (size_t)T;
    for (int c = 0; c < HS_CLASSES; c++) {
        w->rec[hr_score(r, c, l, h)] = hs_score(A, w->D + c * TT, T);
        hs_top_examples(A, w->D + c * TT, T, r->k, w->index, w->ex);
        for (int s = 0; s < r->k; s++) {
            double *e = w->rec + hr_example(r, c, l, h, s);
            e[0] = w->ex[s].weight, e[1] = w->ex[s].prompt, e[2] = w->ex[s].query, e[3] = w->ex[s].source;
        }
    }
    w->rec[hr_score(r, HS_ENTROPY, l, h)] = hs_entropy(A, T);
    w->rec[hr_stripe(r, l, h)] = w->p->synthetic_len ? hs_induction_stripe(A, T, w->p->synthetic_len) : NAN;
    int ns = (int)w->cs->null_shuffles;
    for (int c = 0; c < HS_CLASSES; c++) w->rec[hr_null(r, c, l, h)] = 0;
    for (int s = 0; s < ns; s++) {
        hs_shuffle_causal(A, T, hs_seed(w->cs->seed, (uint64_t)w->index, (uint64_t)l, (uint64_t)h, (uint64_t)s),
                          w->shuffled);
        for (int c = 0; c < HS_CLASSES; c++) w->rec[hr_null(r, c, l, h)] += hs_score(w->shuffled, w->D + c * TT, T) / ns;
    }
}

static tp_status on_pattern(const tp_hook_info *info, float *data, void *user)
{
    heads_work *w = user;
    int H = (int)info->shape[1], T = (int)info->shape[2];
    if (H != w->r->H || T != w->p->n)
        return tp_err(TP_ERR_INTERNAL, "circuits heads: pattern [%d, %d] of %s, expected [%d, %d]", H, T, info->name,
                      w->r->H, w->p->n);
    for (int h = 0; h < H; h++) score_head(w, info->layer, h, data + (size_t)h * T * T, T);
    return TP_OK;
}

/* This rank's prompts, one forward each, records into mine[(i - lo) * rec]. */
static tp_status run_share(const circuits_ctx *cx, const prompt_set *ps, const head_records *r, int lo, int hi,
                           double *mine)
{
    size_t TT = (size_t)ps->max_len * (size_t)ps->max_len;
    heads_work w = {.cs = cx->cs, .r = r};
    w.D = tp_malloc((size_t)HS_CLASSES * TT);
    w.shuffled = tp_malloc(TT * sizeof *w.shuffled);
    w.ex = tp_malloc((size_t)(r->k ? r->k : 1) * sizeof *w.ex);
    tp_hooks *hooks = NULL;
    tp_forward *f = NULL;
    tp_status st = w.D && w.shuffled && w.ex ? hooks_new(r->L, &hooks) : TP_ERR_NOMEM;
    for (int l = 0; st == TP_OK && l < r->L; l++) st = hooks_add_reader(hooks, l, TP_HOOK_PATTERN, on_pattern, &w);
    if (st == TP_OK && hi > lo) st = forward_new(cx->m, 1, ps->max_len, &f);
    tp_progress prog;
    tp_progress_begin(&prog, "circuits heads", "prompts", (uint64_t)(hi - lo));
    for (int i = lo; st == TP_OK && i < hi; i++) {
        const circuit_prompt *p = &ps->p[i];
        w.p = p, w.index = i, w.rec = mine + (size_t)(i - lo) * r->rec;
        for (int c = 0; c < HS_CLASSES; c++)
            hs_detection_pattern(c, p->ids, p->n, (int)cx->cs->local_window, w.D + (size_t)c * p->n * p->n);
        st = forward_run(f, p->ids, 1, p->n, hooks, TP_LOGITS_NONE, -1, NULL);
        tp_progress_add(&prog, 1);
    }
    if (st == TP_OK) tp_progress_end(&prog);
    forward_free(f);
    hooks_free(hooks);
    free(w.D), free(w.shuffled), free(w.ex);
    return st;
}

tp_status heads_collect(const circuits_ctx *cx, const prompt_set *ps, head_records *r)
{
    int rank = dist_rank(), size = dist_size(), lo, hi;
    const tp_model_config *c = &cx->m->cfg;
    memset(r, 0, sizeof *r);
    r->L = c->num_layers, r->H = c->num_heads, r->k = (int)cx->cs->examples, r->nprompts = ps->n;
    r->rec = hr_example(r, HS_CLASSES, 0, 0, 0);
    if ((size_t)ps->n * r->rec > (size_t)INT32_MAX)
        return tp_err(TP_ERR_RANGE, "circuits heads: %d prompts x %zu values exceed one gather (fewer prompts or "
                      "circuits.heads.examples)", ps->n, r->rec);
    circuits_rank_share(ps->n, rank, size, &lo, &hi);
    double *mine = tp_malloc((size_t)(hi - lo > 0 ? hi - lo : 1) * r->rec * sizeof *mine);
    int *counts = rank == 0 ? tp_calloc((size_t)size, sizeof *counts) : NULL;
    int *displs = rank == 0 ? tp_calloc((size_t)size, sizeof *displs) : NULL;
    if (rank == 0) r->all = tp_malloc((size_t)ps->n * r->rec * sizeof *r->all);
    tp_status st = mine && (rank != 0 || (counts && displs && r->all)) ? TP_OK : TP_ERR_NOMEM;
    st = dist_agree(MPI_COMM_WORLD, st, "circuits heads");
    if (st == TP_OK) st = dist_agree(MPI_COMM_WORLD, run_share(cx, ps, r, lo, hi, mine), "circuits heads");
    if (st == TP_OK && rank == 0)
        for (int q = 0; q < size; q++) {
            int a, b;
            circuits_rank_share(ps->n, q, size, &a, &b);
            counts[q] = (int)((size_t)(b - a) * r->rec), displs[q] = (int)((size_t)a * r->rec);
        }
    if (st == TP_OK)
        MPI_CHECK_GOTO(MPI_Gatherv(mine, (int)((size_t)(hi - lo) * r->rec), MPI_DOUBLE, r->all, counts, displs,
                                   MPI_DOUBLE, 0, MPI_COMM_WORLD), st, done);
done:
    free(mine), free(counts), free(displs);
    if (st != TP_OK) head_records_free(r);
    return st;
}

void head_records_free(head_records *r)
{
    free(r->all);
    r->all = NULL;
}

tp_status heads_run(const circuits_ctx *cx, const char *file, const char *run_dir)
{
    prompt_set ps;
    head_records r = {0};
    json_t *doc = NULL;
    TP_CHECK(dist_agree(MPI_COMM_WORLD, heads_prompts(cx, file, &ps), "circuits heads"));
    tp_log_info("circuits heads: %d prompt(s) (longest %d tokens) over %d rank(s)", ps.n, ps.max_len, dist_size());
    tp_status st = heads_collect(cx, &ps, &r);
    if (st == TP_OK) {
        /* rank 0 writes; the others wait for its verdict */
        tp_status mine = TP_OK;
        if (dist_rank() == 0) mine = heads_report(cx, &ps, &r, &doc);
        if (dist_rank() == 0 && mine == TP_OK) mine = circuits_write_json(run_dir, RUN_CIRCUITS_HEAD_SCORES_JSON, doc);
        st = dist_agree(MPI_COMM_WORLD, mine, "circuits heads (writing results)");
    }
    json_decref(doc);
    head_records_free(&r);
    prompt_set_free(&ps);
    return st;
}
