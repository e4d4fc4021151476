/* html.h — building an HTML page in memory: a growing buffer, escaped text, base64.
 *
 * Every text that comes from the model or the corpus (tokens, contexts, prompts,
 * names in the result files) goes through html_text: valid UTF-8 is kept, each byte
 * of an invalid sequence (bad lead byte, missing continuation, overlong form,
 * surrogate, above U+10FFFF) becomes U+FFFD, `& < > " '` become entities, and the
 * C0 control characters other than tab and newline (and DEL) become their visible
 * Control Pictures (U+2400 + c, U+2421), so nothing from a result can open a tag,
 * end an attribute or break the page's encoding.
 *
 * Errors are sticky: a failed allocation sets buf->err (with tp_err's message) and
 * every later append is a no-op, so a page is built without a check per call and
 * checked once (html_status) at the end.
 */
#ifndef TP_REPORT_HTML_H
#define TP_REPORT_HTML_H

#include "core/error.h"

#include <stddef.h>

typedef struct {
    char *data;     /* NUL-terminated while err == TP_OK */
    size_t len, cap;
    tp_status err;
} html_buf;

void html_init(html_buf *b);
void html_free(html_buf *b);
tp_status html_status(const html_buf *b);

/* Markup written by us: appended as is. */
void html_raw(html_buf *b, const char *s);
void html_rawn(html_buf *b, const char *s, size_t n);
void html_printf(html_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Text from the results: escaped (above). NULL appends nothing. */
void html_text(html_buf *b, const char *s);
void html_textn(html_buf *b, const char *s, size_t n);
/* The base64 (RFC 4648, padded) of n bytes. */
void html_base64(html_buf *b, const unsigned char *data, size_t n);

/* base64 of in[0..n) into out, which holds html_base64_len(n) + 1 bytes; returns
 * the length written (without the NUL). */
size_t html_base64_encode(const unsigned char *in, size_t n, char *out);
#define html_base64_len(n) (4 * (((n) + 2) / 3))

/* s[0..n) as valid UTF-8 with the same replacements as html_text but no entities
 * (text for figure labels): written into out (size cap, always NUL-terminated, cut
 * at a character boundary). Returns the bytes written. */
size_t html_clean_utf8(const char *s, size_t n, char *out, size_t cap);

#endif
