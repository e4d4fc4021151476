/* settings.c — the shared sections' keys and their typed reading. */
#include "settings.h"

#include <string.h>

static const tp_cfg_key model_keys[] = {
    {"model.path", TP_CFG_STRING, "models/olmo2-tiny", TP_CFG_ANY, NULL, "Hugging Face model directory (config.json, *.safetensors)"},
    {"model.weight_conversion", TP_CFG_STRING, "per_matrix", TP_CFG_ANY, "per_matrix|upfront", "bf16/f16 weights converted to f32 as each matrix is used (while the GEMM packs it; memory stays at the mmap) or once at load"},
};

static const tp_cfg_key device_keys[] = {
    {"device", TP_CFG_STRING, "cpu", TP_CFG_ANY, "cpu|cuda", "where the forward pass runs"},
};

static const tp_cfg_key run_keys[] = {
    {"run.name", TP_CFG_STRING, "default", TP_CFG_ANY, NULL, "name of the run: its directory under runs/, so one plain name (no '/', no '..')"},
    {"run.out_dir", TP_CFG_STRING, "", TP_CFG_ANY, NULL, "output directory; empty means runs/<run.name>"},
};

static const tp_cfg_key data_keys[] = {
    {"data.corpus", TP_CFG_STRING, "data/corpus", TP_CFG_ANY, NULL, "text corpus the samples are drawn from"},
    {"data.num_samples", TP_CFG_INT, "256", TP_CFG_MIN(1), NULL, "number of sequences to run"},
    {"data.seq_len", TP_CFG_INT, "128", TP_CFG_IN(2, 1048576), NULL, "tokens per sequence"},
    {"data.seed", TP_CFG_INT, "1234", TP_CFG_MIN(0), NULL, "seed for drawing the samples"},
    {"data.skip_malformed", TP_CFG_BOOL, "false", TP_CFG_ANY, NULL, "skip (and count) malformed corpus lines instead of stopping at the first"},
    {"data.packing", TP_CFG_STRING, "split", TP_CFG_ANY, "split|pack", "split: each document cut into sequences of its own; pack: documents joined by EOS and cut into full sequences"},
    {"data.max_doc_tokens", TP_CFG_INT, "100000", TP_CFG_MIN(0), NULL, "a longer document is cut to its first max_doc_tokens tokens (its text first to 16 bytes a token), and logged; 0: no limit"},
};

static const tp_cfg_key layers_keys[] = {
    {"layers", TP_CFG_INT_LIST, "", TP_CFG_MIN(0), NULL, "layers to capture; empty means all (checked against the model later)"},
};

static const tp_cfg_key forward_keys[] = {
    {"forward.batch_size", TP_CFG_INT, "8", TP_CFG_IN(1, 65536), NULL, "sequences per forward batch"},
    {"forward.threads", TP_CFG_INT, "0", TP_CFG_MIN(0), NULL, "compute threads per rank; 0: OPENBLAS_NUM_THREADS or OMP_NUM_THREADS when set, else the CPUs the rank may run on, shared with the ranks of its node that may run on the same CPUs"},
    {"forward.gemm", TP_CFG_STRING, "auto", TP_CFG_ANY, "auto|openblas", "GEMM of the linear layers: auto = TranspOLMo's AVX-512 kernel when the CPU has AVX-512 (weights packed from their stored dtype), else OpenBLAS; openblas = OpenBLAS sgemm always"},
    {"forward.bf16_compute", TP_CFG_STRING, "auto", TP_CFG_ANY, "auto|on|off", "BF16 weights (forward.gemm auto): auto = multiply them as stored with X rounded to bf16, f32 accumulation (AVX512-BF16 VDPBF16PS, as a Hugging Face bf16 model computes) when the CPU has it, else as off; on = the same, an error on a CPU without it; off = widen them to f32 and multiply f32 X (the f32 path, as F32 and F16 weights always are)"},
};

static const tp_cfg_key log_keys[] = {
    {"log.progress", TP_CFG_STRING, "auto", TP_CFG_ANY, "auto|always|never", "progress lines on rank 0 (every log.progress_interval seconds and each tenth of the work): auto and always print them also when stderr is not a terminal (mpirun, sbatch), never suppresses them"},
    {"log.progress_interval", TP_CFG_FLOAT, "10.0", TP_CFG_ABOVE_TO(0, 3600), NULL, "seconds between progress lines"},
    {"log.verbose", TP_CFG_BOOL, "false", TP_CFG_ANY, NULL, "error messages also say where in the source they were raised (--verbose)"},
};

