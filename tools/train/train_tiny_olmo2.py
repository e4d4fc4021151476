#!/usr/bin/env python3
"""Train the bundled model: a small OLMo-2 (Olmo2ForCausalLM) on data/corpus.

Run from the repository root with the reference venv (tools/reference/setup_venv.sh):

    /opt/transpolmo-ref/bin/python tools/train/train_tiny_olmo2.py [--minutes 70] [--out models/olmo2-tiny]

Steps, all seeded:
  1. a byte-level BPE tokenizer trained by `tokenizers` on data/corpus/train.jsonl with
     OLMo-2's dolma2 structure (cl100k split regex, ByteLevel without its own regex,
     ByteLevel decoder), `<|endoftext|>` and `<|pad|>` as special tokens;
  2. the corpus tokenized, documents joined by <|endoftext|>, cut into sequences;
  3. an Olmo2ForCausalLM trained with AdamW (linear warm-up, cosine decay) for a fixed
     number of steps sized from a short timing run to fit --minutes on this CPU;
  4. held-out loss/perplexity against a unigram baseline, greedy samples, and
     models/olmo2-tiny/{config.json, model.safetensors, tokenizer.json, MODEL_CARD.md}.
"""
import argparse
import json
import math
import os
import random
import sys
import time

os.environ["CUDA_VISIBLE_DEVICES"] = os.environ.get("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
import tokenizers  # noqa: E402
from tokenizers import Tokenizer, Regex, decoders, models, pre_tokenizers, trainers  # noqa: E402
from transformers import Olmo2Config, Olmo2ForCausalLM  # noqa: E402

# The cl100k_base split pattern that dolma2 (OLMo-2's tokenizer) uses.
CL100K_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIALS = ["<|endoftext|>", "<|pad|>"]


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def train_tokenizer(texts, vocab_size, seed):
    tok = Tokenizer(models.BPE(ignore_merges=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(CL100K_PATTERN), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def pack(docs_ids, eos, seq_len):
    flat = []
    for ids in docs_ids:
        flat.extend(ids)
        flat.append(eos)
    n = len(flat) // seq_len
    return torch.tensor(flat[: n * seq_len], dtype=torch.long).view(n, seq_len)


@torch.no_grad()
def evaluate(model, data, batch):
    model.eval()
    tot, cnt = 0.0, 0
    for i in range(0, len(data), batch):
        x = data[i:i + batch]
        out = model(input_ids=x, labels=x)
        n = x.numel() - x.shape[0]
        tot += out.loss.item() * n
        cnt += n
    model.train()
    return tot / cnt


def unigram_loss(train, held, vocab):
    counts = np.bincount(train.flatten().numpy(), minlength=vocab).astype(np.float64) + 1.0
    logp = np.log(counts / counts.sum())
    y = held[:, 1:].flatten().numpy()
    return float(-logp[y].mean())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="data/corpus")
    ap.add_argument("--out", default="models/olmo2-tiny")
    ap.add_argument("--minutes", type=float, default=70.0, help="training time budget on this CPU")
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--ffn", type=int, default=768)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--steps", type=int, default=0, help="fixed step count (0: from --minutes)")
    args = ap.parse_args()

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    t_start = time.time()

    train_docs = [d["text"] for d in read_jsonl(os.path.join(args.corpus, "train.jsonl"))]
    held_docs = [d["text"] for d in read_jsonl(os.path.join(args.corpus, "heldout.jsonl"))]
    print(f"corpus: {len(train_docs)} train / {len(held_docs)} held-out documents", flush=True)

    tok = train_tokenizer(train_docs, args.vocab, args.seed)
    eos = tok.token_to_id("<|endoftext|>")
    pad = tok.token_to_id("<|pad|>")
    vocab = tok.get_vocab_size()
    train = pack([e.ids for e in tok.encode_batch(train_docs)], eos, args.seq)
    held = pack([e.ids for e in tok.encode_batch(held_docs)], eos, args.seq)
    print(f"tokenizer: vocab {vocab}; {train.numel()} train tokens, {held.numel()} held-out tokens", flush=True)

    cfg = Olmo2Config(vocab_size=vocab, hidden_size=args.hidden, intermediate_size=args.ffn,
                      num_hidden_layers=args.layers, num_attention_heads=args.heads,
                      num_key_value_heads=args.kv_heads, max_position_embeddings=1024,
                      rope_theta=10000.0, rms_norm_eps=1e-6, tie_word_embeddings=False,
                      bos_token_id=None, eos_token_id=eos, pad_token_id=pad, initializer_range=0.02)
    model = Olmo2ForCausalLM(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.2f} M parameters", flush=True)

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    gen = torch.Generator().manual_seed(args.seed)

    def batch_at():
        idx = torch.randint(0, len(train), (args.batch,), generator=gen)
        return train[idx]

    def step(lr):
        for g in opt.param_groups:
            g["lr"] = lr
        x = batch_at()
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    # Size the run from a short timing of real steps (they count as training).
    log = []
    warm = 5
    t0 = time.time()
    for i in range(warm):
        log.append((i, step(args.lr * (i + 1) / 100)))
    per_step = (time.time() - t0) / warm
    total = args.steps or max(warm + 10, int(args.minutes * 60 / per_step))
    warmup = max(10, total // 50)
    print(f"{per_step:.2f} s/step -> {total} steps ({total * per_step / 60:.0f} min), "
          f"{total * args.batch * args.seq / 1e6:.1f} M tokens", flush=True)
    for i in range(warm, total):
        lr = args.lr * min(1.0, (i + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * i / total)))
        loss = step(lr)
        log.append((i, loss))
        if i % 50 == 0 or i == total - 1:
            el = time.time() - t0
            print(f"step {i}/{total} loss {loss:.3f} lr {lr:.2e} {el / 60:.1f} min, "
                  f"ETA {(total - i) * el / (i + 1) / 60:.1f} min", flush=True)

    held_loss = evaluate(model, held, 32)
    uni = unigram_loss(train, held, vocab)
    print(f"held-out loss {held_loss:.4f} (ppl {math.exp(held_loss):.1f}); unigram {uni:.4f} "
          f"(ppl {math.exp(uni):.1f})", flush=True)

    prompts = ["In the beginning", "def __init__(self", "The command", "A man who", "NAME\n"]
    samples = []
    model.eval()
    for p in prompts:
        ids = torch.tensor([tok.encode(p).ids])
        out = model.generate(ids, max_new_tokens=40, do_sample=False, pad_token_id=pad)
        samples.append((p, tok.decode(out[0].tolist())))

    os.makedirs(args.out, exist_ok=True)
    model.save_pretrained(args.out, safe_serialization=True)
    tok.save(os.path.join(args.out, "tokenizer.json"))
    with open(os.path.join(args.out, "training_log.json"), "w") as f:
        json.dump({"loss": [[i, round(l, 4)] for i, l in log], "held_out_loss": held_loss,
                   "unigram_loss": uni}, f)
    write_card(args, cfg, n_params, total, per_step, log, held_loss, uni, samples,
               train.numel(), held.numel(), time.time() - t_start)


def write_card(args, cfg, n_params, total, per_step, log, held_loss, uni, samples, ntrain, nheld, secs):
    def avg(a, b):
        xs = [l for i, l in log if a <= i < b]
        return sum(xs) / max(1, len(xs))
    marks = sorted(set([0, 50, 100, 200, 500, 1000, 2000, total // 2, total - 50]))
    rows = "\n".join(f"| {m} | {avg(m, m + 50):.3f} |" for m in marks if 0 <= m < total)
    sample_md = "\n\n".join(f"**Prompt** `{p!r}`\n\n```\n{s}\n```" for p, s in samples)
    card = f"""# olmo2-tiny — the model bundled with TranspOLMo

A small `Olmo2ForCausalLM` trained from scratch on the bundled corpus (`data/corpus`,
see `data/corpus/SOURCES.md`) so that a new user sees findings about a model that
actually learned something. Made by `tools/train/train_tiny_olmo2.py`; everything is
seeded (seed {args.seed}).

## Architecture
| | |
|---|---|
| layers | {cfg.num_hidden_layers} |
| hidden size | {cfg.hidden_size} |
| attention heads / kv heads | {cfg.num_attention_heads} / {cfg.num_key_value_heads} (head dim {cfg.hidden_size // cfg.num_attention_heads}) |
| MLP width | {cfg.intermediate_size} (SwiGLU) |
| vocabulary | {cfg.vocab_size} (byte-level BPE, dolma2 pre-tokenizer structure) |
| RoPE θ | {cfg.rope_parameters['rope_theta'] if hasattr(cfg, 'rope_parameters') and cfg.rope_parameters else 10000.0} |
| parameters | {n_params / 1e6:.2f} M (untied embeddings) |
| stored as | F32 safetensors |

## Training
| | |
|---|---|
| data | data/corpus/train.jsonl: {ntrain / 1e6:.2f} M tokens (documents joined by `<|endoftext|>`, sequences of {args.seq}) |
| steps | {total} × batch {args.batch} × {args.seq} tokens = {total * args.batch * args.seq / 1e6:.1f} M tokens |
| optimiser | AdamW (β 0.9/0.95, weight decay 0.1 on matrices), peak LR {args.lr}, linear warm-up, cosine decay to 10 % |
| hardware | CPU, {args.threads} threads, {per_step:.2f} s/step; whole script {secs / 60:.0f} min |
| software | torch {torch.__version__}, transformers {transformers.__version__}, tokenizers {tokenizers.__version__} |

Training loss (mean over 50 steps from the given step):

| step | loss |
|---|---|
{rows}

## Evaluation (data/corpus/heldout.jsonl, {nheld / 1e6:.2f} M tokens)
| model | loss (nats/token) | perplexity |
|---|---|---|
| olmo2-tiny | {held_loss:.4f} | {math.exp(held_loss):.1f} |
| unigram baseline (train-set token frequencies, add-one) | {uni:.4f} | {math.exp(uni):.1f} |

## Greedy samples (40 new tokens)

{sample_md}

## Licence
The weights are derived from the corpus texts; see data/corpus/SOURCES.md for their licences.
"""
    with open(os.path.join(args.out, "MODEL_CARD.md"), "w") as f:
        f.write(card)


if __name__ == "__main__":
    main()
