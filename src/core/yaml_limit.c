#include "core/yaml_limit.h"

#include <yaml.h>

static tp_status check_events(yaml_parser_t *ps, const char *path)
{
    int depth = 0;
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(ps, &ev)) return TP_OK;  /* syntax errors: the loader says which */
        yaml_event_type_t t = ev.type;
        int line = (int)ev.start_mark.line + 1;
        yaml_event_delete(&ev);
        if (t == YAML_STREAM_END_EVENT) return TP_OK;
        if (t == YAML_SEQUENCE_START_EVENT || t == YAML_MAPPING_START_EVENT) {
            if (++depth > YAML_MAX_DEPTH)
                return tp_err(TP_ERR_CONFIG, "%s:%d: YAML nested deeper than %d levels", path, line, YAML_MAX_DEPTH);
        } else if (t == YAML_SEQUENCE_END_EVENT || t == YAML_MAPPING_END_EVENT) {
            depth--;
        }
    }
}

tp_status yaml_check_depth(const char *path, const char *text, size_t n)
{
    yaml_parser_t ps;
    if (!yaml_parser_initialize(&ps)) return tp_err(TP_ERR_NOMEM, "%s: cannot create YAML parser", path);
    yaml_parser_set_input_string(&ps, (const unsigned char *)text, n);
    tp_status st = check_events(&ps, path);
    yaml_parser_delete(&ps);
    return st;
}

tp_status yaml_check_depth_file(const char *path, FILE *f)
{
    yaml_parser_t ps;
    if (!yaml_parser_initialize(&ps)) return tp_err(TP_ERR_NOMEM, "%s: cannot create YAML parser", path);
    yaml_parser_set_input_file(&ps, f);
    tp_status st = check_events(&ps, path);
    yaml_parser_delete(&ps);
    rewind(f);
    return st;
}
