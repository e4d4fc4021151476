/* test_config.c — defaults, YAML and --set precedence, accepted forms, every error
 * message (status, file, line, key), atomic loads, the YAML round trip and the hash. */
#include "core/config.h"
#include "tp_test.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Writes text to a fresh file under the temp dir and returns its path (rotating slots). */
static const char *write_cfg(const char *name, const char *text)
{
    const char *p = tp_test_tmp_path(name);
    ck_assert_int_eq(tp_test_write_file(p, text, strlen(text)), 0);
    return p;
}

static tp_config *new_config(void)
{
    tp_config *c = NULL;
    ck_assert_int_eq(tp_config_new(&c), TP_OK);
    ck_assert_ptr_nonnull(c);
    return c;
}

/* Loads `text` from a file called `name` and expects TP_ERR_CONFIG with a message
 * naming the file at `line` and containing `needle` (the key, usually). */
static void expect_load_error(const char *name, const char *text, int line, const char *needle)
{
    tp_config *c = new_config();
    const char *path = write_cfg(name, text);
    tp_err_clear();
    ck_assert_int_eq(tp_config_load_file(c, path), TP_ERR_CONFIG);
    /* TP_TEST_VERBOSE=1 shows the messages, to judge them by eye. */
    if (getenv("TP_TEST_VERBOSE")) fprintf(stderr, "%s\n", tp_err_msg());
    char at[600];
    snprintf(at, sizeof at, "%s:%d: ", path, line);
    TP_ASSERT_ERR_HAS(at);
    TP_ASSERT_ERR_HAS(needle);
    tp_config_free(c);
}

START_TEST(test_defaults)
{
    tp_config *c = new_config();
    ck_assert_str_eq(tp_config_str(c, "model.path"), "models/olmo2-tiny");
    ck_assert_str_eq(tp_config_str(c, "model.weight_conversion"), "per_matrix");
    ck_assert_str_eq(tp_config_str(c, "device"), "cpu");
    ck_assert_str_eq(tp_config_str(c, "run.name"), "default");
    ck_assert_str_eq(tp_config_str(c, "run.out_dir"), "");
    ck_assert_str_eq(tp_config_str(c, "data.corpus"), "data/corpus");
    ck_assert_int_eq(tp_config_int(c, "data.num_samples"), 256);
    ck_assert_int_eq(tp_config_int(c, "data.seq_len"), 128);
    ck_assert_int_eq(tp_config_int(c, "data.seed"), 1234);
    const int64_t *layers;
    ck_assert_uint_eq(tp_config_int_list(c, "layers", &layers), 0);
    ck_assert_int_eq(tp_config_int(c, "forward.batch_size"), 8);
    ck_assert_int_eq(tp_config_int(c, "forward.threads"), 0);
    const char *const *hooks;
    ck_assert_uint_eq(tp_config_str_list(c, "capture.hooks", &hooks), 2);
    ck_assert_str_eq(hooks[0], "hook_resid_post");
    ck_assert_str_eq(hooks[1], "hook_mlp_out");
    ck_assert(!tp_config_bool(c, "sae.skip"));
    ck_assert(tp_config_bool(c, "inspect.spectra"));
    ck_assert_str_eq(tp_config_str(c, "log.progress"), "auto");
    ck_assert_double_eq(tp_config_float(c, "log.progress_interval"), 10.0);
    ck_assert_str_eq(tp_config_origin(c, "data.seed"), "default");
    tp_config_free(c);
}
END_TEST

