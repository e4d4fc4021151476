/* tokenizer_bpe.c — the BPE merge loop of one pre-tokenized piece, its hash tables
 * and a cache of pieces already merged.
 *
 * The loop is `tokenizers`' Word::merge_all: a min-heap of candidate merges ordered by
 * (rank, position), each popped entry checked against the current symbols (stale ones
 * are skipped), neighbours pushed after each merge: O(n log n) per piece, not the
 * O(n^2) rescan of the textbook loop. Pieces repeat a lot in text (" the", "(", "\n"),
 * so the ids of each piece up to TK_CACHE_MAX_PIECE bytes are cached; the cache is
 * cleared when it grows past TK_CACHE_MAX_ENTRIES.
 */
#include "model/tokenizer_internal.h"

#include <stdlib.h>
#include <string.h>

#define TK_CACHE_MAX_PIECE 64
#define TK_CACHE_MAX_ENTRIES (1u << 18)

/* ---- hashing ---------------------------------------------------------------------- */

static inline uint64_t tk_hash(const uint8_t *p, size_t n)
{
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (uint64_t)n;
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        h = (h ^ v) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
        p += 8, n -= 8;
    }
    uint64_t v = 0;
    memcpy(&v, p, n);
    h = (h ^ v) * 0xc4ceb9fe1a85ec53ull;
    return h ^ (h >> 29);
}

