/* fuzz_tokenizer — tokenizer.json (tokenizer_load); a file that loads also encodes
 * and decodes a short fixed text (its vocabulary, merges and regexes in use) and
 * decodes every id up to the vocabulary size. */
#include "fuzz.h"
#include "model/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tp_tokenizer *tok = NULL;
    if (tokenizer_load(fuzz_write_file("tokenizer.json", data, size), &tok) == TP_OK) {
        static const char text[] = "Hello, world! 12 \xe2\x82\xac\xf0\x9f\x98\x80 <|endoftext|>\n\tx";
        int32_t *ids = NULL;
        size_t n = 0;
        char *back = NULL;
        size_t len = 0;
        if (tokenizer_encode(tok, text, sizeof text - 1, TOKENIZER_ADD_SPECIAL, &ids, &n) == TP_OK &&
            tokenizer_decode(tok, ids, n, 0, &back, &len) == TP_OK)
            free(back);
        free(ids);
        int32_t v = tokenizer_vocab_size(tok);
        for (int32_t id = -1; id <= v && id < 4096; id++) {
            const char *s = tokenizer_id_to_token(tok, id);
            if (s) (void)tokenizer_token_to_id(tok, s);
            (void)tokenizer_is_special(tok, id);
            back = NULL;
            if (tokenizer_decode(tok, &id, 1, TOKENIZER_SKIP_SPECIAL, &back, &len) == TP_OK) free(back);
        }
        tokenizer_free(tok);
    }
    tp_err_clear();
    return 0;
}
