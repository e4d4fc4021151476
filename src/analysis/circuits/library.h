/* library.h — the circuit library: every task of circuits.library.dir (library_task.h)
 * run through discover.h on its prompt pairs (scores and m averaged over the pairs)
 * -> per task results/circuits/library_<name>.json/.dot/.svg (the circuit kept) and
 * results/circuits/library.json: per task the pairs, mean LD_clean / LD_corr,
 * can_do = (LD_clean − LD_corr ≥ circuits.library.margin), the faithfulness curve,
 * CPR, CMD, the verification table, top heads and edges. A task the model cannot do
 * stays, with can_do false and why. Tasks are split over the ranks (contiguous, in
 * file order), gathered on rank 0, which rebuilds each graph from its JSON and writes
 * every file: the same files for any number of ranks.
 */
#ifndef TP_CIRCUITS_LIBRARY_H
#define TP_CIRCUITS_LIBRARY_H

#include "analysis/circuits/circuits_common.h"

/* Collective. An empty circuits.library.dir: nothing done, nothing written. */
tp_status library_run(const circuits_ctx *cx, const char *run_dir);
/* "library: 2/3 tasks done by the model" from run_dir's library.json ("" if none). */
void library_headline(const char *run_dir, char *buf, size_t n);

#endif
