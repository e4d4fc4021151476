/* run_layout.c — paths of a run directory's artifacts (run_layout.h). */
#include "run_layout.h"

#include <stdio.h>
#include <string.h>

tp_status run_path(char *buf, size_t n, const char *run_dir, const char *artifact)
{
    return fs_join(buf, n, run_dir, artifact);
}

tp_status run_phase_file(char *buf, size_t n, const char *run_dir, const char *phase, const char *suffix)
{
    size_t la = strlen(run_dir);
    return fs_path(buf, n, "%s%s" RUN_PHASES_DIR "/%s%s", run_dir, la && run_dir[la - 1] == '/' ? "" : "/", phase,
                   suffix);
}

tp_status run_marker_path(char *buf, size_t n, const char *run_dir, const char *phase)
{
    return run_phase_file(buf, n, run_dir, phase, ".done");
}

tp_status run_sae_dir(char *buf, size_t n, const char *run_dir, const char *hook)
{
    int L = -1, used = 0;
    char sub[512];
    if (sscanf(hook, "blocks.%d.%n", &L, &used) == 1 && used > 0) {
        const char *point = hook + used;
        if (!strcmp(point, "hook_resid_post")) TP_CHECK(fs_path(sub, sizeof sub, RUN_RESULTS_DIR "/sae_layer_%d", L));
        else TP_CHECK(fs_path(sub, sizeof sub, RUN_RESULTS_DIR "/sae_layer_%d_%s", L, point));
    } else {
        TP_CHECK(fs_path(sub, sizeof sub, RUN_RESULTS_DIR "/sae_%s", hook));
    }
    for (char *p = sub + strlen(RUN_RESULTS_DIR) + 1; *p; p++)
        if (*p == '.') *p = '_';
    return fs_join(buf, n, run_dir, sub);
}

tp_status run_sae_checkpoint_dir(char *buf, size_t n, const char *run_dir, const char *hook)
{
    char sae_dir[TP_PATH_MAX], sub[TP_PATH_MAX];
    TP_CHECK(run_sae_dir(sae_dir, sizeof sae_dir, "", hook));
    const char *name = strrchr(sae_dir, '/');
    TP_CHECK(fs_path(sub, sizeof sub, RUN_CHECKPOINTS_DIR "/sae/%s", name ? name + 1 : sae_dir));
    return fs_join(buf, n, run_dir, sub);
}

tp_status run_dir_of(char *buf, size_t n, const char *out_dir, const char *run_name)
{
    if (out_dir && out_dir[0]) return fs_path(buf, n, "%s", out_dir);
    return fs_path(buf, n, RUN_DEFAULT_PARENT "/%s", run_name);
}

json_t *run_load_json(const char *run_dir, const char *artifact)
{
    char path[TP_PATH_MAX];
    if (run_path(path, sizeof path, run_dir, artifact) != TP_OK) return NULL;
    return json_load_file(path, 0, NULL);
}
