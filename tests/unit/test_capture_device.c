/* test_capture_device.c — phase 2 (analysis/capture) on a device-like backend
 * against the CPU backend, bit for bit.
 *
 * The "fake device" of docs/cuda.md: the CPU's ops with host_memory = 0, so capture
 * takes its device path — device readers on the hooks, download_async into two
 * alternating sets of pinned buffers, each unit written one round late (while the
 * next one computes on a GPU). Here download_async behaves as on a GPU: it snapshots
 * the source when queued (stream order) but lands the copy in the pinned buffer only
 * at the slot's wait, so a buffer read before its wait, or a set refilled before it
 * was written, changes the store.
 *
 * The model is the bundled olmo2-tiny, 24 documents cut into sequences of at most 64
 * tokens, in units of 4 sequences (23 units: flush points at the first and the last
 * round, the units between written late), capture points at every layer (the
 * residual, an MLP point) and a head point of one layer.
 * Checked: the device store equals the CPU's (store rows, tokens, every capture
 * point's bits); one download_async per unit and point, one wait per unit, no hook
 * through the synchronous download; a wait that fails at the third unit (unit 2, at
 * round 3 while unit 3 computes) fails the capture with its message, leaves unit 0
 * (flushed at round 0) marked and no other; the rerun resumes and ends with the
 * CPU's store.
 */
#include "analysis/capture/capture_phase.h"
#include "backend/backend.h"
#include "core/config.h"
#include "core/error.h"
#include "dist/world.h"
#include "io/store.h"
#include "run_layout.h"
#include "tp_test.h"

#include <jansson.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the fake device -------------------------------------------------------------- */

typedef struct pending_copy {
    void *dst;
    void *snapshot;
    size_t bytes;
    struct pending_copy *next;
} pending_copy;

static struct {
    pending_copy *queued[TP_BE_COPY_SLOTS];
    int async, waits, sync_downloads;
    int fail_wait_at;   /* the n-th wait fails (0: none) */
} dev;

static tp_status queue_download(tp_backend *be, void *host_dst, const void *src, size_t bytes, int slot)
{
    TP_CHECK(backend_check_copy_slot(be, slot));
    pending_copy *c = calloc(1, sizeof *c);
    ck_assert_ptr_nonnull(c);
    c->dst = host_dst, c->bytes = bytes, c->snapshot = malloc(bytes ? bytes : 1);
    ck_assert_ptr_nonnull(c->snapshot);
    memcpy(c->snapshot, src, bytes);
    pending_copy **p = &dev.queued[slot];
    while (*p) p = &(*p)->next;
    *p = c;
    dev.async++;
    return TP_OK;
}

/* The copies queued on `slot` reach their pinned buffers. */
static void land(int slot)
{
    for (pending_copy *c = dev.queued[slot], *next; c; c = next) {
        next = c->next;
        memcpy(c->dst, c->snapshot, c->bytes);
        free(c->snapshot), free(c);
    }
    dev.queued[slot] = NULL;
}

/* Lands the slot's copies (also when it fails: the copies were made, the wait
 * reports a failure of other queued work). */
static tp_status fake_wait(tp_backend *be, int slot)
{
    TP_CHECK(backend_check_copy_slot(be, slot));
    land(slot);
    if (++dev.waits == dev.fail_wait_at) return tp_err(TP_ERR_CUDA, "fake-device: injected failure of queued work");
    return TP_OK;
}

static tp_status fake_sync(tp_backend *be)
{
    for (int s = 0; s < TP_BE_COPY_SLOTS; s++) land(s);
    return TP_OK;
}

static tp_status counting_download(tp_backend *be, void *host_dst, const void *src, size_t bytes)
{
    dev.sync_downloads++;
    memcpy(host_dst, src, bytes);
    return TP_OK;
}

static tp_backend fake;

static tp_backend *fake_device(void)
{
    fake = *backend_cpu();
    fake.name = "fake-device";
    fake.host_memory = false;
    fake.iface.download = counting_download;
    fake.iface.download_async = queue_download;
    fake.iface.wait = fake_wait;
    fake.iface.sync = fake_sync;
    return &fake;
}

/* ---- running capture ---------------------------------------------------------------- */

