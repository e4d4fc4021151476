/* circuits_settings.c — the circuits.* section and its typed reading. */
#include "analysis/circuits/circuits_phase.h"
#include "analysis/circuits/head_scores.h"

#include <stdio.h>
#include <string.h>

static const tp_cfg_key circuits_keys[] = {
    {"circuits.seed", TP_CFG_INT, "1234", TP_CFG_MIN(0), NULL, "seed of the synthetic repeated sequences, the held-out documents drawn, the shuffles of the null baselines and the random-matrix baselines"},
    {"circuits.prepend_bos", TP_CFG_BOOL, "true", TP_CFG_ANY, NULL, "put the BOS token (the model's bos_token_id, else its eos_token_id, the document separator it was trained with) before every prompt, as TransformerLens's to_tokens does"},
    {"circuits.heads.prompts", TP_CFG_STRING, "", TP_CFG_ANY, NULL, "prompts of the head scores: a .txt file (one prompt per line) or .jsonl file (one {\"text\": ...} per line); empty means held-out corpus documents (data.*)"},
    {"circuits.heads.corpus_docs", TP_CFG_INT, "32", TP_CFG_MIN(0), NULL, "held-out corpus documents (not in the run's data sample) used as prompts when circuits.heads.prompts is empty; the first data.seq_len tokens of each"},
    {"circuits.heads.synthetic", TP_CFG_INT, "16", TP_CFG_MIN(0), NULL, "synthetic prompts [BOS, r1..rL, r1..rL] of seeded random tokens added to the prompts (the induction stripe score is measured on them)"},
    {"circuits.heads.synthetic_len", TP_CFG_INT, "24", TP_CFG_IN(2, 1048576), NULL, "L: random tokens in each half of a synthetic prompt"},
    {"circuits.heads.null_shuffles", TP_CFG_INT, "4", TP_CFG_IN(1, 1000), NULL, "seeded shuffles of each pattern's source positions (within the causal window) whose mean score is a head's null baseline"},
    {"circuits.heads.local_window", TP_CFG_INT, "3", TP_CFG_IN(1, 1048576), NULL, "w of the local score: attention to the w most recent positions, the query's own included"},
    {"circuits.heads.examples", TP_CFG_INT, "3", TP_CFG_IN(0, 100), NULL, "examples (query, attended source, weight) listed per labelled head"},
    {"circuits.heads.null_margin", TP_CFG_FLOAT, "0.1", TP_CFG_MIN(0), NULL, "a head gets a class only when its score is at least the threshold and exceeds its null baseline by this much"},
    {"circuits.heads.threshold.previous_token", TP_CFG_FLOAT, "0.4", TP_CFG_IN(0, 1), NULL, "previous-token class threshold (TransformerLens score)"},
    {"circuits.heads.threshold.duplicate_token", TP_CFG_FLOAT, "0.4", TP_CFG_IN(0, 1), NULL, "duplicate-token class threshold (TransformerLens score)"},
    {"circuits.heads.threshold.induction", TP_CFG_FLOAT, "0.4", TP_CFG_IN(0, 1), NULL, "induction class threshold (TransformerLens score)"},
    {"circuits.heads.threshold.bos", TP_CFG_FLOAT, "0.6", TP_CFG_IN(0, 1), NULL, "bos (attention to the first position) class threshold"},
    {"circuits.heads.threshold.self", TP_CFG_FLOAT, "0.4", TP_CFG_IN(0, 1), NULL, "self (attention to the query's own position) class threshold"},
    {"circuits.heads.threshold.local", TP_CFG_FLOAT, "0.8", TP_CFG_IN(0, 1), NULL, "local (attention within circuits.heads.local_window positions) class threshold"},
    {"circuits.weights.baseline_samples", TP_CFG_INT, "8", TP_CFG_IN(1, 100000), NULL, "random Gaussian matrix sets (the model's shapes) behind the composition and copying baselines"},
    {"circuits.discover.faithfulness", TP_CFG_FLOAT, "0.8", TP_CFG_IN(0, 1), NULL, "the circuit kept by circuits discover and the library is the smallest top-k% of edges whose faithfulness f(k) reaches this (else every edge)"},
    {"circuits.discover.corpus_docs", TP_CFG_INT, "32", TP_CFG_MIN(1), NULL, "held-out corpus documents (data.*, drawn by circuits.seed) whose windows are the resampled corruptions of circuits discover and of corpus library tasks"},
    {"circuits.discover.resample_tries", TP_CFG_INT, "64", TP_CFG_IN(1, 100000), NULL, "corpus windows tried (in an order seeded by circuits.seed) for one whose top next token differs from the clean prompt's"},
    {"circuits.discover.sae_features", TP_CFG_INT, "8", TP_CFG_IN(0, 100000), NULL, "features per SAE of the run at a residual-stream point that circuits discover and the library add to their graphs (0: none)"},
    {"circuits.library.dir", TP_CFG_STRING, "configs/circuits", TP_CFG_ANY, NULL, "folder of the circuit library's task files (*.yaml, one task each) run by the phase; empty: no library"},
    {"circuits.library.margin", TP_CFG_FLOAT, "1.0", TP_CFG_MIN(0), NULL, "a library task counts as done by the model (can_do) when the mean LD_clean - LD_corr over its pairs is at least this (logit units)"},
    {"circuits.library.pairs", TP_CFG_INT, "3", TP_CFG_IN(1, 1000), NULL, "prompt pairs made by a library task's generator (repeat_random, corpus) unless its file says n"},
    {"circuits.trace.prompt", TP_CFG_STRING, "The cat sat on the mat. The cat sat on the mat.", TP_CFG_ANY, NULL, "prompt the phase traces (every head's pattern and heat maps -> results/circuits/trace/phase.json, shown in the report); empty: no trace"},
    {"circuits.trace.top", TP_CFG_INT, "5", TP_CFG_IN(1, 1000), NULL, "most attended source tokens listed per head by circuits trace"},
};
const tp_cfg_section circuits_section = TP_CFG_SECTION("circuits", circuits_keys);

