/* fuzz_safetensors — safetensors files and shard indexes (st_open_file, st_open_dir).
 * The first byte picks what the rest is: even, a safetensors file (header length,
 * JSON header, data); odd, a model.safetensors.index.json beside two fixed valid
 * shards (made once, in LLVMFuzzerInitialize). Whatever opens is walked: every
 * tensor's bytes are read, so a range outside the map shows. */
#include "fuzz.h"
#include "io/safetensors.h"

static char shard_dir[200];

static void write_shard(const char *name, const char *tensor, float v)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", shard_dir, name);
    float x[4] = {v, v, v, v};
    int64_t shape[2] = {2, 2};
    st_write_tensor t = {.name = tensor, .dtype = TP_DTYPE_F32, .ndim = 2, .shape = shape, .data = x};
    if (st_write(path, &t, 1, NULL) != TP_OK) abort();
}

static void remove_shards(void)
{
    char path[256];
    snprintf(path, sizeof path, "%s/model-00001-of-00002.safetensors", shard_dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", shard_dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", shard_dir);
    unlink(path);
    rmdir(shard_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    snprintf(shard_dir, sizeof shard_dir, "%s/model", fuzz_dir());
    mkdir(shard_dir, 0700);
    write_shard("model-00001-of-00002.safetensors", "a.weight", 1.0f);
    write_shard("model-00002-of-00002.safetensors", "b.weight", 2.0f);
    atexit(remove_shards);
    return 0;
}

static void walk(st_file *f)
{
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < st_count(f); i++) {
        const st_tensor *t = st_at(f, i);
        const uint8_t *p = t->data;
        for (size_t b = 0; b < t->nbytes; b++) sink ^= p[b];
        if (st_find(f, t->name) != t) abort();
    }
    (void)sink;
    (void)st_total_bytes(f);
    st_close(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    st_file *f = NULL;
    if (data[0] % 2 == 0) {
        if (st_open_file(fuzz_write_file("model.safetensors", data + 1, size - 1), &f) == TP_OK) walk(f);
    } else {
        char path[256];
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", shard_dir);
        FILE *out = fopen(path, "wb");
        if (!out || (size > 1 && fwrite(data + 1, 1, size - 1, out) != size - 1) || fclose(out) != 0) abort();
        if (st_open_dir(shard_dir, &f) == TP_OK) walk(f);
    }
    tp_err_clear();
    return 0;
}
