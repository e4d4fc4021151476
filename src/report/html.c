/* html.c — the page buffer, escaping and base64 (html.h). */
#include "report/html.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void html_init(html_buf *b) { memset(b, 0, sizeof *b); }

void html_free(html_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

tp_status html_status(const html_buf *b) { return b->err; }

static int reserve(html_buf *b, size_t more)
{
    if (b->err != TP_OK) return 0;
    if (b->len + more + 1 <= b->cap) return 1;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more + 1) cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) {
        b->err = tp_err(TP_ERR_NOMEM, "report: out of memory for a page of %zu bytes", cap);
        return 0;
    }
    b->data = p, b->cap = cap;
    return 1;
}

void html_rawn(html_buf *b, const char *s, size_t n)
{
    if (!n || !reserve(b, n)) return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void html_raw(html_buf *b, const char *s) { if (s) html_rawn(b, s, strlen(s)); }

void html_printf(html_buf *b, const char *fmt, ...)
{
    if (b->err != TP_OK) return;
    va_list ap;
    va_start(ap, fmt);
    char small[512];
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof small) { html_rawn(b, small, (size_t)n); return; }
    if (!reserve(b, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 when it is not one
 * (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF). */
static size_t utf8_valid(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    uint32_t cp, min;
    if (c >= 0xC2 && c <= 0xDF) len = 2, cp = c & 0x1F, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, cp = c & 0x0F, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, cp = c & 0x07, min = 0x10000;
    else return 0;
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

static const char replacement[] = "\xEF\xBF\xBD";   /* U+FFFD */

/* One step of cleaning: the replacement text of the byte(s) at s into out (≤ 4
 * bytes + NUL), and how many input bytes it consumed. entities: HTML escapes too. */
static size_t clean_step(const unsigned char *s, size_t n, int entities, char out[8], size_t *olen)
{
    size_t len = utf8_valid(s, n);
    if (!len) { memcpy(out, replacement, 3), *olen = 3; return 1; }
    unsigned c = s[0];
    if (len == 1) {
        if (c < 0x20 && c != '\t' && c != '\n') {   /* U+2400 + c: E2 90 80+c */
            out[0] = '\xE2', out[1] = '\x90', out[2] = (char)(0x80 + c), *olen = 3;
            return 1;
        }
        if (c == 0x7F) { memcpy(out, "\xE2\x90\xA1", 3), *olen = 3; return 1; }
        if (entities) {
            const char *e = c == '&' ? "&amp;" : c == '<' ? "&lt;" : c == '>' ? "&gt;" : c == '"' ? "&quot;"
                          : c == '\'' ? "&#39;" : NULL;
            if (e) { *olen = strlen(e), memcpy(out, e, *olen); return 1; }
        }
    }
    memcpy(out, s, len), *olen = len;
    return len;
}

void html_textn(html_buf *b, const char *s, size_t n)
{
    if (!s) return;
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n && b->err == TP_OK) {
        size_t run = i;   /* plain ASCII runs in one copy */
        while (run < n && u[run] >= 0x20 && u[run] < 0x7F && !strchr("&<>\"'", u[run])) run++;
        if (run > i) { html_rawn(b, s + i, run - i); i = run; continue; }
        char out[8];
        size_t olen;
        i += clean_step(u + i, n - i, 1, out, &olen);
        html_rawn(b, out, olen);
    }
}

void html_text(html_buf *b, const char *s) { if (s) html_textn(b, s, strlen(s)); }

size_t html_clean_utf8(const char *s, size_t n, char *out, size_t cap)
{
    size_t w = 0;
    if (!cap) return 0;
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; s && i < n;) {
        char piece[8];
        size_t plen;
        size_t used = clean_step(u + i, n - i, 0, piece, &plen);
        if (w + plen + 1 > cap) break;
        memcpy(out + w, piece, plen), w += plen, i += used;
    }
    out[w] = '\0';
    return w;
}

size_t html_base64_encode(const unsigned char *in, size_t n, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t w = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[w++] = tab[v >> 18], out[w++] = tab[(v >> 12) & 63], out[w++] = tab[(v >> 6) & 63], out[w++] = tab[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
        out[w++] = tab[v >> 18], out[w++] = tab[(v >> 12) & 63];
        out[w++] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        out[w++] = '=';
    }
    out[w] = '\0';
    return w;
}

void html_base64(html_buf *b, const unsigned char *data, size_t n)
{
    if (!reserve(b, html_base64_len(n))) return;
    b->len += html_base64_encode(data, n, b->data + b->len);
}
