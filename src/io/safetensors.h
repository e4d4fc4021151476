/* safetensors.h — memory-mapped, validated safetensors checkpoints.
 *
 * st_open_dir() opens a Hugging Face model directory: `model.safetensors`, or
 * `model.safetensors.index.json` and the shards it names. Every file is mmap'ed
 * read-only; tensors are views into the maps. Validation on open: the 8-byte header
 * length fits the file, the header is a JSON object, every entry has a known dtype,
 * a shape and data_offsets with end-begin == numel*dtype size, and the ranges tile
 * the data section exactly (sorted, each starting where the previous ended, the last
 * ending at the end of the file, as the Rust reference requires); for an index, every shard exists and
 * holds the tensors the index says it does. Any failure is a one-line error naming
 * the file and the problem.
 */
#ifndef TP_SAFETENSORS_H
#define TP_SAFETENSORS_H

#include "core/dtype.h"
#include "core/error.h"
#include "core/fsutil.h"

#include <stdint.h>

#define ST_MAX_DIMS 8

typedef struct {
    const char *name;        /* owned by the st_file */
    const char *file;        /* path of the file that holds it */
    tp_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    int64_t numel;
    const void *data;        /* into the mmap */
    size_t nbytes;
} st_tensor;

typedef struct st_file st_file;   /* one or several mapped files */

tp_status st_open_file(const char *path, st_file **out);
tp_status st_open_dir(const char *model_dir, st_file **out);
void st_close(st_file *f);

size_t st_count(const st_file *f);
const st_tensor *st_at(const st_file *f, size_t i);          /* in name order */
const st_tensor *st_find(const st_file *f, const char *name); /* NULL if absent */
size_t st_total_bytes(const st_file *f);                      /* sum of tensor bytes */

/* TP_OK if every element of a float tensor is finite (integer dtypes always are);
 * else TP_ERR_FORMAT naming the file, the tensor and the first bad element. Reads the
 * whole tensor once (exponent bits only, vectorised); callers run it once per tensor
 * on load, so inner loops can trust the weights. */
tp_status st_check_finite(const st_tensor *t);

/* The weights' fingerprint for a store's provenance (fsutil.h): each file st_open_dir
 * would open (model.safetensors, or the index's shards in name order) with its whole
 * header (8 bytes + JSON) and sampled data blocks. Opens nothing else; cheap on a
 * 32B model. */
tp_status st_fingerprint_dir(const char *model_dir, fs_fingerprint *fp);

/* Writes a single-file safetensors (tests, SAE export). Tensors are laid out in
 * the order given; metadata may be NULL (string key/value pairs, NULL-terminated). */
typedef struct {
    const char *name;
    tp_dtype dtype;
    int ndim;
    const int64_t *shape;
    const void *data;
} st_write_tensor;
tp_status st_write(const char *path, const st_write_tensor *tensors, size_t n,
                   const char *const *metadata_kv);

#endif
