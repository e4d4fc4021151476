/* model_config.h — a Hugging Face config.json, validated.
 *
 * Reads the keys the forward pass needs for Olmo2ForCausalLM (and its legacy names
 * Olmo1124ForCausalLM / model_type olmo_1124) and LlamaForCausalLM. RoPE comes from
 * `rope_theta` + `rope_scaling` (transformers 4.x) or `rope_parameters`
 * (transformers 5.x). Anything else is refused by name. Every shape is checked for
 * consistency (heads divide, head_dim even, ...).
 */
#ifndef TP_MODEL_CONFIG_H
#define TP_MODEL_CONFIG_H

#include "core/error.h"

typedef enum { TP_ARCH_OLMO2 = 0, TP_ARCH_LLAMA } tp_arch;
typedef enum { TP_ROPE_DEFAULT = 0, TP_ROPE_LLAMA3, TP_ROPE_LINEAR } tp_rope_type;

typedef struct {
    tp_arch arch;
    char architecture[64];     /* as written in config.json */
    char model_type[32];
    char torch_dtype[16];      /* "" if absent */
    char name[256];            /* `_name_or_path` ("allenai/OLMo-2-0425-1B"), else the directory's name */
    int vocab_size, hidden_size, intermediate_size, num_layers;
    int num_heads, num_kv_heads, head_dim, max_position_embeddings;
    double rms_norm_eps;
    int tie_word_embeddings;
    int bos_token_id, eos_token_id, pad_token_id;   /* -1 if absent */
    /* RoPE */
    tp_rope_type rope_type;
    double rope_theta;
    double rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int rope_original_max_pos;
} tp_model_config;

/* Parses and validates `path` (a config.json). */
tp_status model_config_load(const char *path, tp_model_config *out);
const char *model_arch_name(tp_arch a);
const char *model_rope_type_name(tp_rope_type t);

#endif
