/* geometry_settings.c — the geometry.* section and its typed reading. */
#include "analysis/geometry/geometry_phase.h"

#include <string.h>

static const tp_cfg_key geometry_keys[] = {
    {"geometry.hooks", TP_CFG_STRING_LIST, "", TP_CFG_ANY, NULL, "capture points to analyse: a full name (blocks.3.hook_resid_post) or a per-layer point (hook_resid_post: every stored layer of it, only the selected `layers` if set); empty means every /acts dataset of the store"},
    {"geometry.max_rows", TP_CFG_INT, "0", TP_CFG_MIN(0), NULL, "unmasked rows per capture point held in memory (spread over the ranks) for PCA svd, neighbours, local geometry, k-means and norms; a seeded sample when the store has more; 0 means all"},
    {"geometry.seed", TP_CFG_INT, "1234", TP_CFG_MIN(0), NULL, "seed of every sample the geometry phase draws"},
    {"geometry.pca.method", TP_CFG_STRING, "cov", TP_CFG_ANY, "cov|svd", "cov: f64 covariance over every unmasked row, pdsyevd; svd: pdgesvd on the centred in-memory rows (more accurate small eigenvalues)"},
    {"geometry.pca.gram", TP_CFG_STRING, "f64", TP_CFG_ANY, "f64|f32", "precision of the cov method's Gram products: f64; f32 (about twice as fast; row blocks summed in f64 about a shift, eigenvalues to ~1e-7 relative instead of ~1e-13)"},
    {"geometry.pca.components", TP_CFG_INT, "64", TP_CFG_MIN(1), NULL, "principal components written to /pca/<hook>/components (at most d and the row count)"},
    {"geometry.id.sample", TP_CFG_INT, "2000", TP_CFG_MIN(0), NULL, "rows sampled as queries for MLE and TwoNN (0: all)"},
    {"geometry.id.k", TP_CFG_INT, "20", TP_CFG_IN(3, 1024), NULL, "neighbours for the MLE intrinsic dimension (Levina-Bickel with the MacKay-Ghahramani correction)"},
    {"geometry.local.sample", TP_CFG_INT, "500", TP_CFG_MIN(0), NULL, "points whose k-neighbourhoods get a local PCA (0: all)"},
    {"geometry.local.k", TP_CFG_INT, "20", TP_CFG_IN(2, 1024), NULL, "neighbours of each local PCA"},
    {"geometry.local.var_threshold", TP_CFG_FLOAT, "0.9", TP_CFG_ABOVE_TO(0, 1), NULL, "share of local variance that defines the local intrinsic dimension"},
    {"geometry.kmeans.k", TP_CFG_INT, "8", TP_CFG_IN(2, 65536), NULL, "k-means clusters"},
    {"geometry.kmeans.max_iter", TP_CFG_INT, "100", TP_CFG_IN(1, 100000), NULL, "Lloyd iterations at most"},
    {"geometry.kmeans.init_sample", TP_CFG_INT, "10000", TP_CFG_MIN(0), NULL, "rows sampled for the k-means++ initialisation (0: all)"},
    {"geometry.kmeans.silhouette_sample", TP_CFG_INT, "2000", TP_CFG_MIN(0), NULL, "rows sampled for the silhouette score (0: all)"},
    {"geometry.kmeans.top_tokens", TP_CFG_INT, "8", TP_CFG_IN(0, 1000), NULL, "tokens (with their preceding context) nearest each cluster centre listed in the JSON"},
    {"geometry.kmeans.context", TP_CFG_INT, "8", TP_CFG_IN(0, 4096), NULL, "tokens of preceding context shown with each of them"},
    {"geometry.norms.massive_ratio", TP_CFG_FLOAT, "100.0", TP_CFG_ABOVE_TO(0, INFINITY), NULL, "a coordinate is a massive activation when its largest |value| is at least this many times the median coordinate's mean |value|"},
};
const tp_cfg_section geometry_section = TP_CFG_SECTION("geometry", geometry_keys);

tp_status geometry_settings_read(const tp_config *cfg, geometry_settings *g)
{
    memset(g, 0, sizeof *g);
    g->hooks = (hook_request){.key = "geometry.hooks", .origin = tp_config_origin(cfg, "geometry.hooks")};
    g->hooks.n_names = tp_config_str_list(cfg, "geometry.hooks", &g->hooks.names);
    g->hooks.n_layers = tp_config_int_list(cfg, "layers", &g->hooks.layers);
    g->max_rows = tp_config_int(cfg, "geometry.max_rows");
    g->seed = (uint64_t)tp_config_int(cfg, "geometry.seed");
    TP_CHECK(pca_method_parse(tp_config_str(cfg, "geometry.pca.method"), &g->pca_method));
    TP_CHECK(pca_gram_parse(tp_config_str(cfg, "geometry.pca.gram"), &g->pca_gram));
    g->pca_components = tp_config_int(cfg, "geometry.pca.components");
    g->pca_components_origin = tp_config_origin(cfg, "geometry.pca.components");
    g->id_sample = tp_config_int(cfg, "geometry.id.sample");
    g->id_k = tp_config_int(cfg, "geometry.id.k");
    g->local_sample = tp_config_int(cfg, "geometry.local.sample");
    g->local_k = tp_config_int(cfg, "geometry.local.k");
    g->local_var_threshold = tp_config_float(cfg, "geometry.local.var_threshold");
    g->kmeans_k = tp_config_int(cfg, "geometry.kmeans.k");
    g->kmeans_max_iter = (int)tp_config_int(cfg, "geometry.kmeans.max_iter");
    g->kmeans_init_sample = tp_config_int(cfg, "geometry.kmeans.init_sample");
    g->kmeans_silhouette_sample = tp_config_int(cfg, "geometry.kmeans.silhouette_sample");
    g->kmeans_top_tokens = tp_config_int(cfg, "geometry.kmeans.top_tokens");
    g->kmeans_context = (int)tp_config_int(cfg, "geometry.kmeans.context");
    g->massive_ratio = tp_config_float(cfg, "geometry.norms.massive_ratio");
    return TP_OK;
}