START_TEST(test_file_overrides)
{
    tp_config *c = new_config();
    const char *path = write_cfg("over.yaml",
                                 "# a comment\n"
                                 "device: cuda\n"
                                 "data:\n"
                                 "  num_samples: 5\n"
                                 "  seq_len: 64\n"
                                 "log:\n"
                                 "  progress_interval: 0.5\n"
                                 "sae: {skip: yes}\n");
    ck_assert_int_eq(tp_config_load_file(c, path), TP_OK);
    ck_assert_str_eq(tp_config_str(c, "device"), "cuda");
    ck_assert_int_eq(tp_config_int(c, "data.num_samples"), 5);
    ck_assert_int_eq(tp_config_int(c, "data.seq_len"), 64);
    ck_assert_double_eq(tp_config_float(c, "log.progress_interval"), 0.5);
    ck_assert(tp_config_bool(c, "sae.skip"));
    ck_assert_int_eq(tp_config_int(c, "data.seed"), 1234);   /* untouched */
    char origin[600];
    snprintf(origin, sizeof origin, "%s:4", path);
    ck_assert_str_eq(tp_config_origin(c, "data.num_samples"), origin);
    ck_assert_str_eq(tp_config_origin(c, "data.seed"), "default");
    tp_config_free(c);
}
END_TEST

START_TEST(test_set_overrides_file)
{
    tp_config *c = new_config();
    const char *path = write_cfg("prec.yaml", "data:\n  seq_len: 64\n  seed: 9\n");
    ck_assert_int_eq(tp_config_load_file(c, path), TP_OK);
    ck_assert_int_eq(tp_config_set_kv(c, "data.seq_len=32"), TP_OK);
    ck_assert_int_eq(tp_config_set(c, "layers", "3", "--layers"), TP_OK);
    ck_assert_int_eq(tp_config_int(c, "data.seq_len"), 32);
    ck_assert_str_eq(tp_config_origin(c, "data.seq_len"), "--set");
    ck_assert_int_eq(tp_config_int(c, "data.seed"), 9);
    ck_assert_str_eq(tp_config_origin(c, "layers"), "--layers");
    /* A value may itself contain '='. */
    ck_assert_int_eq(tp_config_set_kv(c, "run.name=a=b"), TP_OK);
    ck_assert_str_eq(tp_config_str(c, "run.name"), "a=b");
    tp_config_free(c);
}
END_TEST

START_TEST(test_nested_and_dotted)
{
    tp_config *c = new_config();
    const char *path = write_cfg("forms.yaml",
                                 "data.num_samples: 5\n"
                                 "data: {seed: 7, corpus: 'c/d'}\n"
                                 "model:\n"
                                 "  path: /m\n"
                                 "forward: {threads: 4}\n"
                                 "run:\n"
                                 "  # every key below commented out\n"
                                 "log:\n");
    ck_assert_int_eq(tp_config_load_file(c, path), TP_OK);
    ck_assert_int_eq(tp_config_int(c, "data.num_samples"), 5);
    ck_assert_int_eq(tp_config_int(c, "data.seed"), 7);
    ck_assert_str_eq(tp_config_str(c, "data.corpus"), "c/d");
    ck_assert_str_eq(tp_config_str(c, "model.path"), "/m");
    ck_assert_int_eq(tp_config_int(c, "forward.threads"), 4);
    ck_assert_str_eq(tp_config_str(c, "run.name"), "default");
    tp_config_free(c);
}
END_TEST

static void assert_layers(const tp_config *c, size_t n, const int64_t *want)
{
    const int64_t *got;
    ck_assert_uint_eq(tp_config_int_list(c, "layers", &got), n);
    for (size_t i = 0; i < n; i++) ck_assert_int_eq(got[i], want[i]);
}

