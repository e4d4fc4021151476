/* settings.h — the shared sections of the configuration, as one typed struct.
 *
 * Sections every command may read: model, device, run, data, layers, forward, log.
 * Their keys are declared here (the phases declare their own sections beside their
 * drivers); settings_read() turns them into a tp_settings once, and io/, data/ and
 * model/ take the typed pieces (tp_data_spec, tp_model_source, tp_backend_options),
 * never the config object.
 */
#ifndef TP_SETTINGS_H
#define TP_SETTINGS_H

#include "backend/backend.h"
#include "core/config.h"
#include "core/progress.h"
#include "data/dataset.h"
#include "model/model_io.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tp_settings {
    tp_model_source model;          /* model.path, model.weight_conversion */
    const char *device;             /* device: "cpu" | "cuda" */
    const char *run_name;           /* run.name */
    const char *out_dir;            /* run.out_dir ("" = runs/<run.name>) */
    tp_data_spec data;              /* data.* */
    const int64_t *layers;          /* layers (n_layers 0 = all) */
    size_t n_layers;
    const char *layers_origin;      /* where `layers` was set, for error messages */
    int batch_size;                 /* forward.batch_size */
    tp_backend_options backend;     /* forward.threads, forward.gemm, forward.bf16_compute */
    tp_progress_mode progress;      /* log.progress */
    double progress_interval;       /* log.progress_interval */
    bool verbose;                   /* log.verbose */
} tp_settings;

/* The shared sections before the phases' (model, device, run, data, layers,
 * forward) and after them (log), in the order config.yaml and docs/config.md show. */
const tp_cfg_section *const *settings_sections_head(size_t *n);
const tp_cfg_section *const *settings_sections_tail(size_t *n);

/* Reads the shared sections (strings point into cfg, valid while it lives). */
tp_status settings_read(const tp_config *cfg, tp_settings *out);

#endif