static const tp_cfg_section model_section = TP_CFG_SECTION("model", model_keys);
static const tp_cfg_section device_section = TP_CFG_SECTION("device", device_keys);
static const tp_cfg_section run_section = TP_CFG_SECTION("run", run_keys);
static const tp_cfg_section data_section = TP_CFG_SECTION("data", data_keys);
static const tp_cfg_section layers_section = TP_CFG_SECTION("layers", layers_keys);
static const tp_cfg_section forward_section = TP_CFG_SECTION("forward", forward_keys);
static const tp_cfg_section log_section = TP_CFG_SECTION("log", log_keys);

static const tp_cfg_section *const head[] = {&model_section, &device_section, &run_section, &data_section,
                                             &layers_section, &forward_section};
static const tp_cfg_section *const tail[] = {&log_section};

const tp_cfg_section *const *settings_sections_head(size_t *n)
{
    *n = sizeof head / sizeof *head;
    return head;
}

const tp_cfg_section *const *settings_sections_tail(size_t *n)
{
    *n = sizeof tail / sizeof *tail;
    return tail;
}

tp_status settings_read(const tp_config *cfg, tp_settings *out)
{
    memset(out, 0, sizeof *out);
    out->model.dir = tp_config_str(cfg, "model.path");
    out->model.convert = !strcmp(tp_config_str(cfg, "model.weight_conversion"), "upfront") ? TP_CONVERT_UPFRONT
                                                                                             : TP_CONVERT_PER_MATRIX;
    out->device = tp_config_str(cfg, "device");
    out->run_name = tp_config_str(cfg, "run.name");
    /* runs/<run.name> must stay under runs/: one path component, not "." or "..". */
    const char *rn = out->run_name;
    if (!rn[0] || strchr(rn, '/') || strstr(rn, "..") || !strcmp(rn, "."))
        return tp_err(TP_ERR_CONFIG, "run.name '%s' (%s) must be a plain name without '/' or '..' (it names a "
                      "directory under runs/; use run.out_dir for another place)", rn,
                      tp_config_origin(cfg, "run.name") ? tp_config_origin(cfg, "run.name") : "default");
    out->out_dir = tp_config_str(cfg, "run.out_dir");
    out->data = (tp_data_spec){
        .corpus = tp_config_str(cfg, "data.corpus"),
        .skip_malformed = tp_config_bool(cfg, "data.skip_malformed"),
        .num_samples = tp_config_int(cfg, "data.num_samples"),
        .seed = (uint64_t)tp_config_int(cfg, "data.seed"),
        .seq_len = (int)tp_config_int(cfg, "data.seq_len"),
        .packing = !strcmp(tp_config_str(cfg, "data.packing"), "pack") ? TP_PACK_PACK : TP_PACK_SPLIT,
        .max_doc_tokens = tp_config_int(cfg, "data.max_doc_tokens"),
    };
    out->n_layers = tp_config_int_list(cfg, "layers", &out->layers);
    out->layers_origin = tp_config_origin(cfg, "layers");
    out->batch_size = (int)tp_config_int(cfg, "forward.batch_size");
    out->backend = (tp_backend_options){
        .threads = (int)tp_config_int(cfg, "forward.threads"),
        .own_gemm = strcmp(tp_config_str(cfg, "forward.gemm"), "openblas") != 0,
    };
    const char *bf16 = tp_config_str(cfg, "forward.bf16_compute");
    out->backend.bf16_compute = !strcmp(bf16, "on") ? TP_BF16_COMPUTE_ON
                              : !strcmp(bf16, "off") ? TP_BF16_COMPUTE_OFF : TP_BF16_COMPUTE_AUTO;
    const char *mode = tp_config_str(cfg, "log.progress");
    out->progress = !strcmp(mode, "always") ? TP_PROGRESS_ALWAYS
                  : !strcmp(mode, "never") ? TP_PROGRESS_NEVER : TP_PROGRESS_AUTO;
    out->progress_interval = tp_config_float(cfg, "log.progress_interval");
    out->verbose = tp_config_bool(cfg, "log.verbose");
    return TP_OK;
}
