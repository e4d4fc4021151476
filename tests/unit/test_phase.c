/* test_phase.c — the phase list and the resume hash (phase.h, pipeline.h).
 *
 * A phase's hash covers its own section, the shared keys it reads and the phases it
 * needs: a change upstream must rerun everything downstream and nothing else. */
#include "tp_test.h"

#include "analysis/capture/capture_phase.h"
#include "analysis/circuits/circuits_phase.h"
#include "analysis/geometry/geometry_phase.h"
#include "analysis/inspect/inspect_phase.h"
#include "analysis/sae/sae_phase.h"
#include "core/config.h"
#include "pipeline.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const tp_phase *const *all(int *n) { return pipeline_phases(n); }

/* Which phases' hashes change when key is set to value. */
static unsigned changed_by(const char *key, const char *value)
{
    tp_config *a, *b;
    ck_assert(tp_config_new(&a) == TP_OK);
    ck_assert(tp_config_new(&b) == TP_OK);
    ck_assert_msg(tp_config_set(b, key, value, "test") == TP_OK, "%s", tp_err_msg());
    int n;
    const tp_phase *const *ps = all(&n);
    unsigned mask = 0;
    for (int i = 0; i < n; i++)
        if (phase_hash(ps[i], a) != phase_hash(ps[i], b)) mask |= 1u << i;
    tp_config_free(a);
    tp_config_free(b);
    return mask;
}

static unsigned bit(const char *name)
{
    int n;
    const tp_phase *const *ps = all(&n);
    for (int i = 0; i < n; i++)
        if (!strcmp(ps[i]->name, name)) return 1u << i;
    ck_abort_msg("no phase %s", name);
    return 0;
}

START_TEST(test_order_and_lookup)
{
    int n;
    const tp_phase *const *ps = all(&n);
    const char *want[] = {"inspect", "capture", "geometry", "sae", "circuits"};
    ck_assert_int_ge(n, 6);
    ck_assert_str_eq(ps[n - 1]->name, "document");   /* the documentation comes last */
    for (int i = 0; i < 5; i++) ck_assert_str_eq(ps[i]->name, want[i]);
    for (int i = 0; i < n; i++) {
        ck_assert_ptr_eq(pipeline_find(ps[i]->name), ps[i]);
        ck_assert_ptr_nonnull(ps[i]->run);
        ck_assert_ptr_nonnull(ps[i]->help);
        ck_assert_ptr_nonnull(ps[i]->outputs[0]);
        /* a phase needs only phases that run before it */
        for (const tp_phase *const *q = ps[i]->needs; q && *q; q++) {
            int j = 0;
            while (j < n && ps[j] != *q) j++;
            ck_assert_msg(j < i, "%s needs %s, which does not run before it", ps[i]->name, (*q)->name);
        }
    }
    ck_assert_ptr_null(pipeline_find("nope"));
}
END_TEST

START_TEST(test_hash_propagates_downstream_only)
{
    unsigned inspect = bit("inspect"), capture = bit("capture"), geometry = bit("geometry"), sae = bit("sae");
    unsigned circuits = bit("circuits"), verify = bit("verify"), document = bit("document");
    /* own section: that phase, and what needs it (the documentation needs everything) */
    ck_assert_uint_eq(changed_by("inspect.spectra", "false"), inspect | document);
    ck_assert_uint_eq(changed_by("capture.dtype", "bf16"), capture | geometry | sae | verify | document);
    ck_assert_uint_eq(changed_by("geometry.seed", "7"), geometry | document);
    ck_assert_uint_eq(changed_by("sae.k", "16"), sae | verify | document);
    ck_assert_uint_eq(changed_by("circuits.seed", "7"), circuits | verify | document);
    ck_assert_uint_eq(changed_by("verify.seed", "8"), verify | document);
    ck_assert_uint_eq(changed_by("document.description_bar", "0.5"), document);
    /* shared keys, through `reads` */
    ck_assert_uint_eq(changed_by("model.path", "elsewhere"), inspect | capture | geometry | sae | circuits | verify | document);
    /* circuits draws its held-out prompts from outside the run's data sample */
    ck_assert_uint_eq(changed_by("data.seed", "7"), capture | geometry | sae | circuits | verify | document);
    ck_assert_uint_eq(changed_by("layers", "0,1"), capture | geometry | sae | verify | document);
    ck_assert_uint_eq(changed_by("forward.gemm", "openblas"), capture | geometry | sae | circuits | verify | document);
    ck_assert_uint_eq(changed_by("forward.bf16_compute", "off"), capture | geometry | sae | circuits | verify | document);
    /* keys that change no result */
    ck_assert_uint_eq(changed_by("forward.threads", "2"), 0);
    ck_assert_uint_eq(changed_by("log.progress", "never"), 0);
    ck_assert_uint_eq(changed_by("run.name", "other"), 0);
}
END_TEST