START_TEST(test_list_forms)
{
    static const int64_t l3[] = {0, 6, 11};
    tp_config *c = new_config();
    ck_assert_int_eq(tp_config_load_file(c, write_cfg("l1.yaml", "layers:\n  - 0\n  - 6\n  - 11\n")), TP_OK);
    assert_layers(c, 3, l3);
    ck_assert_int_eq(tp_config_load_file(c, write_cfg("l2.yaml", "layers: []\n")), TP_OK);
    assert_layers(c, 0, NULL);
    ck_assert_int_eq(tp_config_load_file(c, write_cfg("l3.yaml", "layers: [0, 6, 11]\n")), TP_OK);
    assert_layers(c, 3, l3);
    ck_assert_int_eq(tp_config_load_file(c, write_cfg("l4.yaml", "layers: ~\n")), TP_OK);
    assert_layers(c, 0, NULL);
    ck_assert_int_eq(tp_config_load_file(c, write_cfg("l5.yaml", "layers: \"0,6,11\"\n")), TP_OK);
    assert_layers(c, 3, l3);
    ck_assert_int_eq(tp_config_set_kv(c, "layers="), TP_OK);
    assert_layers(c, 0, NULL);
    ck_assert_int_eq(tp_config_set_kv(c, "layers=0, 6 ,11"), TP_OK);
    assert_layers(c, 3, l3);
    ck_assert_int_eq(tp_config_set_kv(c, "layers=[0,6,11]"), TP_OK);
    assert_layers(c, 3, l3);

    const char *const *hooks;
    ck_assert_int_eq(tp_config_load_file(c, write_cfg("h1.yaml", "capture:\n  hooks:\n    - hook_embed\n    - attn.hook_z\n")),
                     TP_OK);
    ck_assert_uint_eq(tp_config_str_list(c, "capture.hooks", &hooks), 2);
    ck_assert_str_eq(hooks[0], "hook_embed");
    ck_assert_str_eq(hooks[1], "attn.hook_z");
    ck_assert_int_eq(tp_config_set_kv(c, "capture.hooks=a,b,c"), TP_OK);
    ck_assert_uint_eq(tp_config_str_list(c, "capture.hooks", &hooks), 3);
    ck_assert_str_eq(hooks[2], "c");
    ck_assert_int_eq(tp_config_load_file(c, write_cfg("h2.yaml", "capture.hooks: [x]\n")), TP_OK);
    ck_assert_uint_eq(tp_config_str_list(c, "capture.hooks", &hooks), 1);
    ck_assert_str_eq(hooks[0], "x");
    tp_config_free(c);
}
END_TEST

START_TEST(test_bools_and_nulls)
{
    static const char *const yes[] = {"true", "True", "YES", "on"}, *const no[] = {"false", "No", "OFF", "off"};
    tp_config *c = new_config();
    for (size_t i = 0; i < 4; i++) {
        char kv[64];
        snprintf(kv, sizeof kv, "sae.skip=%s", yes[i]);
        ck_assert_int_eq(tp_config_set_kv(c, kv), TP_OK);
        ck_assert(tp_config_bool(c, "sae.skip"));
        snprintf(kv, sizeof kv, "sae.skip=%s", no[i]);
        ck_assert_int_eq(tp_config_set_kv(c, kv), TP_OK);
        ck_assert(!tp_config_bool(c, "sae.skip"));
    }
    ck_assert_int_eq(tp_config_load_file(c, write_cfg("null.yaml", "run:\n  out_dir: ~\n  name:\n")), TP_OK);
    ck_assert_str_eq(tp_config_str(c, "run.out_dir"), "");
    ck_assert_str_eq(tp_config_str(c, "run.name"), "");
    /* Quoted, "~" is text. */
    ck_assert_int_eq(tp_config_load_file(c, write_cfg("tilde.yaml", "run.name: '~'\n")), TP_OK);
    ck_assert_str_eq(tp_config_str(c, "run.name"), "~");
    tp_config_free(c);
}
END_TEST

START_TEST(test_empty_files)
{
    tp_config *c = new_config();
    uint64_t h = tp_config_hash(c);
    ck_assert_int_eq(tp_config_load_file(c, write_cfg("empty.yaml", "")), TP_OK);
    ck_assert_int_eq(tp_config_load_file(c, write_cfg("comments.yaml", "# nothing\n\n   # here\n")), TP_OK);
    ck_assert_int_eq(tp_config_load_file(c, write_cfg("doc.yaml", "---\n...\n")), TP_OK);
    ck_assert_uint_eq(tp_config_hash(c), h);
    ck_assert_str_eq(tp_config_origin(c, "device"), "default");
    tp_config_free(c);
}
END_TEST

