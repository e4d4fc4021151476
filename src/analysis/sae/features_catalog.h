/* features_catalog.h — what each SAE latent ("feature") does, as JSON for
 * results/features_catalog.json (phase 4; schema in docs/features.md), over every
 * row of the store: the ranks each scan their share, rank 0 merges and writes.
 *
 * Units. Activations are what sae_encode returns: codes in the SAE's scaled space
 *   (the SAE reads s·x, s = input scale). They are also exactly the activations of the
 *   SAELens export (results/sae_layer_<L>/) on raw activations, which folds s into its
 *   weights, so a SAELens user sees the same numbers. A feature's write to the hook's
 *   raw activations is f_i · w_i / s (w_i = row i of W_dec).
 *
 * Every rank passes its share of the rows (features_catalog_add, in any split and
 * any order), encoded in blocks of opt.block_rows (at most the SAE's max_rows at once:
 * sae_encode → codes [B, F]), and keeps per feature, in arrays allocated once by
 * features_catalog_begin: fire count, Σ activation, max, the activation mass per
 * domain (the domain index the caller gives each row), a min-heap of the top_k
 * (activation, store row) pairs (ties: the lower store row wins) and a sample of
 * `reservoir` firings: those with the smallest key = features_catalog_sample_key(seed,
 * feature, store row) (ties: the lower row). A firing's key depends on nothing but
 * the firing, so the sample is a uniform sample of the feature's firings without
 * replacement, and the same whatever the split of rows over ranks or blocks.
 * features_catalog_finish merges exactly: counts and sums reduced (f64 sums, so equal
 * to one process's up to their order), heaps and samples gathered to rank 0, which
 * keeps the best top_k and the `reservoir` smallest keys of the union. Then rank 0
 * alone, for the detailed features only:
 *   quantile samples  for levels q_j = (j + ½)/n_quantiles, j = 0..n_quantiles−1, the
 *                     sample's entry of ascending rank ⌊q_j·r⌋ (r = entries held). A
 *                     feature that fired at most `reservoir` times holds all its
 *                     firings: the samples are then exact empirical quantiles.
 *   promotes/suppresses  logit(t) = W_U[t] · (γ ⊙ w_i / s), γ = the final norm's
 *                     weight (opt.fold_final_norm; 1 otherwise): the direct effect on
 *                     the logits of one unit of activation, up to the positive 1/rms
 *                     of the final RMSNorm. The n_logit_tokens largest and smallest.
 *   reads             score(t) = W_E[t] · (s · W_enc[i]): the pre-activation the
 *                     token's embedding alone would give, without biases. Largest
 *                     n_read_tokens.
 *   Both are computed in blocks (features × vocabulary rows, one SGEMM each,
 *   W_U/W_E rows converted from BF16/F16 per block): V×F is never held. They need
 *   d_in = the model's hidden size (residual-stream hooks, attn_out, mlp_out);
 *   otherwise they are left out and the layer says why. Token ids the tokenizer does
 *   not know (padding rows of the embedding) are skipped.
 *   contexts          from /tokens and /positions of the store (read serially): the
 *                     context_before tokens before the row in its sequence, the token
 *                     between ⟦ and ⟧, then up to context_after tokens that follow
 *                     in the same sequence.
 *   domain_profile    activation mass per domain / total mass (the domains the caller
 *                     gives the rows: the store's /row_doc → /doc_domain → /domain_names).
 *   monosemanticity   token_purity = 1 − H(p_tok)/ln k, p_tok = the activation-weighted
 *                     distribution of the activating token ids over the k top contexts
 *                     (1 if k ≤ 1); domain_purity = 1 − H(domain_profile)/ln D, D = the
 *                     domains present among the rows (null if D ≤ 1); score = the
 *                     larger of the two (1 = all top activations on one token or all
 *                     mass in one domain). Natural logs.
 * Every feature is listed with id, fires, density (= fires / rows scanned over every
 * rank), mean and max activation; dead features (never fired on any row) and dense
 * ones (density > dense threshold) are listed again by id at the top of the layer.
 * Detailed entries go to every live feature, or, with max_detailed > 0 and more live
 * features than that, to the max_detailed with the largest activation mass (ties:
 * lower id).
 */
#ifndef TP_FEATURES_CATALOG_H
#define TP_FEATURES_CATALOG_H

#include "analysis/sae/sae.h"
#include "core/error.h"
#include "model/model.h"
#include "model/tokenizer.h"

#include <jansson.h>
#include <mpi.h>
#include <stdint.h>

