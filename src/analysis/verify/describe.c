/* describe.c — rules that predict where a feature fires, and their scores (describe.h). */
#include "analysis/verify/describe.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *desc_kind_name(desc_kind k)
{
    static const char *names[] = {"token", "bigram", "domain"};
    return (unsigned)k < DESC_NKINDS ? names[k] : "?";
}

int64_t desc_key(desc_kind k, const desc_window *w, int t)
{
    switch (k) {
    case DESC_TOKEN: return w->tokens[t];
    case DESC_BIGRAM: {
        int32_t a = t > 0 ? w->tokens[t - 1] : w->prev;
        return (int64_t)((uint64_t)(uint32_t)a << 32 | (uint32_t)w->tokens[t]);
    }
    default: return w->domain;
    }
}

void desc_bigram_tokens(int64_t key, int32_t *first, int32_t *second)
{
    *first = (int32_t)(uint32_t)((uint64_t)key >> 32);
    *second = (int32_t)(uint32_t)((uint64_t)key & 0xffffffffu);
}

static int cmp_entry(const void *a, const void *b)
{
    int64_t x = ((const desc_entry *)a)->key, y = ((const desc_entry *)b)->key;
    return (x > y) - (x < y);
}

tp_status desc_fit(const desc_window *w, int nw, desc_kind kind, double min_precision, desc_rule *out)
{
    memset(out, 0, sizeof *out);
    out->kind = kind;
    out->min_precision = min_precision;
    size_t total = 0;
    for (int i = 0; i < nw; i++) total += (size_t)w[i].n;
    desc_entry *all = tp_malloc((total + 1) * sizeof *all);
    if (!all) return TP_ERR_NOMEM;
    size_t k = 0;
    for (int i = 0; i < nw; i++)
        for (int t = 0; t < w[i].n; t++) {
            double a = w[i].acts[t];
            all[k++] = (desc_entry){.key = desc_key(kind, &w[i], t), .count = 1, .fires = a > 0, .mass = a};
        }
    /* sort by key, then merge runs in order (a stable sum: the same rule everywhere) */
    qsort(all, total, sizeof *all, cmp_entry);
    size_t m = 0;
    for (size_t i = 0; i < total;) {
        desc_entry e = {.key = all[i].key};
        for (; i < total && all[i].key == e.key; i++) e.count++, e.fires += all[i].fires, e.mass += all[i].mass;
        if (e.fires >= 1 && (double)e.fires >= min_precision * (double)e.count) {
            e.pred = e.mass / (double)e.count;
            all[m++] = e;
        }
    }
    out->e = all;
    out->n = (int)m;
    return TP_OK;
}

void desc_rule_free(desc_rule *r)
{
    if (!r) return;
    free(r->e);
    r->e = NULL;
    r->n = 0;
}

const desc_entry *desc_lookup(const desc_rule *r, const desc_window *w, int t)
{
    desc_entry probe = {.key = desc_key(r->kind, w, t)};
    return r->n ? bsearch(&probe, r->e, (size_t)r->n, sizeof *r->e, cmp_entry) : NULL;
}

static const desc_rule *order_rule;
static int cmp_mass(const void *a, const void *b)
{
    const desc_entry *x = &order_rule->e[*(const int *)a], *y = &order_rule->e[*(const int *)b];
    if (x->mass != y->mass) return x->mass > y->mass ? -1 : 1;
    return (x->key > y->key) - (x->key < y->key);
}

void desc_rule_order(const desc_rule *r, int *order)
{
    for (int i = 0; i < r->n; i++) order[i] = i;
    order_rule = r;
    qsort(order, (size_t)r->n, sizeof *order, cmp_mass);
}

static double ratio0(double a, double b) { return b > 0 ? a / b : 0.0; }

void desc_binary_scores(const uint8_t *pred, const uint8_t *truth, int64_t n, desc_detection *out)
{
    memset(out, 0, sizeof *out);
    out->n = n;
    for (int64_t i = 0; i < n; i++) {
        if (pred[i] && truth[i]) out->tp++;
        else if (pred[i]) out->fp++;
        else if (truth[i]) out->fn++;
        else out->tn++;
    }
    out->accuracy = ratio0((double)(out->tp + out->tn), (double)n);
    out->precision = ratio0((double)out->tp, (double)(out->tp + out->fp));
    out->recall = ratio0((double)out->tp, (double)(out->tp + out->fn));
    out->f1 = ratio0(2 * out->precision * out->recall, out->precision + out->recall);
}

double desc_pearson(const double *x, const double *y, int64_t n)
{
    if (n < 2) return NAN;
    double mx = 0, my = 0;
    for (int64_t i = 0; i < n; i++) mx += x[i], my += y[i];
    mx /= (double)n, my /= (double)n;
    double sxy = 0, sxx = 0, syy = 0;
    for (int64_t i = 0; i < n; i++) {
        double dx = x[i] - mx, dy = y[i] - my;
        sxy += dx * dy, sxx += dx * dx, syy += dy * dy;
    }
    if (!(sxx > 0) || !(syy > 0)) return NAN;
    return sxy / sqrt(sxx * syy);
}

tp_status desc_detect(const desc_rule *r, const desc_window *w, int nw, desc_detection *out)
{
    uint8_t *pred = tp_malloc((size_t)nw + 1), *truth = tp_malloc((size_t)nw + 1);
    if (!pred || !truth) {
        free(pred), free(truth);
        return TP_ERR_NOMEM;
    }
    for (int i = 0; i < nw; i++) {
        pred[i] = truth[i] = 0;
        for (int t = 0; t < w[i].n; t++) {
            if (w[i].acts[t] > 0) truth[i] = 1;
            if (!pred[i] && desc_lookup(r, &w[i], t)) pred[i] = 1;
        }
    }
    desc_binary_scores(pred, truth, nw, out);
    free(pred), free(truth);
    return TP_OK;
}

tp_status desc_simulate(const desc_rule *r, const desc_window *w, int nw, desc_simulation *out)
{
    size_t total = 0;
    for (int i = 0; i < nw; i++) total += (size_t)w[i].n;
    double *p = tp_malloc((total + 1) * sizeof *p), *a = tp_malloc((total + 1) * sizeof *a);
    if (!p || !a) {
        free(p), free(a);
        return TP_ERR_NOMEM;
    }
    size_t k = 0;
    for (int i = 0; i < nw; i++)
        for (int t = 0; t < w[i].n; t++, k++) {
            const desc_entry *e = desc_lookup(r, &w[i], t);
            p[k] = e ? e->pred : 0.0;
            a[k] = w[i].acts[t];
        }
    out->n = (int64_t)total;
    out->correlation = desc_pearson(p, a, (int64_t)total);
    free(p), free(a);
    return TP_OK;
}

tp_status desc_choose(const desc_window *train, int ntrain, double min_precision, desc_rule *out)
{
    memset(out, 0, sizeof *out);
    double best = -1;
    for (int k = 0; k < DESC_NKINDS; k++) {
        desc_rule r;
        desc_detection d;
        TP_CHECK(desc_fit(train, ntrain, (desc_kind)k, min_precision, &r));
        tp_status st = desc_detect(&r, train, ntrain, &d);
        if (st != TP_OK) {
            desc_rule_free(&r);
            desc_rule_free(out);
            return st;
        }
        if (d.f1 > best) {
            desc_rule_free(out);
            *out = r;
            best = d.f1;
        } else {
            desc_rule_free(&r);
        }
    }
    return TP_OK;
}
