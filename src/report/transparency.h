/* transparency.h — the transparency score: how much of the model the run's verified
 * findings explain, as one number in [0, 1] and its profile (docs/transparency.md).
 *
 * Pure arithmetic on counts and shares that the document phase reads from the run's
 * results (doc_score.c gathers them); nothing here reads a file. Three dimensions,
 * each in [0, 1], weighted equally:
 *
 *   feature coverage    F = (V + D) / 2
 *     V = mean over SAEs s of  ev_s · E_s^verified / E_s^live       (residual variance
 *         explained by verified features; ev_s = held-out 1 − FVU clipped to [0, 1],
 *         E = Σ e_f, e_f = fires_f · mean_activation_f², transparency_feature_energy)
 *     D = Σ_s described_s / Σ_s live_s                              (live features whose
 *         description scores at least the bar)
 *   circuit coverage    C = (Hc + M) / 2
 *     Hc = heads in a verified class or a verified circuit / (L · H)
 *     M  = MLP layers explained / L: a node of a verified circuit, or read by an SAE
 *          (an MLP capture point of the layer) whose verified share
 *          E^verified / E^live ≥ TRANSPARENCY_MLP_FEATURE_BAR
 *   layer understanding U = mean over layers l of u_l = (g_l + s_l + c_l) / 3
 *     g_l = 1 when the geometry phase labelled a capture point of l
 *     s_l = the largest V-term (ev_s · E^verified / E^live) among the SAEs of layer l
 *     c_l = (heads of l counted in Hc + [MLP l explained]) / (H + 1)
 *   score S = (F + C + U) / 3
 *
 * An empty denominator (no SAEs, no live features, no layers) gives 0 for its term:
 * nothing measured is nothing explained.
 */
#ifndef TP_TRANSPARENCY_H
#define TP_TRANSPARENCY_H

#include <stddef.h>
#include <stdint.h>

#define TRANSPARENCY_MLP_FEATURE_BAR 0.5   /* verified share of an MLP SAE that explains its layer */
#define TRANSPARENCY_TARGET 0.8            /* the seed's target, reported beside the score */

/* One SAE's inputs. */
typedef struct {
    int layer;                 /* −1: a point of no layer */
    int mlp_point;             /* 1: it reads an MLP output of its layer (hook_mlp_out, mlp.*) */
    double explained_variance; /* held-out 1 − FVU; NaN when unknown (counts as 0) */
    double energy_live;        /* Σ e_f over live features */
    double energy_verified;    /* Σ e_f over verified features */
    int64_t n_live;            /* features that fired at least once */
    int64_t n_described;       /* live features whose description scores ≥ the bar */
} transparency_sae;

typedef struct {
    int n_layers, n_heads;
    const transparency_sae *saes;
    size_t n_saes;
    const uint8_t *head_covered;    /* [n_layers · n_heads], layer-major; NULL: none */
    const uint8_t *mlp_in_circuit;  /* [n_layers]; NULL: none */
    const uint8_t *geometry_typed;  /* [n_layers]; NULL: none */
} transparency_inputs;

typedef struct {
    double variance_explained;     /* V */
    double described_fraction;     /* D */
    double feature_coverage;       /* F */
    int64_t heads_covered, heads_total;
    double heads_fraction;         /* Hc */
    int mlp_explained, mlp_total;
    double mlp_fraction;           /* M */
    double circuit_coverage;       /* C */
    double layer_understanding;    /* U */
    double score;                  /* S */
} transparency_result;

/* e_f = fires · mean², Σ over the feature's firing rows of a², the energy the
 * feature adds to a reconstruction with unit-norm decoder rows, when its activation is
 * constant (by Jensen the true Σ a² is at least this). 0 for a dead feature or a
 * non-finite mean. */
double transparency_feature_energy(int64_t fires, double mean_activation);

/* V's term of one SAE: clip(ev) · E^verified / E^live (0 when E^live is 0). */
double transparency_sae_verified_share(const transparency_sae *s);

/* Layer l's u_l, and the layer's three parts when the pointers are not NULL. */
double transparency_layer(const transparency_inputs *in, int layer, double *g, double *s, double *c);

/* Whether MLP l counts as explained (in a circuit, or by its SAE's verified share). */
int transparency_mlp_explained(const transparency_inputs *in, int layer);

/* The whole score. */
void transparency_compute(const transparency_inputs *in, transparency_result *out);

#endif