START_TEST(test_file_errors)
{
    expect_load_error("e1.yaml", "data:\n  seed: 1\n  num_sample: 5\n", 3,
                      "unknown key 'data.num_sample' (did you mean 'data.num_samples'?)");
    expect_load_error("e2.yaml", "data.num_sample: 5\n", 1, "(did you mean 'data.num_samples'?)");
    expect_load_error("e3.yaml", "\nfrobnicate_the_widgets: 1\n", 2, "unknown key 'frobnicate_the_widgets'");
    expect_load_error("e4.yaml", "dta: {seed: 1}\n", 1, "unknown key 'dta' (did you mean 'data'?)");
    expect_load_error("e5.yaml", "# c\n\n\n\n\n\ndata:\n  num_samples: many\n", 8,
                      "data.num_samples: expected an integer >= 1, got 'many'");
    expect_load_error("e6.yaml", "device: tpu\n", 1, "device: expected one of cpu|cuda, got 'tpu'");
    expect_load_error("e7.yaml", "data.seq_len: 1\n", 1, "data.seq_len: expected an integer in [2, 1048576], got '1'");
    expect_load_error("e8.yaml", "data.seed: 99999999999999999999\n", 1, "data.seed: expected an integer >= 0");
    expect_load_error("e9.yaml", "data.seed: 12abc\n", 1, "data.seed: expected an integer >= 0, got '12abc'");
    expect_load_error("e10.yaml", "data.seed: -1\n", 1, "data.seed");
    expect_load_error("e11.yaml", "log.progress_interval: 0\n", 1,
                      "log.progress_interval: expected a number in (0, 3600], got '0'");
    expect_load_error("e12.yaml", "log.progress_interval: nan\n", 1, "log.progress_interval");
    expect_load_error("e13.yaml", "log.progress_interval: 1e999\n", 1, "log.progress_interval");
    expect_load_error("e14.yaml", "# x\ndevice:\n  name: cpu\n", 2, "device: expected one of cpu|cuda, got a mapping");
    expect_load_error("e15.yaml", "data.seed: [1, 2]\n", 1, "data.seed: expected an integer >= 0, got a list");
    expect_load_error("e16.yaml", "data: 5\n", 1, "'data' is a section");
    expect_load_error("e17.yaml", "layers:\n  - 0\n  - -1\n", 3, "layers: expected a list of integers >= 0, got '-1'");
    expect_load_error("e18.yaml", "layers: [0, [1]]\n", 1, "layers: expected a list of integers >= 0, got a list");
    expect_load_error("e19.yaml", "layers: \"0,,6\"\n", 1, "layers");
    expect_load_error("e20.yaml", "sae.skip: maybe\n", 1, "sae.skip: expected a boolean");
    expect_load_error("e21.yaml", "forward.threads: 2\nforward:\n  threads: 3\n", 3,
                      "forward.threads: set twice in this file (first at line 1)");
    expect_load_error("e22.yaml", "- a\n- b\n", 1, "expected a mapping of keys at the top level");
    expect_load_error("e23.yaml", "data: 1\n---\ndata: 2\n", 1, "'data' is a section");
    expect_load_error("e24.yaml", "device: cpu\n---\nsae.skip: true\n", 3, "second");
    expect_load_error("e25.yaml", "[1]: 2\n", 1, "expected a key name");
    expect_load_error("e26.yaml", "data.num_samples:\n", 1, "data.num_samples: expected an integer >= 1, got ''");
    expect_load_error("e27.yaml", "data.seed: 1.5\n", 1, "data.seed");
    expect_load_error("e28.yaml", "run.name: \"a\\0b\"\n", 1, "run.name: contains a NUL");
}
END_TEST

START_TEST(test_yaml_syntax_errors)
{
    /* libyaml's problem text and line: an unclosed flow sequence at line 3. */
    expect_load_error("s1.yaml", "device: cpu\ndata:\n  num_samples: [1, 2\n", 4, "YAML syntax error");
    expect_load_error("s2.yaml", "device: cpu\n  data: x\n", 2, "mapping values are not allowed");
    expect_load_error("s3.yaml", "device: 'cpu\n", 2, "YAML syntax error");
    expect_load_error("s4.yaml", "device: cpu\nrun.name: \"\xff\"\n", 2, "YAML error");
    expect_load_error("s5.yaml", "a:\n\tb: 1\n", 2, "YAML syntax error");
}
END_TEST