typedef struct {
    int64_t top_k;            /* top activating contexts per feature (20) */
    int64_t context_before;   /* tokens before the activating one (12) */
    int64_t context_after;    /* tokens after it, same sequence (4) */
    int64_t n_quantiles;      /* quantile samples per feature (5) */
    int64_t reservoir;        /* reservoir size per feature (64) */
    int64_t n_logit_tokens;   /* promoted and suppressed tokens, each (10) */
    int64_t n_read_tokens;    /* input tokens read (10) */
    double dense_threshold;   /* dense: density > this; < 0: the SAE's cfg.dense_freq (-1) */
    int64_t max_detailed;     /* features with detailed entries; 0 = every live one (4096) */
    int fold_final_norm;      /* 1: γ of the final norm in the logit attribution (1) */
    uint64_t seed;            /* the sample's keys (0) */
    int64_t block_rows;       /* rows per sae_encode block (256) */
    int64_t feature_block, vocab_block;   /* blocks of the logit GEMMs (512, 2048) */
    int64_t merge_block;      /* features merged per round at rank 0; 0: what fits in 32 MiB (0) */
} features_catalog_options;

typedef struct {
    sae_model *sae;            /* trained; sae_encode uses (overwrites) its workspace */
    const char *hook_name;     /* e.g. "blocks.2.hook_resid_post" */
    int layer;
    const char *const *domain_names;   /* the store's domains (/domain_names), distinct; rows */
    int n_domains;                     /* carry an index into them (features_catalog_add); 0:
                                          every row counts as "(unknown)" */
    const char *store_path;    /* activations.h5, read serially by rank 0 for the contexts
                                  (/tokens, /positions); NULL: no contexts */
    const tp_model *model;     /* NULL: no promotes/suppresses/reads */
    const tp_tokenizer *tok;   /* NULL: tokens as ids only, no text */
    features_catalog_options opt;
} features_catalog_input;

void features_catalog_default_options(features_catalog_options *o);

/* The catalog over rows spread across the ranks of a communicator: every rank
 * begins, adds its rows in blocks (any split, any block size), and finishes. The
 * statistics are merged exactly (counts, sums, maxima; the top_k heaps; the
 * reservoir as the `reservoir` firings of smallest hash(seed, feature, store row), a
 * uniform sample that does not depend on how rows are split over ranks or blocks),
 * so the catalog is the same for any number of ranks up to the order of f64 sums.
 * Rank 0 then makes the detailed entries (logit attribution, contexts) and gets the
 * layer object; the other ranks get NULL. */
typedef struct features_catalog_acc features_catalog_acc;
/* Validates the options and allocates every accumulator (local: no communication).
 * The acc keeps `in`: it and what it points to must live until features_catalog_free. */
tp_status features_catalog_begin(const features_catalog_input *in, features_catalog_acc **out);
/* rows [n, d_in] raw activations, store_rows [n] their store rows (≥ 0, each row given
 * once over all ranks and calls), domains [n] each row's domain index (< n_domains;
 * NULL when n_domains = 0). A failure (bad domain index, negative row, sae_encode) is
 * kept: every later add returns it and finish reports it on every rank. */
tp_status features_catalog_add(features_catalog_acc *a, const float *rows, const int64_t *store_rows,
                               const int32_t *domains, int64_t n);
/* Collective over comm (MPI_COMM_SELF works without MPI_Init): every rank returns the
 * same status (a failure on any rank, before or during the merge or in rank 0's
 * detailed entries, is every rank's). Rank 0 reads in->store_path serially: the
 * parallel store must be closed by then. Once per acc. */
tp_status features_catalog_finish(features_catalog_acc *a, MPI_Comm comm, json_t **out_layer);
void features_catalog_free(features_catalog_acc *a);   /* NULL: nothing */

/* The key of a firing of `feature` on `store_row` that the sample keeps the smallest
 * of (splitmix64 finalisers of seed, feature and row: uniform on 64 bits). */
uint64_t features_catalog_sample_key(uint64_t seed, int64_t feature, int64_t store_row);

/* One process, rows in memory: begin, one add, finish on MPI_COMM_SELF. */
tp_status features_catalog_build(const features_catalog_input *in, const float *rows, const int64_t *store_rows,
                                 const int32_t *domains, int64_t n, json_t **out_layer);

/* The whole file: {"schema": "transpolmo.features_catalog/2", "coverage": coverage,
 * "saes": saes}. Steals both; NULL on allocation failure. */
json_t *features_catalog_document(json_t *coverage, json_t *saes);
/* Writes the document so that a person and jq can page it: the file is one JSON
 * document with each feature on a line of its own; and beside it the index
 * (RUN_FEATURES_INDEX: one line per feature with its key fields and the byte offset
 * and length of its line), so `features query` need not parse the whole catalog.
 * Both are written to .tmp files and renamed only when both are complete (a failure
 * leaves the old pair); the index records the catalog's size and mtime, so a
 * catalog changed since is seen as stale (io/features_index.h). */
tp_status features_catalog_write(const char *path, const char *index_path, const json_t *doc);

#endif
