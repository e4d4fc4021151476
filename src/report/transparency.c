/* transparency.c — the transparency score's arithmetic (transparency.h). */
#include "report/transparency.h"

#include <math.h>

static double clip01(double x) { return isfinite(x) ? (x < 0 ? 0 : x > 1 ? 1 : x) : 0; }

double transparency_feature_energy(int64_t fires, double mean_activation)
{
    if (fires <= 0 || !isfinite(mean_activation)) return 0;
    return (double)fires * mean_activation * mean_activation;
}

double transparency_sae_verified_share(const transparency_sae *s)
{
    if (!(s->energy_live > 0)) return 0;
    return clip01(s->explained_variance) * clip01(s->energy_verified / s->energy_live);
}

int transparency_mlp_explained(const transparency_inputs *in, int layer)
{
    if (in->mlp_in_circuit && in->mlp_in_circuit[layer]) return 1;
    for (size_t i = 0; i < in->n_saes; i++) {
        const transparency_sae *s = &in->saes[i];
        if (s->layer == layer && s->mlp_point && s->energy_live > 0 &&
            s->energy_verified / s->energy_live >= TRANSPARENCY_MLP_FEATURE_BAR)
            return 1;
    }
    return 0;
}

double transparency_layer(const transparency_inputs *in, int layer, double *g, double *s, double *c)
{
    double gl = in->geometry_typed && in->geometry_typed[layer] ? 1 : 0, sl = 0;
    for (size_t i = 0; i < in->n_saes; i++)
        if (in->saes[i].layer == layer) sl = fmax(sl, transparency_sae_verified_share(&in->saes[i]));
    int64_t covered = 0;
    for (int h = 0; in->head_covered && h < in->n_heads; h++) covered += in->head_covered[layer * in->n_heads + h] != 0;
    double cl = (double)(covered + transparency_mlp_explained(in, layer)) / (double)(in->n_heads + 1);
    if (g) *g = gl;
    if (s) *s = sl;
    if (c) *c = cl;
    return (gl + sl + cl) / 3;
}

void transparency_compute(const transparency_inputs *in, transparency_result *out)
{
    *out = (transparency_result){0};
    double v = 0;
    int64_t live = 0, described = 0;
    for (size_t i = 0; i < in->n_saes; i++) {
        v += transparency_sae_verified_share(&in->saes[i]);
        live += in->saes[i].n_live;
        described += in->saes[i].n_described < in->saes[i].n_live ? in->saes[i].n_described : in->saes[i].n_live;
    }
    out->variance_explained = in->n_saes ? v / (double)in->n_saes : 0;
    out->described_fraction = live > 0 ? (double)described / (double)live : 0;
    out->feature_coverage = (out->variance_explained + out->described_fraction) / 2;

    int L = in->n_layers > 0 ? in->n_layers : 0, H = in->n_heads > 0 ? in->n_heads : 0;
    out->heads_total = (int64_t)L * H;
    for (int64_t i = 0; in->head_covered && i < out->heads_total; i++) out->heads_covered += in->head_covered[i] != 0;
    out->heads_fraction = out->heads_total ? (double)out->heads_covered / (double)out->heads_total : 0;
    out->mlp_total = L;
    for (int l = 0; l < L; l++) out->mlp_explained += transparency_mlp_explained(in, l);
    out->mlp_fraction = L ? (double)out->mlp_explained / L : 0;
    out->circuit_coverage = (out->heads_fraction + out->mlp_fraction) / 2;

    double u = 0;
    for (int l = 0; l < L; l++) u += transparency_layer(in, l, NULL, NULL, NULL);
    out->layer_understanding = L ? u / L : 0;
    out->score = (out->feature_coverage + out->circuit_coverage + out->layer_understanding) / 3;
}
