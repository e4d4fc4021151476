/* test_report.c — the HTML report's pieces: base64 against RFC 4648's vectors,
 * escaping (entities, invalid UTF-8, control characters), the cairo figures (a PNG of
 * the size asked, decoded back, with drawn pixels of the expected colours), and
 * report_html_write on an empty run (every section "not run") and on a hand-made run
 * whose results carry markup and control characters (escaped, never raw). */
#include "core/fsutil.h"
#include "report/figures.h"
#include "report/html.h"
#include "report/report_html.h"
#include "tp_test.h"

#include <cairo.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

START_TEST(test_base64_rfc4648)
{
    /* RFC 4648 section 10 */
    static const char *const in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const want[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (int i = 0; i < 7; i++) {
        char out[16];
        size_t n = html_base64_encode((const unsigned char *)in[i], strlen(in[i]), out);
        ck_assert_str_eq(out, want[i]);
        ck_assert_uint_eq(n, html_base64_len(strlen(in[i])));
        html_buf b;
        html_init(&b);
        html_raw(&b, "x");
        html_base64(&b, (const unsigned char *)in[i], strlen(in[i]));
        ck_assert_int_eq(html_status(&b), TP_OK);
        ck_assert_str_eq(b.data + 1, want[i]);
        html_free(&b);
    }
    /* every byte value round the table */
    unsigned char all[256];
    for (int i = 0; i < 256; i++) all[i] = (unsigned char)i;
    char out[html_base64_len(256) + 1];
    ck_assert_uint_eq(html_base64_encode(all, 256, out), 344);
    ck_assert(!strncmp(out, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g", 44));
    ck_assert_str_eq(out + 340, "/w==");
}
END_TEST

static char *escaped(const char *s, size_t n)
{
    html_buf b;
    html_init(&b);
    html_textn(&b, s, n);
    ck_assert_int_eq(html_status(&b), TP_OK);
    return b.data ? b.data : strdup("");
}

START_TEST(test_escape)
{
    const char *js = "<script>alert(\"x\" & 'y')</script>";
    char *e = escaped(js, strlen(js));
    ck_assert_str_eq(e, "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;");
    free(e);
    /* valid UTF-8 (é, ⟦, 😀), tab and newline kept */
    const char *ok = "caf\xC3\xA9 \xE2\x9F\xA6\xF0\x9F\x98\x80\t\n";
    e = escaped(ok, strlen(ok));
    ck_assert_str_eq(e, "caf\xC3\xA9 \xE2\x9F\xA6\xF0\x9F\x98\x80\t\n");
    free(e);
    /* invalid: a lone continuation, a bad lead byte, an overlong '/', a surrogate, a
     * sequence cut short, above U+10FFFF: each bad byte one U+FFFD */
    const char bad[] = "a\x80" "b\xFF" "c\xC0\xAF" "d\xED\xA0\x80" "e\xE2\x9F" "f\xF4\x90\x80\x80";
    e = escaped(bad, sizeof bad - 1);
    const char *r = "\xEF\xBF\xBD";
    char want[256];
    snprintf(want, sizeof want, "a%sb%sc%s%sd%s%s%se%s%sf%s%s%s%s", r, r, r, r, r, r, r, r, r, r, r, r, r);
    ck_assert_str_eq(e, want);
    free(e);
    /* control characters as Control Pictures (U+2401, U+241B, DEL U+2421); CR too */
    e = escaped("x\x01y\x1Bz\x7F\r", 7);
    ck_assert_str_eq(e, "x\xE2\x90\x81y\xE2\x90\x9Bz\xE2\x90\xA1\xE2\x90\x8D");
    free(e);
    /* labels: no entities, cut at a character boundary */
    char out[8];
    html_clean_utf8("<\xC3\xA9\xC3\xA9\xC3\xA9\xFF", 8, out, sizeof out);
    ck_assert_str_eq(out, "<\xC3\xA9\xC3\xA9\xC3\xA9");
    html_clean_utf8("\xE2\x9F\xA6\xE2\x9F\xA6", 6, out, 6);
    ck_assert_str_eq(out, "\xE2\x9F\xA6");
}
END_TEST

typedef struct {
    const unsigned char *p;
    size_t n, at;
} png_reader;

static cairo_status_t png_read(void *closure, unsigned char *data, unsigned int length)
{
    png_reader *r = closure;
    if (r->at + length > r->n) return CAIRO_STATUS_READ_ERROR;
    memcpy(data, r->p + r->at, length);
    r->at += length;
    return CAIRO_STATUS_SUCCESS;
}

/* Decodes the PNG; counts pixels that are not white, and those near rgb (±0.08). */
static void png_check(const fig_png *png, int w, int h, size_t *drawn, const double rgb[3], size_t *near)
{
    ck_assert(png->len > 8 && !memcmp(png->data, "\x89PNG\r\n\x1a\n", 8));
    png_reader rd = {png->data, png->len, 0};
    cairo_surface_t *s = cairo_image_surface_create_from_png_stream(png_read, &rd);
    ck_assert_int_eq(cairo_surface_status(s), CAIRO_STATUS_SUCCESS);
    if (w > 0) ck_assert_int_eq(cairo_image_surface_get_width(s), w);
    if (h > 0) ck_assert_int_eq(cairo_image_surface_get_height(s), h);
    int W = cairo_image_surface_get_width(s), H = cairo_image_surface_get_height(s),
        stride = cairo_image_surface_get_stride(s);
    const unsigned char *px = cairo_image_surface_get_data(s);
    *drawn = 0, *near = 0;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            uint32_t v;
            memcpy(&v, px + (size_t)y * stride + 4 * (size_t)x, 4);
            double R = ((v >> 16) & 255) / 255.0, G = ((v >> 8) & 255) / 255.0, B = (v & 255) / 255.0;
            if (R < 0.98 || G < 0.98 || B < 0.98) (*drawn)++;
            if (fabs(R - rgb[0]) < 0.08 && fabs(G - rgb[1]) < 0.08 && fabs(B - rgb[2]) < 0.08) (*near)++;
        }
    cairo_surface_destroy(s);
}

START_TEST(test_figures)
{
    static const double bar_blue[3] = {0.20, 0.45, 0.75}, bar_red[3] = {0.80, 0.25, 0.22},
                        series0[3] = {0.122, 0.467, 0.706}, dark[3] = {0.03, 0.19, 0.42};
    double x[50], y[50], y2[50];
    for (int i = 0; i < 50; i++) x[i] = i + 1, y[i] = exp(-0.1 * i), y2[i] = NAN;
    y2[3] = 0.5;   /* one finite point: left in, the NaNs left out */
    fig_series s[2] = {{x, y, 50, "decay \xFF label", true}, {x, y2, 50, "<b>", false}};
    fig_axes ax = {.width = 400, .height = 300, .title = "t", .xlabel = "x", .ylabel = "y", .log_y = true};
    fig_png png;
    size_t drawn, near;
    ck_assert_int_eq(fig_line_plot(&ax, s, 2, &png), TP_OK);
    png_check(&png, 400, 300, &drawn, series0, &near);
    ck_assert_msg(drawn > 2000 && near > 200, "drawn %zu, series colour %zu", drawn, near);
    fig_png_free(&png);

    const char *labels[] = {"\" the\"", "\"\\n\"", "bad \xC0"};
    double v[] = {2.5, -1.0, 0.75};
    fig_axes bx = {.width = 300, .height = 120};
    ck_assert_int_eq(fig_bar_chart(&bx, labels, v, 3, &png), TP_OK);
    png_check(&png, 300, 120, &drawn, bar_blue, &near);
    ck_assert_msg(near > 300, "blue bars: %zu pixels", near);
    png_check(&png, 300, 120, &drawn, bar_red, &near);
    ck_assert_msg(near > 50, "red bar: %zu pixels", near);
    fig_png_free(&png);

    double hv[1000];
    for (int i = 0; i < 1000; i++) hv[i] = (i % 100) / 10.0;
    fig_axes hx = {.width = 320, .height = 200, .log_y = true};
    ck_assert_int_eq(fig_histogram(&hx, hv, 1000, 20, 0, 10, &png), TP_OK);
    png_check(&png, 320, 200, &drawn, bar_blue, &near);
    ck_assert_msg(near > 3000, "histogram bars: %zu pixels", near);
    fig_png_free(&png);
    ck_assert_int_eq(fig_histogram(&hx, hv, 0, 20, 0, 10, &png), TP_OK);   /* nothing: says so */
    png_check(&png, 320, 200, &drawn, bar_blue, &near);
    ck_assert(near == 0 && drawn > 0);
    fig_png_free(&png);
    TP_ASSERT_FAILS(fig_histogram(&hx, hv, 10, 0, 0, 1, &png), TP_ERR_RANGE, "bins");

    float m[2][16] = {{0}};
    for (int i = 0; i < 4; i++) m[0][i * 4 + i] = 1, m[1][i * 4] = 1;
    m[1][15] = NAN;
    fig_heatmap_panel p[2] = {{m[0], 4, 4, "diagonal"}, {m[1], 4, 4, "first column"}};
    fig_axes hm = {.title = "maps"};
    ck_assert_int_eq(fig_heatmaps(&hm, p, 2, 2, 10, 0, 1, &png), TP_OK);
    png_check(&png, 0, 0, &drawn, dark, &near);
    ck_assert_msg(near >= 8 * 100, "dark cells: %zu pixels (8 cells of 10x10)", near);
    fig_png_free(&png);
    fig_axes tiny = {.width = 4, .height = 4};
    TP_ASSERT_FAILS(fig_line_plot(&tiny, s, 1, &png), TP_ERR_RANGE, "size");
}
END_TEST



static void write_text(const char *dir, const char *rel, const char *text)
{
    char path[TP_PATH_MAX];
    ck_assert_int_eq(fs_join(path, sizeof path, dir, rel), TP_OK);
    ck_assert_int_eq(fs_mkdir_parent(path), TP_OK);
    ck_assert_int_eq(tp_test_write_file(path, text, strlen(text)), 0);
}

START_TEST(test_empty_run)
{
    const char *dir = tp_test_tmp_path("empty_run");
    ck_assert_int_eq(fs_mkdir_p(dir), TP_OK);
    ck_assert_int_eq(report_html_write(dir, NULL), TP_OK);
    char path[TP_PATH_MAX];
    ck_assert_int_eq(fs_join(path, sizeof path, dir, "docs/findings/report.html"), TP_OK);
    char *s = tp_test_read_file(path, NULL);
    ck_assert(!strncmp(s, "<!DOCTYPE html>", 15));
    static const char *const ids[] = {"score", "geometry", "sae", "features", "heads", "attention", "circuits",
                                      "verification"};
    for (int i = 0; i < 8; i++) {
        char want[64];
        snprintf(want, sizeof want, "<section id=\"%s\">", ids[i]);
        ck_assert_msg(strstr(s, want), "no %s", want);
    }
    int notrun = 0;
    for (const char *p = s; (p = strstr(p, "class=\"notrun\">not run")); p++) notrun++;
    ck_assert_int_eq(notrun, 8);
    ck_assert(strstr(s, "</html>"));
    free(s);
    /* a result that is there but not JSON: its section says it could not be read */
    write_text(dir, "results/geometric_analysis.json", "{not json");
    ck_assert_int_eq(report_html_write(dir, NULL), TP_OK);
    s = tp_test_read_file(path, NULL);
    ck_assert(strstr(s, "could not read results/geometric_analysis.json"));
    free(s);
}
END_TEST

START_TEST(test_hostile_run)
{
    const char *dir = tp_test_tmp_path("hostile_run");
    write_text(dir, "docs/findings/summary.json",
               "{\"transparency\": {\"score\": 0.625, \"profile\": {\"features\": 0.5, \"<img src=x>\": 0.75}}}");
    write_text(dir, "results/features_catalog.json",
               "{\"saes\": [{\"hook\": \"blocks.1.hook_resid_post\", \"layer\": 1, \"d_in\": 4, \"d_sae\": 2, "
               "\"n_dead\": 1, \"n_dense\": 0, \"features\": [{\"id\": 0, \"fires\": 3, \"density\": 0.25, "
               "\"mean_activation\": 1.5, \"max_activation\": 2.0, \"activation_mass\": 4.5, \"top_domain\": \"code\", "
               "\"domain_profile\": {\"code\": 1.0}, \"top_contexts\": [{\"row\": 5, \"activation\": 2.0, \"token\": "
               "\"</script>\", \"context\": \"if a < b && c\\u0001 \\u27e6</script>\\u27e7 \\\"q\\\"\", \"domain\": \"code\"}], "
               "\"promotes\": [{\"token_id\": 1, \"token\": \"<p>\", \"logit\": 1.25}], \"suppresses\": [{\"token_id\": 2, "
               "\"token\": \"&amp;\", \"logit\": -0.5}]}, {\"id\": 1, \"fires\": 0, \"density\": 0.0, "
               "\"mean_activation\": null, \"max_activation\": null}]}]}");
    write_text(dir, "results/verification.json",
               "{\"features\": [{\"hook\": \"blocks.1.hook_resid_post\", \"items\": [{\"feature\": 0, \"verified\": true, "
               "\"description\": {\"rule\": \"fires on <script>\", \"detection\": {\"f1\": 0.9}, \"simulation\": "
               "{\"corr\": 0.7}}, \"ablation\": {\"delta_ce\": 0.01}, \"steering\": null}]}], \"heads\": [{\"layer\": 1, "
               "\"head\": 3, \"class\": \"previous_token\", \"verified\": false, \"effect\": {\"mean\": 0.2, "
               "\"ci95_low\": -0.1, \"ci95_high\": 0.5, \"n\": 32}}], \"circuits\": [{\"task\": \"brackets\", "
               "\"verified\": true, \"faithfulness\": 0.93, \"completeness\": 0.8}], \"summary\": {\"verified\": 2, "
               "\"claims\": 3}}");
    const char *out = tp_test_tmp_path("hostile.html");
    ck_assert_int_eq(report_html_write(dir, out), TP_OK);
    char *s = tp_test_read_file(out, NULL);
    ck_assert(strstr(s, "<span class=\"score\">0.625</span>"));
    ck_assert(!strstr(s, "<img src=x>") && strstr(s, "&lt;img src=x&gt;"));
    /* the only </script> is the page's own; the token and context are escaped */
    char *first = strstr(s, "</script>");
    ck_assert(first && !strstr(first + 1, "</script>") && strstr(first, "</body>"));
    ck_assert(strstr(s, "if a &lt; b &amp;&amp; c\xE2\x90\x81 <mark>&lt;/script&gt;</mark> &quot;q&quot;"));
    ck_assert(!strstr(s, "<p>\""));
    ck_assert(strstr(s, "fires on &lt;script&gt;"));
    ck_assert(strstr(s, "previous_token") && strstr(s, "brackets") && strstr(s, "<span class=\"ok\">verified</span>"));
    ck_assert(strstr(s, "activation histogram: not available"));   /* no store, no SAE export */
    /* images are data: URIs only */
    for (const char *p = s; (p = strstr(p, "<img")); p++) {
        const char *src = strstr(p, "src=\"");
        ck_assert(src && !strncmp(src + 5, "data:image/png;base64,", 22));
    }
    ck_assert(!strstr(s, "src=\"http") && !strstr(s, "href=\"http"));
    free(s);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("report");
    TCase *tc = tcase_create("html");
    tcase_add_test(tc, test_base64_rfc4648);
    tcase_add_test(tc, test_escape);
    tcase_add_test(tc, test_figures);
    tcase_add_test(tc, test_empty_run);
    tcase_add_test(tc, test_hostile_run);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return tp_test_run_suite(s);
}