static tp_config *capture_config(void)
{
    tp_config *c = tp_test_bundled_config();
    const char *kv[][2] = {{"data.num_samples", "24"}, {"data.seq_len", "64"}, {"forward.batch_size", "4"},
                           {"capture.hooks", "hook_resid_post,mlp.hook_post,blocks.1.attn.hook_z"}};
    for (size_t i = 0; i < sizeof kv / sizeof *kv; i++)
        ck_assert_msg(tp_config_set(c, kv[i][0], kv[i][1], "test") == TP_OK, "%s", tp_err_msg());
    return c;
}

/* Capture into <tmp>/<name> on backend be; the store's path into `store`. */
static tp_status run_capture(const char *name, tp_backend *be, char *store, size_t n)
{
    tp_config *cfg = capture_config();
    tp_status st = tp_test_capture(cfg, be, name, store, n);
    tp_config_free(cfg);
    return st;
}

static int64_t n_units, n_points;   /* of the CPU's run */

static void assert_same_store(const char *a, const char *b)
{
    int same = 0;
    tp_test_store_diff(a, b, &same);
    ck_assert_msg(same, "%s and %s differ", a, b);
}

static char cpu_store[4096];

static void setup(void)
{
    ck_assert_msg(run_capture("cpu", backend_cpu(), cpu_store, sizeof cpu_store) == TP_OK, "%s", tp_err_msg());
    json_t *sum = run_load_json(tp_test_tmp_path("cpu"), RUN_CAPTURE_SUMMARY_JSON);
    ck_assert_ptr_nonnull(sum);
    n_units = json_integer_value(json_object_get(sum, "units"));
    const char *hooks = json_string_value(json_object_get(sum, "hooks"));
    ck_assert_ptr_nonnull(hooks);
    n_points = 1;
    for (const char *p = hooks; *p; p++) n_points += *p == ',';
    json_decref(sum);
    ck_assert_int_ge(n_units, 5);
}

static void teardown(void) {}

START_TEST(test_device_store_equals_cpu)
{
    memset(&dev, 0, sizeof dev);
    char store[4096];
    ck_assert_msg(run_capture("dev", fake_device(), store, sizeof store) == TP_OK, "%s", tp_err_msg());
    ck_assert_int_eq(dev.async, n_units * n_points);
    ck_assert_int_eq(dev.waits, n_units);
    ck_assert_int_eq(dev.sync_downloads, 0);
    assert_same_store(cpu_store, store);
}
END_TEST

START_TEST(test_failed_wait_resumes)
{
    memset(&dev, 0, sizeof dev);
    dev.fail_wait_at = 3;   /* unit 2, written at round 3 while unit 3 computes */
    char store[4096];
    TP_ASSERT_FAILS(run_capture("fail", fake_device(), store, sizeof store), TP_ERR_CUDA, "injected failure");
    tp_store *s;
    ck_assert_msg(store_open_read(store, MPI_COMM_SELF, &s) == TP_OK, "%s", tp_err_msg());
    uint8_t *done = calloc((size_t)n_units, 1);
    ck_assert_ptr_nonnull(done);
    ck_assert(store_read_units(s, done) == TP_OK);
    ck_assert(!store_is_complete(s, "tokens"));
    ck_assert(store_close(s) == TP_OK);
    ck_assert_int_eq(done[0], 1);   /* flushed and marked at round 0 */
    for (int u = 1; u < n_units; u++) ck_assert_msg(!done[u], "unit %d marked after the failure", u);
    free(done);

    memset(&dev, 0, sizeof dev);
    ck_assert_msg(run_capture("fail", fake_device(), store, sizeof store) == TP_OK, "%s", tp_err_msg());
    ck_assert_int_eq(dev.waits, n_units - 1);   /* the units left */
    assert_same_store(cpu_store, store);
}
END_TEST

int main(int argc, char **argv)
{
    if (dist_init(&argc, &argv) != TP_OK) return 1;
    Suite *s = suite_create("capture_device");
    TCase *tc = tcase_create("fake device");
    tcase_add_unchecked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_device_store_equals_cpu);
    tcase_add_test(tc, test_failed_wait_resumes);
    suite_add_tcase(s, tc);
    int rc = tp_test_run_suite_nofork(s);
    dist_finalize();
    return rc;
}
