/* library_task.h — a task of the circuit library: one YAML file of circuits.library.dir
 * (configs/circuits/NAME.yaml), read and checked once, and its prompt pairs as token ids.
 *
 *   name: induction              # letters, digits, '_', '-' (names the graph files)
 *   description: "..."
 *   generator: repeat_random     # or corpus; or no generator and `pairs:`
 *   n: 3                         # pairs a generator makes (default circuits.library.pairs)
 *   length: 10                   # repeat_random: L; corpus: tokens of text per window
 *   seed: 7                      # generator seed (default circuits.seed)
 *   pairs:                       # explicit pairs (each clean/corrupt the same token length)
 *     - {clean: "(1, 2", corrupt: "[1, 2", target: ")", distractor: "]"}
 *
 * repeat_random: clean = [BOS, r1..rL, r1..r(L-1)], target rL (the token the last
 *   position should copy); corrupt = [BOS, s1..sL, s1..s(L-1)] of other random tokens
 *   (the repeated half resampled, with its own earlier copy), distractor sL (the corrupt
 *   run's copy). Random tokens as prompts_add_synthetic draws them.
 * corpus: windows [BOS, `length` tokens] of held-out corpus documents (prompts.h) in an
 *   order seeded by `seed`; target = the document's own next token; the corrupt prompt
 *   is the next window in that order (resample corruption), distractor its own next
 *   token (pairs with target == distractor skipped).
 * Unknown keys, a wrong shape, a missing name or neither pairs nor generator: one error
 * line naming the file, its line and the key (TP_ERR_CONFIG: exit code 2).
 */
#ifndef TP_CIRCUITS_LIBRARY_TASK_H
#define TP_CIRCUITS_LIBRARY_TASK_H

#include "analysis/circuits/circuits_common.h"
#include "analysis/circuits/discover.h"

typedef struct {
    char *clean, *corrupt, *target, *distractor;
} lib_text_pair;

typedef struct {
    char path[512];
    char *name, *description, *generator;    /* generator NULL: explicit pairs */
    int n, length;
    uint64_t seed;
    int has_seed;
    lib_text_pair *pairs;
    int n_text;
} lib_task;

/* The task files of dir (*.yaml, *.yml), sorted by name; *n may be 0. */
tp_status lib_task_files(const char *dir, char ***files, int *n);
void lib_task_files_free(char **files, int n);
tp_status lib_task_load(const char *path, lib_task *t);
/* FNV-1a 64 over the task files of dir (sorted names and their bytes); an unreadable
 * dir or file hashes its name and "unreadable" (the run reports the error). */
uint64_t lib_tasks_hash(const char *dir);
void lib_task_free(lib_task *t);

/* The pairs of a task as ids (dc_pair), with their texts; free with lib_pairs_free. */
typedef struct {
    dc_pair *p;
    int32_t **ids;          /* 2 per pair */
    char **text;            /* 4 per pair: clean, corrupt, target, distractor */
    int n;
} lib_pairs;
tp_status lib_task_pairs(const circuits_ctx *cx, const lib_task *t, lib_pairs *out);
void lib_pairs_free(lib_pairs *p);

#endif
