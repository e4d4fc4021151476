/* sae_settings.c — the sae.* section and its typed reading. */
#include "analysis/sae/sae_phase.h"

#include <string.h>

static const tp_cfg_key sae_keys[] = {
    {"sae.skip", TP_CFG_BOOL, "false", TP_CFG_ANY, NULL, "skip the sparse-autoencoder phase"},
    {"sae.hooks", TP_CFG_STRING_LIST, "hook_resid_post", TP_CFG_ANY, NULL, "capture points to train an SAE on, named as for geometry.hooks (a per-layer point covers every stored selected layer); all train in one pass over the rows"},
    {"sae.architecture", TP_CFG_STRING, "topk", TP_CFG_ANY, "relu|topk|batchtopk", "relu: ReLU + L1 weighted by decoder norms (Anthropic, April 2024); topk: TopK + AuxK (Gao et al. 2024); batchtopk: BatchTopK (Bussmann et al. 2024)"},
    {"sae.expansion", TP_CFG_INT, "8", TP_CFG_IN(1, 1024), NULL, "latents per input dimension (d_sae = expansion x d) unless sae.hidden_dim is set"},
    {"sae.hidden_dim", TP_CFG_INT, "0", TP_CFG_MIN(0), NULL, "latents d_sae; 0 means sae.expansion x d"},
    {"sae.k", TP_CFG_INT, "32", TP_CFG_MIN(1), NULL, "topk: active latents per row; batchtopk: mean active latents per row"},
    {"sae.aux_k", TP_CFG_INT, "256", TP_CFG_MIN(0), NULL, "topk/batchtopk: dead latents in the AuxK loss (0: none; at most d_sae)"},
    {"sae.dead_tokens", TP_CFG_INT, "0", TP_CFG_MIN(0), NULL, "rows without firing after which a latent counts as dead; 0 means two epochs of rows, at most 10 M"},
    {"sae.l1_coefficient", TP_CFG_FLOAT, "5.0", TP_CFG_IN(0, INFINITY), NULL, "relu: L1 coefficient (on activations times decoder norms; warmed up over the first 5 % of steps)"},
    {"sae.learning_rate", TP_CFG_FLOAT, "0", TP_CFG_IN(0, INFINITY), NULL, "Adam learning rate, decayed linearly to 0 over the last 20 % of steps; 0 means relu 5e-5 (Anthropic), topk/batchtopk 1e-3 (tuned on the bundled model; Gao et al. scale 2e-4 for long runs)"},
    {"sae.num_epochs", TP_CFG_INT, "10", TP_CFG_IN(1, 100000), NULL, "passes over the training rows"},
    {"sae.batch_size", TP_CFG_INT, "1024", TP_CFG_IN(1, 16777216), NULL, "rows per optimiser step over all ranks (each rank takes its share)"},
    {"sae.seed", TP_CFG_INT, "1234", TP_CFG_MIN(0), NULL, "seed of the initial weights and of the row order"},
    {"sae.b_dec_init", TP_CFG_STRING, "auto", TP_CFG_ANY, "auto|geometric_median|mean|zero", "decoder bias initialisation from the first window of rows; auto: the recipe's (relu mean, topk/batchtopk geometric median)"},
    {"sae.checkpoint_every", TP_CFG_INT, "200", TP_CFG_MIN(0), NULL, "steps between checkpoints (weights, Adam state, data position); 0 means only at the end"},
    {"sae.chunk_rows", TP_CFG_INT, "1024", TP_CFG_IN(1, 16777216), NULL, "consecutive store rows read and shuffled as one chunk"},
    {"sae.window_chunks", TP_CFG_INT, "32", TP_CFG_IN(1, 1048576), NULL, "chunks whose rows are shuffled together (memory: window x d floats per capture point and rank)"},
    {"sae.eval_fraction", TP_CFG_FLOAT, "0.05", TP_CFG_IN(0, 0.5), NULL, "share of each corpus domain\'s rows held out of training as whole documents (FVU, L0 and CE are measured on them)"},
    {"sae.catalog.top_k", TP_CFG_INT, "20", TP_CFG_IN(1, 1000), NULL, "top activating contexts per feature in results/features_catalog.json"},
    {"sae.catalog.context", TP_CFG_INT, "12", TP_CFG_IN(0, 4096), NULL, "tokens of context before each activating token"},
    {"sae.catalog.max_detailed", TP_CFG_INT, "4096", TP_CFG_MIN(0), NULL, "features (by activation mass over every row) with contexts, quantiles, logit attribution and domains; every feature gets its density; 0 means all"},
    {"sae.eval.num_samples", TP_CFG_INT, "32", TP_CFG_MIN(0), NULL, "held-out documents (at most; taken round-robin over the domains) run through the model with the SAE spliced in for CE-loss recovered and KL; 0 skips it"},
};
const tp_cfg_section sae_section = TP_CFG_SECTION("sae", sae_keys);

tp_status sae_settings_read(const tp_config *cfg, sae_settings *s)
{
    memset(s, 0, sizeof *s);
    s->skip = tp_config_bool(cfg, "sae.skip");
    s->hooks = (hook_request){.key = "sae.hooks", .origin = tp_config_origin(cfg, "sae.hooks")};
    s->hooks.n_names = tp_config_str_list(cfg, "sae.hooks", &s->hooks.names);
    s->hooks.n_layers = tp_config_int_list(cfg, "layers", &s->hooks.layers);
    TP_CHECK(sae_arch_parse(tp_config_str(cfg, "sae.architecture"), &s->arch));
    s->expansion = tp_config_int(cfg, "sae.expansion");
    s->hidden_dim = tp_config_int(cfg, "sae.hidden_dim");
    s->k = tp_config_int(cfg, "sae.k");
    s->k_origin = tp_config_origin(cfg, "sae.k");
    s->aux_k = tp_config_int(cfg, "sae.aux_k");
    s->dead_tokens = tp_config_int(cfg, "sae.dead_tokens");
    s->l1_coefficient = tp_config_float(cfg, "sae.l1_coefficient");
    s->learning_rate = tp_config_float(cfg, "sae.learning_rate");
    s->num_epochs = tp_config_int(cfg, "sae.num_epochs");
    s->batch_size = tp_config_int(cfg, "sae.batch_size");
    s->seed = (uint64_t)tp_config_int(cfg, "sae.seed");
    const char *b = tp_config_str(cfg, "sae.b_dec_init");
    s->b_dec_auto = !strcmp(b, "auto");
    s->b_dec_init = !strcmp(b, "geometric_median") ? SAE_BDEC_GEOMETRIC_MEDIAN
                  : !strcmp(b, "mean") ? SAE_BDEC_MEAN : SAE_BDEC_ZERO;
    s->checkpoint_every = tp_config_int(cfg, "sae.checkpoint_every");
    s->chunk_rows = tp_config_int(cfg, "sae.chunk_rows");
    s->window_chunks = tp_config_int(cfg, "sae.window_chunks");
    s->eval_fraction = tp_config_float(cfg, "sae.eval_fraction");
    s->catalog_top_k = tp_config_int(cfg, "sae.catalog.top_k");
    s->catalog_context = tp_config_int(cfg, "sae.catalog.context");
    s->catalog_max_detailed = tp_config_int(cfg, "sae.catalog.max_detailed");
    s->eval_num_samples = tp_config_int(cfg, "sae.eval.num_samples");
    return TP_OK;
}
