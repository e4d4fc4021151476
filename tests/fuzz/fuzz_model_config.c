/* fuzz_model_config — config.json of a model directory (model_config_load). */
#include "fuzz.h"
#include "model/model_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tp_model_config c;
    if (model_config_load(fuzz_write_file("config.json", data, size), &c) == TP_OK) {
        (void)model_arch_name(c.arch);
        (void)model_rope_type_name(c.rope_type);
    }
    tp_err_clear();
    return 0;
}
