#include "data/sequences.h"

#include "core/log.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    tp_sequences *s;
    size_t cap_tok, cap_seq;
} builder;

static tp_status push_tokens(builder *b, const int32_t *ids, size_t n)
{
    tp_sequences *s = b->s;
    if (s->n_tokens + n > b->cap_tok) {
        size_t cap = b->cap_tok ? b->cap_tok : 4096;
        while (cap < s->n_tokens + n) cap *= 2;
        int32_t *t = realloc(s->tokens, cap * sizeof *t);
        if (!t) return tp_err(TP_ERR_NOMEM, "out of memory for %zu tokens", cap);
        s->tokens = t, b->cap_tok = cap;
    }
    memcpy(s->tokens + s->n_tokens, ids, n * sizeof *ids);
    s->n_tokens += n;
    return TP_OK;
}

/* Closes a sequence ending at the current token count. */
static tp_status push_seq(builder *b, size_t doc)
{
    tp_sequences *s = b->s;
    if (s->n_seqs + 2 > b->cap_seq) {
        size_t cap = b->cap_seq ? 2 * b->cap_seq : 1024;
        size_t *st = realloc(s->seq_start, cap * sizeof *st);
        if (!st) return tp_err(TP_ERR_NOMEM, "out of memory");
        s->seq_start = st;
        size_t *sd = realloc(s->seq_doc, cap * sizeof *sd);
        if (!sd) return tp_err(TP_ERR_NOMEM, "out of memory");
        s->seq_doc = sd;
        b->cap_seq = cap;
    }
    s->seq_doc[s->n_seqs] = doc;
    s->n_seqs++;
    s->seq_start[s->n_seqs] = s->n_tokens;
    return TP_OK;
}

/* Bytes of the text the tokenizer sees: all of it, or SEQ_DOC_BYTES_PER_TOKEN per
 * allowed token, moved back to the start of a UTF-8 character. */
static size_t doc_cut_bytes(const char *text, size_t len, size_t max_doc_tokens)
{
    if (!max_doc_tokens || len / SEQ_DOC_BYTES_PER_TOKEN < max_doc_tokens) return len;
    size_t cut = max_doc_tokens * SEQ_DOC_BYTES_PER_TOKEN;
    while (cut > 0 && ((unsigned char)text[cut] & 0xC0) == 0x80) cut--;
    return cut;
}

tp_status sequences_build(const corpus *c, const size_t *docs, size_t ndocs, tp_tokenizer *tok,
                          int seq_len, tp_packing packing, int32_t eos_id, size_t max_doc_tokens,
                          tp_sequences *out)
{
    memset(out, 0, sizeof *out);
    if (seq_len < 2) return tp_err(TP_ERR_RANGE, "sequence length %d must be >= 2", seq_len);
    builder b = {out, 0, 0};
    out->seq_start = tp_calloc(1, sizeof *out->seq_start);
    out->doc_start = tp_calloc(ndocs + 1, sizeof *out->doc_start);
    if (!out->seq_start || !out->doc_start) { sequences_free(out); return TP_ERR_NOMEM; }
    out->n_docs = ndocs;
    tp_status st = TP_OK;
    size_t pending = 0;            /* pack: tokens in the open sequence */
    size_t pending_doc = 0;
    for (size_t i = 0; i < ndocs && st == TP_OK; i++) {
        out->doc_start[i] = out->n_tokens;
        corpus_doc d;
        st = corpus_read(c, docs[i], &d);
        if (st != TP_OK) break;
        int32_t *ids = NULL;
        size_t n = 0;
        size_t doc_len = d.len, len = doc_cut_bytes(d.text, d.len, max_doc_tokens);
        st = tokenizer_encode(tok, d.text, len, 0, &ids, &n);
        corpus_doc_free(&d);
        if (st != TP_OK) {
            char where[4200];
            tp_err_prefix("%s", corpus_where(c, docs[i], where, sizeof where));
            break;
        }
        if (max_doc_tokens && (len < doc_len || n > max_doc_tokens)) {
            char where[4200];
            tp_log_info("data: document %s (%zu bytes) cut to its first %zu tokens (data.max_doc_tokens = %zu)",
                        corpus_where(c, docs[i], where, sizeof where), doc_len,
                        n < max_doc_tokens ? n : max_doc_tokens, max_doc_tokens);
            if (n > max_doc_tokens) n = max_doc_tokens;
            out->n_cut++;
        }
        if (packing == TP_PACK_SPLIT) {
            for (size_t off = 0; off < n && st == TP_OK; off += (size_t)seq_len) {
                size_t k = n - off < (size_t)seq_len ? n - off : (size_t)seq_len;
                st = push_tokens(&b, ids + off, k);
                if (st == TP_OK) st = push_seq(&b, docs[i]);
            }
        } else {
            /* Document then EOS, streamed into fixed-length sequences. */
            for (size_t k = 0; k <= n && st == TP_OK; k++) {
                if (pending == 0) pending_doc = docs[i];
                int32_t t = k < n ? ids[k] : eos_id;
                st = push_tokens(&b, &t, 1);
                if (st == TP_OK && ++pending == (size_t)seq_len) {
                    st = push_seq(&b, pending_doc);
                    pending = 0;
                }
            }
        }
        free(ids);
    }
    if (st == TP_OK && pending) out->n_tokens -= pending;   /* drop the short tail */
    for (size_t i = 0; st == TP_OK && i <= ndocs; i++)
        if (i == ndocs || out->doc_start[i] > out->n_tokens) out->doc_start[i] = out->n_tokens;
    if (st != TP_OK) sequences_free(out);
    return st;
}

void sequences_free(tp_sequences *s)
{
    free(s->tokens);
    free(s->seq_start);
    free(s->seq_doc);
    free(s->doc_start);
    memset(s, 0, sizeof *s);
}

tp_status sequences_append(tp_sequences *s, const int32_t *ids, size_t n, size_t doc)
{
    int32_t *t = realloc(s->tokens, (s->n_tokens + n + 1) * sizeof *t);
    size_t *st = realloc(s->seq_start, (s->n_seqs + 2) * sizeof *st);
    size_t *sd = t && st ? realloc(s->seq_doc, (s->n_seqs + 1) * sizeof *sd) : NULL;
    if (t) s->tokens = t;
    if (st) s->seq_start = st;
    if (sd) s->seq_doc = sd;
    if (!t || !st || !sd) return tp_err(TP_ERR_NOMEM, "out of memory appending a sequence of %zu tokens", n);
    if (s->n_seqs == 0) s->seq_start[0] = 0;
    memcpy(s->tokens + s->n_tokens, ids, n * sizeof *ids);
    s->n_tokens += n;
    s->seq_doc[s->n_seqs] = doc;
    s->seq_start[++s->n_seqs] = s->n_tokens;
    return TP_OK;
}
