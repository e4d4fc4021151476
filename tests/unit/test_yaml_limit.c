/* test_yaml_limit.c — YAML nested deeper than 64 levels is refused quickly, with the
 * file and line, by every YAML reader (the config loader, circuit library task files);
 * 64 levels are still read. libyaml alone takes minutes on 200k levels. */
#include "analysis/circuits/library_task.h"
#include "core/config.h"
#include "core/yaml_limit.h"
#include "tp_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* "key: " then depth '[' and as many ']' (flow nesting of `depth` sequences). */
static const char *write_nested(const char *name, const char *key, size_t depth)
{
    size_t n = strlen(key) + 2 * depth + 8;
    char *text = malloc(n);
    ck_assert_ptr_nonnull(text);
    size_t k = (size_t)snprintf(text, n, "%s: ", key);
    memset(text + k, '[', depth);
    memset(text + k + depth, ']', depth);
    text[k + 2 * depth] = '\n';
    const char *p = tp_test_tmp_path(name);
    ck_assert_int_eq(tp_test_write_file(p, text, k + 2 * depth + 1), 0);
    free(text);
    return p;
}

static double seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

START_TEST(test_config_deep)
{
    tp_config *c = NULL;
    ck_assert_int_eq(tp_config_new(&c), TP_OK);
    const char *p = write_nested("deep.yaml", "layers", 200000);
    double t0 = seconds();
    tp_err_clear();
    ck_assert_int_eq(tp_config_load_file(c, p), TP_ERR_CONFIG);
    ck_assert_msg(seconds() - t0 < 5.0, "refusing took %.1f s", seconds() - t0);
    TP_ASSERT_ERR_HAS(p);
    TP_ASSERT_ERR_HAS(":1: YAML nested deeper than 64 levels");
    tp_config_free(c);
}
END_TEST

/* 64 levels pass the limit (and fail later, as a list of lists is no int list). */
START_TEST(test_config_at_limit)
{
    tp_config *c = NULL;
    ck_assert_int_eq(tp_config_new(&c), TP_OK);
    const char *p = write_nested("deep64.yaml", "layers", 63);  /* + the top mapping = 64 */
    tp_err_clear();
    ck_assert_int_ne(tp_config_load_file(c, p), TP_OK);
    ck_assert_ptr_null(strstr(tp_err_msg(), "deeper"));
    tp_config_free(c);
}
END_TEST

START_TEST(test_library_task_deep)
{
    const char *p = write_nested("task.yaml", "pairs", 200000);
    lib_task t;
    double t0 = seconds();
    tp_err_clear();
    ck_assert_int_eq(lib_task_load(p, &t), TP_ERR_CONFIG);
    ck_assert_msg(seconds() - t0 < 5.0, "refusing took %.1f s", seconds() - t0);
    TP_ASSERT_ERR_HAS(p);
    TP_ASSERT_ERR_HAS("deeper than 64");
}
END_TEST

static Suite *yaml_limit_suite(void)
{
    Suite *s = suite_create("yaml_limit");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_config_deep);
    tcase_add_test(tc, test_config_at_limit);
    tcase_add_test(tc, test_library_task_deep);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tp_test_run_suite(yaml_limit_suite());
}