static size_t pow2_at_least(size_t n)
{
    size_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

tp_status tk_strmap_init(tk_strmap *m, size_t expected)
{
    memset(m, 0, sizeof *m);
    m->cap = pow2_at_least(expected * 2 + 1);
    m->slots = tp_malloc(m->cap * sizeof *m->slots);
    if (!m->slots) return TP_ERR_NOMEM;
    for (size_t i = 0; i < m->cap; i++) m->slots[i].val = -1;
    return TP_OK;
}

void tk_strmap_free(tk_strmap *m)
{
    free(m->slots);
    free(m->blob);
    memset(m, 0, sizeof *m);
}

void tk_strmap_clear(tk_strmap *m)
{
    for (size_t i = 0; i < m->cap; i++) m->slots[i].val = -1;
    m->count = 0;
    m->blob_len = 0;
}

static tp_status strmap_grow(tk_strmap *m)
{
    size_t cap = m->cap * 2;
    tk_slot *s = tp_malloc(cap * sizeof *s);
    if (!s) return TP_ERR_NOMEM;
    for (size_t i = 0; i < cap; i++) s[i].val = -1;
    for (size_t i = 0; i < m->cap; i++) {
        if (m->slots[i].val < 0) continue;
        size_t j = m->slots[i].hash & (cap - 1);
        while (s[j].val >= 0) j = (j + 1) & (cap - 1);
        s[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = s;
    m->cap = cap;
    return TP_OK;
}

tp_status tk_strmap_put(tk_strmap *m, const void *key, size_t len, int32_t val)
{
    if (len > UINT32_MAX / 2 || m->blob_len + len > UINT32_MAX)
        return tp_err(TP_ERR_RANGE, "token of %zu bytes is too long", len);
    uint32_t h = (uint32_t)tk_hash(key, len);
    size_t j = h & (m->cap - 1);
    while (m->slots[j].val >= 0) {
        const tk_slot *s = &m->slots[j];
        if (s->hash == h && s->len == len && !memcmp(m->blob + s->off, key, len)) {
            m->slots[j].val = val;
            return TP_OK;
        }
        j = (j + 1) & (m->cap - 1);
    }
    /* !m->blob: an empty first key ("" in a vocabulary) still gets a blob, so no
     * slot ever points into NULL (found by tests/fuzz/fuzz_tokenizer). */
    if (m->blob_len + len > m->blob_cap || !m->blob) {
        size_t cap = m->blob_cap ? m->blob_cap * 2 : 4096;
        while (cap < m->blob_len + len) cap *= 2;
        uint8_t *b = realloc(m->blob, cap);
        if (!b) return tp_err(TP_ERR_NOMEM, "out of memory growing a token table to %zu bytes", cap);
        m->blob = b, m->blob_cap = cap;
    }
    memcpy(m->blob + m->blob_len, key, len);
    m->slots[j] = (tk_slot){h, (uint32_t)m->blob_len, (uint32_t)len, val};
    m->blob_len += len;
    if (++m->count * 2 > m->cap) return strmap_grow(m);
    return TP_OK;
}

int32_t tk_strmap_get(const tk_strmap *m, const void *key, size_t len)
{
    if (!m->slots) return -1;
    uint32_t h = (uint32_t)tk_hash(key, len);
    size_t j = h & (m->cap - 1);
    for (;;) {
        const tk_slot *s = &m->slots[j];
        if (s->val < 0) return -1;
        if (s->hash == h && s->len == len && !memcmp(m->blob + s->off, key, len)) return s->val;
        j = (j + 1) & (m->cap - 1);
    }
}

static inline size_t pair_index(uint64_t key, size_t cap)
{
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & (cap - 1);
}

tp_status tk_pairmap_init(tk_pairmap *m, size_t expected)
{
    m->cap = pow2_at_least(expected * 2 + 1);
    m->count = 0;
    m->slots = tp_malloc(m->cap * sizeof *m->slots);
    if (!m->slots) return TP_ERR_NOMEM;
    for (size_t i = 0; i < m->cap; i++) m->slots[i].key = UINT64_MAX;
    return TP_OK;
}

void tk_pairmap_free(tk_pairmap *m)
{
    free(m->slots);
    memset(m, 0, sizeof *m);
}

/* The table is sized for every merge up front (tk_pairmap_init), so it never grows. */
void tk_pairmap_put(tk_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t id)
{
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t j = pair_index(key, m->cap);
    while (m->slots[j].key != UINT64_MAX && m->slots[j].key != key) j = (j + 1) & (m->cap - 1);
    if (m->slots[j].key == UINT64_MAX) m->count++;
    /* A pair listed twice keeps its last rank, as tokenizers' HashMap collect does. */
    m->slots[j] = (tk_pair_slot){key, rank, id};
}

const tk_pair_slot *tk_pairmap_get(const tk_pairmap *m, int32_t a, int32_t b)
{
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t j = pair_index(key, m->cap);
    for (;;) {
        const tk_pair_slot *s = &m->slots[j];
        if (s->key == key) return s;
        if (s->key == UINT64_MAX) return NULL;
        j = (j + 1) & (m->cap - 1);
    }
}

tp_status tk_ids_push(tk_ids *a, const int32_t *ids, size_t n)
{
    if (n == 0) return TP_OK;
    if (a->n + n > a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 256;
        while (cap < a->n + n) cap *= 2;
        int32_t *v = realloc(a->v, cap * sizeof *v);
        if (!v) return tp_err(TP_ERR_NOMEM, "out of memory growing a token list to %zu ids", cap);
        a->v = v, a->cap = cap;
    }
    memcpy(a->v + a->n, ids, n * sizeof *ids);
    a->n += n;
    return TP_OK;
}

/* ---- merge loop --------------------------------------------------------------------- */

static inline bool merge_less(const tk_merge *x, const tk_merge *y)
{
    return x->rank < y->rank || (x->rank == y->rank && x->pos < y->pos);
}

static void heap_push(tk_merge *h, size_t *n, tk_merge m)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!merge_less(&m, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = m;
}

static tk_merge heap_pop(tk_merge *h, size_t *n)
{
    tk_merge top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && merge_less(&h[c + 1], &h[c])) c++;
        if (!merge_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = last;
    return top;
}

static tp_status ensure_work(tp_tokenizer *tok, size_t n)
{
    if (n <= tok->sym_cap) return TP_OK;
    size_t cap = tok->sym_cap ? tok->sym_cap : 64;
    while (cap < n) cap *= 2;
    tk_symbol *s = realloc(tok->sym, cap * sizeof *s);
    if (!s) return tp_err(TP_ERR_NOMEM, "out of memory for a word of %zu bytes", n);
    tok->sym = s;
    /* Each merge pushes at most two entries: n initial pairs + 2 per merge. */
    tk_merge *h = realloc(tok->heap, 3 * cap * sizeof *h);
    if (!h) return tp_err(TP_ERR_NOMEM, "out of memory for a word of %zu bytes", n);
    tok->heap = h;
    tok->sym_cap = cap;
    tok->heap_cap = 3 * cap;
    return TP_OK;
}

static tp_status merge_word(tp_tokenizer *tok, const uint8_t *piece, size_t len, tk_ids *out)
{
    TP_CHECK(ensure_work(tok, len));
    tk_symbol *sym = tok->sym;
    int32_t n = 0;
    for (size_t i = 0; i < len; i++) {
        int32_t id = tok->byte_id[piece[i]];
        if (id < 0) {
            /* A byte without a vocabulary character: unk if the model has one (fused
             * with a previous unk when fuse_unk), else dropped, as tokenizers does. */
            if (tok->unk_id < 0) continue;
            if (tok->fuse_unk && n > 0 && sym[n - 1].id == tok->unk_id) {
                sym[n - 1].len++;
                continue;
            }
            id = tok->unk_id;
        }
        sym[n] = (tk_symbol){id, n - 1, n + 1, 1};
        n++;
    }
    if (n == 0) return TP_OK;
    sym[n - 1].next = -1;

    tk_merge *heap = tok->heap;
    size_t nh = 0;
    for (int32_t i = 0; i + 1 < n; i++) {
        const tk_pair_slot *m = tk_pairmap_get(&tok->merges, sym[i].id, sym[i + 1].id);
        if (m) heap_push(heap, &nh, (tk_merge){m->rank, i, m->id});
    }
    while (nh > 0) {
        tk_merge top = heap_pop(heap, &nh);
        tk_symbol *cur = &sym[top.pos];
        if (cur->len == 0 || cur->next < 0) continue;
        int32_t nx = cur->next;
        const tk_pair_slot *m = tk_pairmap_get(&tok->merges, cur->id, sym[nx].id);
        if (!m || m->id != top.id) continue;   /* stale entry */
        cur->id = top.id;
        cur->len += sym[nx].len;
        cur->next = sym[nx].next;
        sym[nx].len = 0;
        if (cur->next >= 0) sym[cur->next].prev = top.pos;
        if (cur->prev >= 0) {
            m = tk_pairmap_get(&tok->merges, sym[cur->prev].id, cur->id);
            if (m) heap_push(heap, &nh, (tk_merge){m->rank, cur->prev, m->id});
        }
        if (cur->next >= 0) {
            m = tk_pairmap_get(&tok->merges, cur->id, sym[cur->next].id);
            if (m) heap_push(heap, &nh, (tk_merge){m->rank, top.pos, m->id});
        }
    }
    for (int32_t i = 0; i >= 0; i = sym[i].next) TP_CHECK(tk_ids_push(out, &sym[i].id, 1));
    return TP_OK;
}

tp_status tk_bpe_piece(tp_tokenizer *tok, const uint8_t *piece, size_t len, tk_ids *out)
{
    if (len == 0) return TP_OK;
    if (tok->ignore_merges) {
        int32_t id = tk_strmap_get(&tok->vocab_bytes, piece, len);
        if (id >= 0) return tk_ids_push(out, &id, 1);
    }
    if (len == 1 && tok->byte_id[piece[0]] >= 0) return tk_ids_push(out, &tok->byte_id[piece[0]], 1);
    if (len > TK_CACHE_MAX_PIECE) return merge_word(tok, piece, len, out);

    int32_t at = tk_strmap_get(&tok->cache, piece, len);
    if (at >= 0) return tk_ids_push(out, tok->cache_ids.v + at + 1, (size_t)tok->cache_ids.v[at]);
    size_t before = out->n;
    TP_CHECK(merge_word(tok, piece, len, out));
    if (tok->cache.count >= TK_CACHE_MAX_ENTRIES) {
        tk_strmap_clear(&tok->cache);
        tok->cache_ids.n = 0;
    }
    int32_t k = (int32_t)(out->n - before);
    int32_t off = (int32_t)tok->cache_ids.n;
    TP_CHECK(tk_ids_push(&tok->cache_ids, &k, 1));
    /* k = 0: a piece that gave no id (no unk_token); out->v may still be NULL (found by
     * tests/fuzz/fuzz_tokenizer). */
    if (k > 0) TP_CHECK(tk_ids_push(&tok->cache_ids, out->v + before, (size_t)k));
    return tk_strmap_put(&tok->cache, piece, len, off);
}
