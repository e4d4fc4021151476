/* discover_run.h — `circuits discover`: one prompt, its target (the model's top next
 * token unless given), a corrupted prompt chosen automatically, and the circuit that
 * discover.h finds for the pair -> results/circuits/<id>.json, .dot, .svg.
 *
 * Corruption `resample`: windows of the prompt's token length from held-out corpus
 * documents (prompts.h: the corpus documents outside the run's data sample, the first
 * data.seq_len tokens of each, circuits.discover.corpus_docs of them drawn by
 * circuits.seed), cut at offsets 0, T', 2T', ... (T' = T less the BOS, which the window
 * keeps), tried in a seeded order (circuits.seed); the first whose top next token
 * differs from the clean prompt's is the corrupted prompt (at most
 * circuits.discover.resample_tries tried). The JSON names the document and offset.
 * Corruption `mean`: every node's output replaced by its mean over the rows (every
 * position but the first) of those documents, in residual space (discover.h, "Mean
 * ablation"). Without --corruption: resample, and mean when no window qualifies; the
 * JSON's corruption.chosen_by says which and why.
 */
#ifndef TP_CIRCUITS_DISCOVER_RUN_H
#define TP_CIRCUITS_DISCOVER_RUN_H

#include "analysis/circuits/circuits_common.h"
#include "analysis/circuits/discover.h"

#include <stdint.h>

typedef struct {
    const char *prompt;
    const int32_t *ids;
    int T;
    const char *target_text, *distractor_text;   /* target NULL: the model's top next token */
    int32_t target, distractor;                  /* distractor -1: none */
    const char *corruption;                      /* "resample", "mean", NULL: chosen here */
    const char *id;
} discover_request;

/* Collective: rank 0 computes and writes. */
tp_status discover_run(const circuits_ctx *cx, const discover_request *rq, const char *run_dir);
/* The run's SAE features for the pairs (dc_features, circuits.discover.sae_features per
 * residual-stream SAE of run_dir): *json the "features" block (scores normalized by
 * denom), null with fs->n = 0 when the run has no such SAE or the setting is 0. saes
 * and fs are the caller's to free (eap_sae_set_free, eap_feat_scores_free). */
tp_status discover_features(const circuits_ctx *cx, const char *run_dir, const dc_pair *pairs, int n, double denom,
                            eap_sae_set *saes, eap_feat_scores *fs, json_t **json);
/* The top next token of ids[0..T) (argmax of the last logits, lowest id on ties). */
tp_status discover_top_token(const tp_model *m, const int32_t *ids, int T, int32_t *top);

#endif