START_TEST(test_missing_file)
{
    tp_config *c = new_config();
    char path[600];
    snprintf(path, sizeof path, "%s/no_such.yaml", tp_test_tmpdir());
    ck_assert_int_eq(tp_config_load_file(c, path), TP_ERR_IO);
    char want[700];
    snprintf(want, sizeof want, "cannot open config '%s': No such file or directory", path);
    TP_ASSERT_ERR_HAS(want);
    /* A directory opens but cannot be read. */
    ck_assert_int_eq(tp_config_load_file(c, tp_test_tmpdir()), TP_ERR_IO);
    TP_ASSERT_ERR_HAS(tp_test_tmpdir());
    tp_config_free(c);
}
END_TEST

START_TEST(test_set_errors)
{
    tp_config *c = new_config();
    ck_assert_int_eq(tp_config_set_kv(c, "data.seq_len=1"), TP_ERR_CONFIG);
    TP_ASSERT_ERR_HAS("--set: data.seq_len: expected an integer in [2, 1048576], got '1'");
    ck_assert_int_eq(tp_config_set_kv(c, "data.seq_len"), TP_ERR_CONFIG);
    TP_ASSERT_ERR_HAS("--set: expected key=value, got 'data.seq_len'");
    ck_assert_int_eq(tp_config_set_kv(c, "=5"), TP_ERR_CONFIG);
    TP_ASSERT_ERR_HAS("expected key=value");
    ck_assert_int_eq(tp_config_set_kv(c, "data.sed=5"), TP_ERR_CONFIG);
    TP_ASSERT_ERR_HAS("--set: unknown key 'data.sed' (did you mean 'data.seed'?)");
    ck_assert_int_eq(tp_config_set_kv(c, "data=5"), TP_ERR_CONFIG);
    TP_ASSERT_ERR_HAS("'data' is a section");
    ck_assert_int_eq(tp_config_set(c, "layers", "0,x", "--layers"), TP_ERR_CONFIG);
    TP_ASSERT_ERR_HAS("--layers: layers: expected a list of integers >= 0, got '0,x'");
    ck_assert_int_eq(tp_config_set_kv(c, "data.seed= 5"), TP_ERR_CONFIG);
    TP_ASSERT_ERR_HAS("data.seed");
    ck_assert_int_eq(tp_config_set_kv(c, "log.progress_interval=3600.5"), TP_ERR_CONFIG);
    TP_ASSERT_ERR_HAS("log.progress_interval");
    /* Failed sets leave the old values. */
    ck_assert_int_eq(tp_config_int(c, "data.seq_len"), 128);
    ck_assert_int_eq(tp_config_int(c, "data.seed"), 1234);
    const int64_t *l;
    ck_assert_uint_eq(tp_config_int_list(c, "layers", &l), 0);
    ck_assert_str_eq(tp_config_origin(c, "layers"), "default");
    tp_config_free(c);
}
END_TEST

START_TEST(test_failed_load_is_atomic)
{
    tp_config *c = new_config();
    const char *good = write_cfg("good.yaml", "data:\n  seed: 5\nlayers: [1, 2]\n");
    ck_assert_int_eq(tp_config_load_file(c, good), TP_OK);
    uint64_t h = tp_config_hash(c);
    /* Valid keys first, then a bad one: none of the valid ones may stick. */
    const char *bad = write_cfg("bad.yaml", "data:\n  seed: 6\n  num_samples: 7\nlayers: [3]\ndevice: tpu\n");
    ck_assert_int_eq(tp_config_load_file(c, bad), TP_ERR_CONFIG);
    TP_ASSERT_ERR_HAS("bad.yaml:5: device");
    ck_assert_int_eq(tp_config_int(c, "data.seed"), 5);
    ck_assert_int_eq(tp_config_int(c, "data.num_samples"), 256);
    static const int64_t l12[] = {1, 2};
    assert_layers(c, 2, l12);
    ck_assert_uint_eq(tp_config_hash(c), h);
    char origin[600];
    snprintf(origin, sizeof origin, "%s:2", good);
    ck_assert_str_eq(tp_config_origin(c, "data.seed"), origin);
    ck_assert_str_eq(tp_config_origin(c, "data.num_samples"), "default");
    /* A syntax error after valid keys likewise. */
    ck_assert_int_eq(tp_config_load_file(c, write_cfg("bad2.yaml", "data.seed: 8\ndevice: [\n")), TP_ERR_CONFIG);
    ck_assert_int_eq(tp_config_int(c, "data.seed"), 5);
    tp_config_free(c);
}
END_TEST

