/* lm_loss.h — next-token cross-entropy of a model over token sequences.
 *
 * For a sequence x[0..T) the loss at position t < T-1 is -log softmax(logits_t)[x_{t+1}]
 * (natural log, computed in f64 from the f32 logits), as transformers' causal-LM loss
 * with labels = input_ids. Sequences are run in batches of equal length; hooks (SAE
 * splicing, ablations) apply to every batch.
 */
#ifndef TP_LM_LOSS_H
#define TP_LM_LOSS_H

#include "core/error.h"
#include "data/sequences.h"
#include "model/forward.h"
#include "model/hooks.h"

typedef struct {
    double sum;            /* nats */
    size_t count;          /* predicted tokens */
} tp_loss_total;

/* Runs every sequence with at least 2 tokens; per_token (optional) receives the loss
 * of each predicted token in sequence order (n_tokens - n_seqs entries at most);
 * per_seq_sum (optional, [n_seqs]) the summed loss of each sequence. */
tp_status lm_loss_sequences(tp_forward *f, const tp_sequences *seqs, int batch, const tp_hooks *hooks,
                            float *per_token, double *per_seq_sum, tp_loss_total *total);

#endif
