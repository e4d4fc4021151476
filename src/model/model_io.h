/* model_io.h — what several commands share: opening a model directory with its
 * tokenizer, and parsing token-id lists. */
#ifndef TP_MODEL_IO_H
#define TP_MODEL_IO_H

#include "model/model.h"
#include "model/tokenizer.h"

/* Where a model comes from (the config's model.* keys). */
typedef struct {
    const char *dir;            /* Hugging Face model directory */
    tp_convert_mode convert;    /* BF16/F16 matrices converted per matrix or up front */
} tp_model_source;

/* Opens src->dir; *tok (optional) gets <dir>/tokenizer.json, an error naming it when
 * absent. */
tp_status model_io_open(const tp_model_source *src, tp_model **m, tp_tokenizer **tok);
/* <dir>/tokenizer.json alone. */
tp_status model_io_open_tokenizer(const char *dir, tp_tokenizer **tok);
/* "1,2,3" (spaces allowed after commas; "" gives none) -> ids (malloc'd). */
tp_status model_io_parse_ids(const char *text, int32_t **ids, size_t *n);

#endif