static void assert_same_values(const tp_config *a, const tp_config *b)
{
    static const char *const strs[] = {"model.path", "model.weight_conversion", "device", "run.name",
                                       "run.out_dir", "data.corpus", "log.progress"};
    static const char *const ints[] = {"data.num_samples", "data.seq_len", "data.seed",
                                       "forward.batch_size", "forward.threads"};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        ck_assert_str_eq(tp_config_str(a, strs[i]), tp_config_str(b, strs[i]));
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        ck_assert_int_eq(tp_config_int(a, ints[i]), tp_config_int(b, ints[i]));
    ck_assert(tp_config_bool(a, "sae.skip") == tp_config_bool(b, "sae.skip"));
    ck_assert(tp_config_bool(a, "inspect.spectra") == tp_config_bool(b, "inspect.spectra"));
    /* Exact: the writer prints the shortest text that reads back as the same double. */
    ck_assert(tp_config_float(a, "log.progress_interval") == tp_config_float(b, "log.progress_interval"));
    const int64_t *la, *lb;
    size_t n = tp_config_int_list(a, "layers", &la);
    ck_assert_uint_eq(tp_config_int_list(b, "layers", &lb), n);
    for (size_t i = 0; i < n; i++) ck_assert_int_eq(la[i], lb[i]);
    const char *const *ha, *const *hb;
    n = tp_config_str_list(a, "capture.hooks", &ha);
    ck_assert_uint_eq(tp_config_str_list(b, "capture.hooks", &hb), n);
    for (size_t i = 0; i < n; i++) ck_assert_str_eq(ha[i], hb[i]);
    ck_assert_uint_eq(tp_config_hash(a), tp_config_hash(b));
}

static void round_trip(const tp_config *c, const char *name)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", tp_test_tmpdir(), name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(tp_config_write_yaml(c, f), TP_OK);
    ck_assert_int_eq(fclose(f), 0);
    tp_config *d = new_config();
    ck_assert_msg(tp_config_load_file(d, path) == TP_OK, "reload: %s", tp_err_msg());
    assert_same_values(c, d);
    char origin[700];
    snprintf(origin, sizeof origin, "%s:", path);
    ck_assert_ptr_nonnull(strstr(tp_config_origin(d, "device"), origin));
    tp_config_free(d);
}

START_TEST(test_write_yaml_round_trip)
{
    tp_config *c = new_config();
    round_trip(c, "rt_default.yaml");

    ck_assert_int_eq(tp_config_set_kv(c, "run.name=it's a \"name\": with # and \\ and \t tab"), TP_OK);
    ck_assert_int_eq(tp_config_set_kv(c, "run.out_dir= leading space/ünïcödé\nnewline"), TP_OK);
    ck_assert_int_eq(tp_config_set_kv(c, "model.path=yes"), TP_OK);
    ck_assert_int_eq(tp_config_set_kv(c, "data.corpus=~"), TP_OK);
    ck_assert_int_eq(tp_config_set_kv(c, "device=cuda"), TP_OK);
    ck_assert_int_eq(tp_config_set_kv(c, "data.seed=9223372036854775807"), TP_OK);
    ck_assert_int_eq(tp_config_set_kv(c, "layers=0,6,11"), TP_OK);
    ck_assert_int_eq(tp_config_set_kv(c, "capture.hooks=a b,attn.hook_z,[x]"), TP_OK);
    ck_assert_int_eq(tp_config_set_kv(c, "log.progress_interval=0.1"), TP_OK);
    ck_assert_int_eq(tp_config_set_kv(c, "sae.skip=on"), TP_OK);
    ck_assert_int_eq(tp_config_set_kv(c, "inspect.spectra=off"), TP_OK);
    round_trip(c, "rt_set.yaml");

    /* Nested by prefix, with the origin as a comment. */
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(tp_config_write_yaml(c, f), TP_OK);
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_ptr_nonnull(strstr(buf, "\ndata:\n  corpus: \"~\"  # --set\n  num_samples: 256  # default\n"));
    ck_assert_ptr_nonnull(strstr(buf, "\nlayers: [0, 6, 11]  # --set\n"));
    ck_assert_ptr_nonnull(strstr(buf, "\nlog:\n  progress: \"auto\"  # default\n  progress_interval: 0.1  # --set\n"));
    free(buf);
    tp_config_free(c);
}
END_TEST

