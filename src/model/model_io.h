/* model_io.h — what several commands share: opening the configured model with its
 * tokenizer, and parsing token-id lists. */
#ifndef TP_MODEL_IO_H
#define TP_MODEL_IO_H

#include "core/config.h"
#include "model/model.h"
#include "model/tokenizer.h"

/* Opens model.path with model.weight_conversion; *tok (optional) gets
 * <model.path>/tokenizer.json, an error naming it when absent. */
tp_status model_io_open(const tp_config *cfg, tp_model **m, tp_tokenizer **tok);
/* "1,2,3" (spaces allowed after commas; "" gives none) -> ids (malloc'd). */
tp_status model_io_parse_ids(const char *text, int32_t **ids, size_t *n);

#endif
