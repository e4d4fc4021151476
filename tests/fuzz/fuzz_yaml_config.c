/* fuzz_yaml_config — a run's YAML configuration (tp_config_load_file against the
 * application's schema), then written back, hashed and read again. */
#include "fuzz.h"
#include "core/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tp_config *c = NULL;
    if (tp_config_new(&c) != TP_OK) abort();
    if (tp_config_load_file(c, fuzz_write_file("config.yaml", data, size)) == TP_OK) {
        (void)tp_config_hash(c);
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        if (f && tp_config_write_yaml(c, f) == TP_OK && fclose(f) == 0) {
            /* What it writes it reads back. */
            tp_config *again = NULL;
            if (tp_config_new(&again) != TP_OK) abort();
            if (tp_config_load_file(again, fuzz_write_file("again.yaml", (const uint8_t *)buf, len)) != TP_OK) {
                fprintf(stderr, "written back, the configuration does not load: %s\n%s", tp_err_msg(), buf);
                abort();
            }
            tp_config_free(again);
        } else if (f) {
            fclose(f);
        }
        free(buf);
    }
    tp_config_free(c);
    tp_err_clear();
    return 0;
}