START_TEST(test_hash)
{
    tp_config *a = new_config(), *b = new_config();
    ck_assert_uint_eq(tp_config_hash(a), tp_config_hash(b));
    ck_assert_int_eq(tp_config_set_kv(b, "data.seed=1235"), TP_OK);
    ck_assert_uint_ne(tp_config_hash(a), tp_config_hash(b));
    ck_assert_int_eq(tp_config_set_kv(b, "data.seed=1234"), TP_OK);
    /* Same values from another origin: same hash. */
    ck_assert_uint_eq(tp_config_hash(a), tp_config_hash(b));
    ck_assert_int_eq(tp_config_set_kv(b, "layers=1"), TP_OK);
    ck_assert_uint_ne(tp_config_hash(a), tp_config_hash(b));
    ck_assert_int_eq(tp_config_set_kv(a, "capture.hooks=hook_resid_post,x"), TP_OK);
    ck_assert_int_eq(tp_config_set_kv(b, "layers="), TP_OK);
    ck_assert_uint_ne(tp_config_hash(a), tp_config_hash(b));
    tp_config_free(a);
    tp_config_free(b);
}
END_TEST

START_TEST(test_schema_md)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    ck_assert_ptr_nonnull(f);
    tp_config_write_schema_md(f);
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_ptr_nonnull(strstr(buf, "| key | type | default |"));
    ck_assert_ptr_nonnull(strstr(buf, "| `data.seq_len` | int | `128` | in [2, 1048576] |"));
    ck_assert_ptr_nonnull(strstr(buf, "| `device` | string | `\"cpu\"` | `cpu`, `cuda` |"));
    ck_assert_ptr_nonnull(strstr(buf, "| `capture.hooks` | string list | `[\"hook_resid_post\", \"hook_mlp_out\"]` |"));
    free(buf);
}
END_TEST

START_TEST(test_getter_undeclared_aborts)
{
    tp_config *c = new_config();
    (void)tp_config_int(c, "data.num_sample");
}
END_TEST

START_TEST(test_getter_wrong_type_aborts)
{
    tp_config *c = new_config();
    (void)tp_config_str(c, "data.num_samples");
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_file_overrides);
    tcase_add_test(tc, test_set_overrides_file);
    tcase_add_test(tc, test_nested_and_dotted);
    tcase_add_test(tc, test_list_forms);
    tcase_add_test(tc, test_bools_and_nulls);
    tcase_add_test(tc, test_empty_files);
    tcase_add_test(tc, test_file_errors);
    tcase_add_test(tc, test_yaml_syntax_errors);
    tcase_add_test(tc, test_missing_file);
    tcase_add_test(tc, test_set_errors);
    tcase_add_test(tc, test_failed_load_is_atomic);
    tcase_add_test(tc, test_write_yaml_round_trip);
    tcase_add_test(tc, test_hash);
    tcase_add_test(tc, test_schema_md);
    /* abort() can only be caught in a forked test process. */
    const char *fork_env = getenv("CK_FORK");
    if (!fork_env || strcmp(fork_env, "no") != 0) {
        tcase_add_test_raise_signal(tc, test_getter_undeclared_aborts, SIGABRT);
        tcase_add_test_raise_signal(tc, test_getter_wrong_type_aborts, SIGABRT);
    }
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tp_test_run_suite(config_suite());
}
