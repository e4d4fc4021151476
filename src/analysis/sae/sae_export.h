/* sae_export.h — SAEs in the SAELens layout (results/sae_layer_<L>/), and a reader
 * that applies SAELens' own inference rule to what was written.
 *
 *   cfg.json                 architecture ("standard" for relu, "topk", "jumprelu"
 *                            for batchtopk: BatchTopK's inference rule is a JumpReLU
 *                            with every threshold = θ), d_in, d_sae, dtype "float32",
 *                            device "cpu", k (topk), apply_b_dec_to_input,
 *                            normalize_activations "none", metadata {hook_name,
 *                            model_name, ...}, transpolmo {input_scale, training and
 *                            evaluation figures}
 *   sae_weights.safetensors  W_enc [d, F], b_enc [F], W_dec [F, d], b_dec [d]
 *                            (+ threshold [F] for jumprelu), f32
 *   sparsity.safetensors     sparsity [F]: log10 of each latent's firing density over
 *                            every row of the store (SAELens' feature sparsity)
 *
 * Our SAE works on s·x (s = input scale); the export folds s into the weights so a
 * SAELens user feeds raw activations: W_enc' = s·W_encᵀ, b_dec' = b_dec/s,
 * W_dec' = W_dec/s, b_enc' = b_enc. SAELens' rule on x then gives exactly our
 * reconstruction: pre = (x − b_dec')·W_enc' + b_enc', f = act(pre), x̂ = f·W_dec' + b_dec'.
 */
#ifndef TP_SAE_EXPORT_H
#define TP_SAE_EXPORT_H

#include "analysis/sae/sae.h"
#include "core/error.h"

#include <jansson.h>

/* <dir>/sparsity.safetensors: "sparsity" [F] = log10(density + 1e-10), SAELens'
 * feature sparsity (density: the share of rows on which each latent fired). */
tp_status sae_export_sparsity(const char *dir, const double *density, int64_t F);

/* Writes <dir>/cfg.json and <dir>/sae_weights.safetensors (atomically each). extra
 * (may be NULL, borrowed) goes under "transpolmo" in cfg.json. */
tp_status sae_export_saelens(const sae_model *m, const char *dir, const char *hook_name, const char *model_name,
                             json_t *extra);

typedef struct {
    char architecture[16];   /* standard | topk | jumprelu */
    int64_t d_in, d_sae, k;
    int apply_b_dec_to_input;
    char hook_name[128];
    float *W_enc, *b_enc, *W_dec, *b_dec, *threshold;   /* SAELens layout; threshold NULL unless jumprelu */
} saelens_sae;

/* Reads an export (ours or any SAELens-layout directory with these keys). */
tp_status saelens_load(const char *dir, saelens_sae *out);
void saelens_free(saelens_sae *s);
/* SAELens' inference rule: recon [n, d] (and codes [n, F] if not NULL) for rows [n, d]. */
tp_status saelens_reconstruct(const saelens_sae *s, const float *rows, int64_t n, float *recon, float *codes);

#endif
