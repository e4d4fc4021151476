/* weights.h — `circuits weights`: composition and OV copying scores of every head
 * with their random-matrix baselines and the way the norms were folded
 * (weight_circuits.h) -> results/circuits/weight_circuits.json. Rank 0 computes
 * and writes (no prompts: nothing to split); the other ranks wait for its verdict.
 */
#ifndef TP_CIRCUITS_WEIGHTS_H
#define TP_CIRCUITS_WEIGHTS_H

#include "analysis/circuits/circuits_common.h"

#include <stddef.h>

tp_status weights_run(const circuits_ctx *cx, const char *run_dir);
/* "top Q-composition L0H3->L1H2 0.31 | best copying L1H5 0.82" from the file. */
void weights_headline(const char *run_dir, char *buf, size_t n);

#endif
