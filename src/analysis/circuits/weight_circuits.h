/* weight_circuits.h — circuits read from the weights alone (docs/circuits.md).
 *
 * Per head, in TransformerLens's row-vector convention (x @ W): W_Q, W_K, W_V
 * [d_model, d_head], W_O [d_head, d_model]; QK = W_Q W_Kᵀ, OV = W_V W_O. Query head
 * h reads kv head h / (H/K) (GQA: W_K, W_V shared within a group).
 *
 * Norms are folded where they are linear and their RMS scale is ignored, as
 * TransformerLens's fold_ln does:
 *   OLMo-2  q_norm / k_norm (RMSNorm over the whole q / k projection): the weight
 *           multiplies W_Q / W_K's columns; post_attention_layernorm (applied to
 *           the sum of the heads' outputs): its weight multiplies W_O's columns;
 *           no input norms. The final norm's weight multiplies W_U's rows.
 *   Llama   input_layernorm's weight multiplies W_Q, W_K, W_V's rows; the final
 *           norm's weight multiplies W_U's rows.
 * RoPE is left out (QK is the circuit at relative position 0), as in
 * TransformerLens's QK.
 *
 * Composition (TransformerLens all_composition_scores, Elhage et al. 2021): for
 * heads (l1, h1) and (l2, h2) with l1 < l2, with L = OV(l1, h1),
 *   Q: R = QK(l2, h2)   K: R = QK(l2, h2)ᵀ   V: R = OV(l2, h2)
 *   score = ‖L R‖_F / (‖L‖_F ‖R‖_F); 0 where l1 >= l2 (TL's mask).
 * Computed with d_head x d_head products: ‖X M Yᵀ‖_F² = tr(Mᵀ (XᵀX) M (YᵀY)).
 *
 * OV copying score (Elhage et al. 2021): Σλ / Σ|λ| over the eigenvalues of the
 * full OV circuit W_E OV W_U [vocab, vocab]. Its nonzero eigenvalues are those of
 * W_O (W_U W_E) W_V [d_head, d_head] (eig(AB) \ {0} = eig(BA) \ {0}), computed
 * with LAPACK dgeev.
 *
 * Baselines: the same scores of independent standard Gaussian matrices of the
 * same shapes (the scores do not depend on the scale), `samples` draws by `seed`.
 */
#ifndef TP_WEIGHT_CIRCUITS_H
#define TP_WEIGHT_CIRCUITS_H

#include "core/error.h"
#include "model/model.h"

#include <stdint.h>

/* The folded matrices of every head, f64, row-major. */
typedef struct {
    int L, H, K, d, dh;
    double *Q;      /* [L][H][d][dh] */
    double *Kw;     /* [L][K][d][dh] */
    double *Vw;     /* [L][K][d][dh] */
    double *O;      /* [L][H][dh][d] */
} wc_heads;

tp_status wc_fold(const tp_model *m, wc_heads *out);
void wc_heads_free(wc_heads *w);
static inline int wc_kv_of(const wc_heads *w, int h) { return h / (w->H / w->K); }

/* Scores [L][H][L][H] of each mode (Q, K, V composition): NULL to skip one. */
tp_status wc_composition(const wc_heads *w, double *q, double *k, double *v);
/* Copying scores [L][H] and eigenvalues [L][H][dh] (real, imaginary parts),
 * largest |λ| first. */
tp_status wc_copying(const tp_model *m, const wc_heads *w, double *score, double *eig_re, double *eig_im);

/* Baselines: samples[s] for s < n. comp: [n][3] (Q, K, V) of one pair of random
 * heads; copy: [n] of one random head with random W_E, W_U of the model's shapes. */
tp_status wc_baseline_composition(int d, int dh, int n, uint64_t seed, double *comp);
tp_status wc_baseline_copying(int d, int dh, int vocab, int n, uint64_t seed, double *copy);

/* The copying score of dh eigenvalues: Σ re / Σ |λ| (NaN when all are 0). */
double wc_copying_score(const double *re, const double *im, int n);
#endif