START_TEST(test_schema_has_every_phase_section)
{
    size_t n;
    const tp_cfg_section *const *secs = tp_config_app_schema(&n);
    int np;
    const tp_phase *const *ps = all(&np);
    for (int i = 0; i < np; i++) {
        if (!ps[i]->config) continue;
        int found = 0;
        for (size_t s = 0; s < n; s++) found |= secs[s] == ps[i]->config;
        ck_assert_msg(found, "section of %s missing from the schema", ps[i]->name);
        ck_assert_str_eq(ps[i]->config->name, ps[i]->name);
    }
    /* a misspelled key of a phase section is refused, with the nearest key */
    tp_config *c;
    ck_assert(tp_config_new(&c) == TP_OK);
    ck_assert_int_eq(tp_config_set(c, "geometry.kmeans.kk", "3", "test"), TP_ERR_CONFIG);
    TP_ASSERT_ERR_HAS("did you mean 'geometry.kmeans.k'");
    tp_config_free(c);
}
END_TEST

/* The circuit library's task files are inputs of the circuits phase: a changed or
 * added task changes its hash (and that of verify, which needs it; nothing else's). */
START_TEST(test_library_task_files_are_circuits_inputs)
{
    char dir[] = "/tmp/tp_phase_libXXXXXX", path[256];
    ck_assert(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/a.yaml", dir);
    FILE *f = fopen(path, "w");
    fputs("name: a\n", f);
    fclose(f);
    tp_config *c;
    ck_assert(tp_config_new(&c) == TP_OK);
    ck_assert(tp_config_set(c, "circuits.library.dir", dir, "test") == TP_OK);
    int n;
    const tp_phase *const *ps = all(&n);
    uint64_t before[32];
    for (int i = 0; i < n; i++) before[i] = phase_hash(ps[i], c);
    f = fopen(path, "w");
    fputs("name: b\n", f);
    fclose(f);
    for (int i = 0; i < n; i++)
        ck_assert_msg((phase_hash(ps[i], c) != before[i]) == (!strcmp(ps[i]->name, "circuits") ||
                          !strcmp(ps[i]->name, "verify") || !strcmp(ps[i]->name, "document")), "%s", ps[i]->name);
    const tp_phase *circ = ps[__builtin_ctz(bit("circuits"))];
    uint64_t edited = phase_hash(circ, c);
    snprintf(path, sizeof path, "%s/b.yml", dir);
    f = fopen(path, "w");
    fputs("name: b\n", f);
    fclose(f);
    ck_assert(phase_hash(circ, c) != edited);   /* a task added */
    edited = phase_hash(circ, c);
    snprintf(path, sizeof path, "%s/notes.txt", dir);   /* not a task file */
    f = fopen(path, "w");
    fputs("x\n", f);
    fclose(f);
    ck_assert(phase_hash(circ, c) == edited);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert(system(cmd) == 0);
    tp_config_free(c);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("phase");
    TCase *tc = tcase_create("phase");
    tcase_add_test(tc, test_order_and_lookup);
    tcase_add_test(tc, test_hash_propagates_downstream_only);
    tcase_add_test(tc, test_schema_has_every_phase_section);
    tcase_add_test(tc, test_library_task_files_are_circuits_inputs);
    suite_add_tcase(s, tc);
    return tp_test_run_suite(s);
}