tp_status circuits_settings_read(const tp_config *cfg, circuits_settings *s)
{
    memset(s, 0, sizeof *s);
    s->seed = (uint64_t)tp_config_int(cfg, "circuits.seed");
    s->prepend_bos = tp_config_bool(cfg, "circuits.prepend_bos");
    s->prompts = tp_config_str(cfg, "circuits.heads.prompts");
    s->corpus_docs = tp_config_int(cfg, "circuits.heads.corpus_docs");
    s->synthetic = tp_config_int(cfg, "circuits.heads.synthetic");
    s->synthetic_len = tp_config_int(cfg, "circuits.heads.synthetic_len");
    s->null_shuffles = tp_config_int(cfg, "circuits.heads.null_shuffles");
    s->local_window = tp_config_int(cfg, "circuits.heads.local_window");
    s->examples = tp_config_int(cfg, "circuits.heads.examples");
    s->null_margin = tp_config_float(cfg, "circuits.heads.null_margin");
    for (int c = 0; c < CIRCUITS_NCLASSES; c++) {
        char key[96];
        snprintf(key, sizeof key, "circuits.heads.threshold.%s", hs_class_name(c));
        s->threshold[c] = tp_config_float(cfg, key);
    }
    s->baseline_samples = tp_config_int(cfg, "circuits.weights.baseline_samples");
    s->trace_top = tp_config_int(cfg, "circuits.trace.top");
    s->trace_prompt = tp_config_str(cfg, "circuits.trace.prompt");
    s->faithfulness = tp_config_float(cfg, "circuits.discover.faithfulness");
    s->discover_docs = tp_config_int(cfg, "circuits.discover.corpus_docs");
    s->discover_tries = tp_config_int(cfg, "circuits.discover.resample_tries");
    s->sae_features = (int)tp_config_int(cfg, "circuits.discover.sae_features");
    s->library_dir = tp_config_str(cfg, "circuits.library.dir");
    s->library_margin = tp_config_float(cfg, "circuits.library.margin");
    s->library_pairs = tp_config_int(cfg, "circuits.library.pairs");
    return TP_OK;
}

json_t *circuits_settings_json(const circuits_settings *s)
{
    json_t *th = json_object();
    for (int c = 0; c < CIRCUITS_NCLASSES; c++) json_object_set_new(th, hs_class_name(c), json_real(s->threshold[c]));
    json_t *o = json_pack("{s:I, s:b, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:o, s:I, s:I}", "seed", (json_int_t)s->seed,
        "prepend_bos", s->prepend_bos, "heads_prompts", s->prompts, "corpus_docs", (json_int_t)s->corpus_docs,
        "synthetic", (json_int_t)s->synthetic, "synthetic_len", (json_int_t)s->synthetic_len, "null_shuffles",
        (json_int_t)s->null_shuffles, "local_window", (json_int_t)s->local_window, "examples",
        (json_int_t)s->examples, "null_margin", s->null_margin, "thresholds", th, "baseline_samples",
        (json_int_t)s->baseline_samples, "trace_top", (json_int_t)s->trace_top);
    json_object_set_new(o, "discover", json_pack("{s:f, s:I, s:I, s:i}", "faithfulness", s->faithfulness, "corpus_docs",
        (json_int_t)s->discover_docs, "resample_tries", (json_int_t)s->discover_tries, "sae_features", s->sae_features));
    json_object_set_new(o, "library", json_pack("{s:s, s:f, s:I}", "dir", s->library_dir, "margin",
        s->library_margin, "pairs", (json_int_t)s->library_pairs));
    return o;
}
