#!/usr/bin/env python3
"""Stage 2 of the bundled model: continue olmo2-tiny so that it forms induction heads.

Stage 1 (tools/train/train_tiny_olmo2.py) gives a model with a previous-token head but
no induction head. This stage continues from its weights, seeded, for a few hundred
steps on a mixture of
  * plain corpus sequences (data/corpus/train.jsonl packed exactly as in stage 1),
  * the same with repeated spans: a copy of an earlier span of the sequence (8-48
    tokens) inserted later in it, once or twice, then cut back to --seq tokens; the
    loss is on every token, as for plain text,
  * repeated random tokens: blocks [<|endoftext|>, r1..rL, r1..rL] or with a third
    copy (L log-uniform in 2..64; r uniform over the non-special tokens, or for half of the
    blocks drawn from the train-set token frequencies) packed into --seq tokens; the
    loss is on r2..rL of the copies after the first only (the first copy cannot be
    predicted),
with AdamW from a fresh state (linear warm-up, constant LR, then a cosine decay over the
last 57 % of the steps during which the share of random tokens is smaller). The tokenizer is
the stage-1 model's tokenizer.json, copied unchanged.

Run from the repository root with the reference venv:

    /opt/transpolmo-ref/bin/python tools/train/train_induction_stage.py \\
        --resume-from STAGE1_DIR --out models/olmo2-tiny

STAGE1_DIR holds the stage-1 model (config.json, model.safetensors, tokenizer.json,
MODEL_CARD.md, training_log.json), e.g. made by
`tools/train/train_tiny_olmo2.py --steps 1800 --out STAGE1_DIR`, or the committed
stage-1 files (see models/olmo2-tiny/MODEL_CARD.md). The script measures the heads
and the held-out loss before and after (tools/train/measure_induction.py), writes
config.json, model.safetensors, tokenizer.json, training_log.json (both stages) and
MODEL_CARD.md (both stages) to --out.
"""
import argparse
import bisect
import json
import math
import os
import random
import re
import shutil
import sys
import time

os.environ["CUDA_VISIBLE_DEVICES"] = os.environ.get("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
import tokenizers  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_tiny_olmo2 import pack, read_jsonl  # noqa: E402
import measure_induction as mi  # noqa: E402

N_SPECIAL = 2  # <|endoftext|> = 0, <|pad|> = 1


def with_copies(seq, rng, n):
    """Insert n copies of earlier spans of seq later in it; cut back to len(seq)."""
    T = len(seq)
    x = list(seq)
    for _ in range(n):
        ln = rng.randint(8, 48)
        p = rng.randint(ln + 8, T - 8)       # insertion point
        a = rng.randint(0, p - ln)           # source span x[a:a+ln], before p
        x = x[:p] + x[a:a + ln] + x[p:]
    return x[:T]


def random_repeats(T, vocab, eos, rng, unigram=None):
    """Blocks [eos, r1..rL, r1..rL(, r1..rL)] packed into T tokens (L log-uniform in 2..64, so
    that short repeats, whose target a head finds before it has learned to look for it, are
    common; 2 or 3 copies); r uniform over the non-special tokens, or, for half of the blocks when `unigram`
    (cumulative train-set token frequencies) is given, drawn from it. Labels on the copies
    after the first, from their second token on."""
    x, y = [], []
    while len(x) < T:
        ln = int(round(math.exp(rng.uniform(math.log(2), math.log(64)))))
        k = rng.randint(2, 3)
        if unigram is not None and rng.random() < 0.5:
            r = [max(N_SPECIAL, bisect.bisect_right(unigram, rng.random())) for _ in range(ln)]
        else:
            r = [rng.randrange(N_SPECIAL, vocab) for _ in range(ln)]
        x += [eos] + r * k
        y += [-100] * (ln + 1) + ([-100] + r[1:]) * (k - 1)
    return x[:T], y[:T]


def lr_factor(i, steps, warmup, decay_from, floor):
    """Linear warm-up, constant, then cosine decay to `floor` over the last (1 - decay_from) of the steps."""
    d0 = int(steps * decay_from)
    f = 1.0 if i < d0 else floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * (i - d0) / max(1, steps - d0)))
    return min(1.0, (i + 1) / warmup) * f


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resume-from", required=True, help="the stage-1 model directory")
    ap.add_argument("--out", default="models/olmo2-tiny")
    ap.add_argument("--corpus", default="data/corpus")
    ap.add_argument("--steps", type=int, default=750)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1.5e-3, help="peak learning rate")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--decay-from", type=float, default=0.43,
                    help="LR constant at --lr after warm-up until this fraction of the steps, then cosine decay")
    ap.add_argument("--min-lr-frac", type=float, default=0.05, help="the LR at the end, as a fraction of --lr")
    ap.add_argument("--random-share", type=float, default=0.375, help="share of each batch: repeated random tokens (until the decay)")
    ap.add_argument("--random-share-decay", type=float, default=0.25, help="the same during the LR decay")
    ap.add_argument("--copy-share", type=float, default=0.25, help="share of each batch: corpus with repeated spans")
    ap.add_argument("--measure-every", type=int, default=25)
    ap.add_argument("--before-json", help="the stage-1 measurement (measure_induction.py --json) instead of measuring again")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=4321)
    args = ap.parse_args()

    rng = random.Random(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    t_start = time.time()

    src = args.resume_from
    tok = Tokenizer.from_file(os.path.join(src, "tokenizer.json"))
    eos = tok.token_to_id("<|endoftext|>")
    with open(os.path.join(src, "training_log.json")) as f:
        log1 = json.load(f)
    if "stage2" in log1:
        sys.exit(f"{src} is already a stage-2 model: resume from the stage-1 model")
    with open(os.path.join(src, "MODEL_CARD.md"), encoding="utf-8") as f:
        card1 = f.read()

    train_docs = [d["text"] for d in read_jsonl(os.path.join(args.corpus, "train.jsonl"))]
    train = pack([e.ids for e in tok.encode_batch(train_docs)], eos, args.seq)
    print(f"{train.numel()} train tokens in {len(train)} sequences of {args.seq}", flush=True)
    counts = np.bincount(train.flatten().numpy(), minlength=tok.get_vocab_size()).astype(np.float64)
    counts[:N_SPECIAL] = 0
    unigram = list(np.cumsum(counts) / counts.sum())

    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32, attn_implementation="eager")
    vocab = model.config.vocab_size
    print("measuring the stage-1 model", flush=True)
    if args.before_json:
        with open(args.before_json) as f:
            before = json.load(f)
    else:
        before = mi.measure(model, tok, args.corpus)
    print(mi.summary(before), flush=True)
    model.train()

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    gen = torch.Generator().manual_seed(args.seed)
    n_copy = round(args.batch * args.copy_share)
    decay_step = int(args.steps * args.decay_from)

    def batch_at(i):
        n_rand = round(args.batch * (args.random_share if i < decay_step else args.random_share_decay))
        n_plain = args.batch - n_rand - n_copy
        idx = torch.randint(0, len(train), (n_plain + n_copy,), generator=gen)
        xs = [train[i].tolist() for i in idx]
        xs = xs[:n_plain] + [with_copies(s, rng, rng.randint(1, 2)) for s in xs[n_plain:]]
        ys = [list(s) for s in xs]
        for _ in range(n_rand):
            x, y = random_repeats(args.seq, vocab, eos, rng, unigram)
            xs.append(x)
            ys.append(y)
        return torch.tensor(xs), torch.tensor(ys)

    log, marks = [], []
    t0 = time.time()
    for i in range(args.steps):
        lr = args.lr * lr_factor(i, args.steps, args.warmup, args.decay_from, args.min_lr_frac)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = batch_at(i)
        loss = model(input_ids=x, labels=y).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        log.append((i, loss.item()))
        if (i + 1) % args.measure_every == 0 or i == args.steps - 1:
            xr = mi.random_repeated(8, 50, vocab, 1)
            st, l1, l2 = mi.stripe_scores(model, xr, 50)
            model.train()
            b = mi.best(st)
            st10, _, _ = mi.stripe_scores(model, mi.random_repeated(8, 10, vocab, 1), 10)
            model.train()
            b10 = mi.best(st10)
            marks.append({"step": i + 1, "stripe_best": b, "loss_first_copy": round(l1, 4), "loss_second_copy": round(l2, 4),
                          "stripe_best_L10": b10})
            el = time.time() - t0
            print(f"step {i + 1}/{args.steps} loss {loss.item():.3f} lr {lr:.2e} stripe {b['score']:.3f} "
                  f"(L{b['layer']}H{b['head']}; L=10: {b10['score']:.3f}) copy losses {l1:.2f}/{l2:.2f} {el / 60:.1f} min, "
                  f"ETA {(args.steps - i - 1) * el / (i + 1) / 60:.1f} min", flush=True)
    per_step = (time.time() - t0) / args.steps

    print("measuring the stage-2 model", flush=True)
    after = mi.measure(model, tok, args.corpus)
    print(mi.summary(after), flush=True)

    prompts = ["In the beginning", "def __init__(self", "The command", "A man who", "NAME\n"]
    samples = []
    model.eval()
    for p in prompts:
        ids = torch.tensor([tok.encode(p).ids])
        out = model.generate(ids, max_new_tokens=40, do_sample=False, pad_token_id=model.config.pad_token_id)
        samples.append((p, tok.decode(out[0].tolist())))

    os.makedirs(args.out, exist_ok=True)
    model.save_pretrained(args.out, safe_serialization=True)
    if os.path.abspath(src) != os.path.abspath(args.out):
        shutil.copyfile(os.path.join(src, "tokenizer.json"), os.path.join(args.out, "tokenizer.json"))
    secs = time.time() - t_start
    stage2 = {"args": vars(args), "loss": [[i, round(l, 4)] for i, l in log], "stripe_during": marks,
              "before": before, "after": after, "seconds_per_step": per_step, "seconds": secs}
    with open(os.path.join(args.out, "training_log.json"), "w") as f:
        json.dump({"stage1": log1, "stage2": stage2, "held_out_loss": after["heldout"]["loss"],
                   "unigram_loss": log1.get("unigram_loss")}, f)
    write_card(args, card1, log1, log, marks, before, after, samples, per_step, secs)
    print(f"wrote {args.out} ({secs / 60:.1f} min)", flush=True)


def section(card, title):
    m = re.search(r"^## " + re.escape(title) + r"\n(.*?)(?=^## |\Z)", card, re.S | re.M)
    return m.group(1).strip() if m else ""


def head_table(res):
    s = res["stripe"]["per_head"]
    p = res["detector"]["text"]["previous_token"]["per_head"]
    ind = res["detector"]["repeated"]["induction"]["per_head"]
    rows = []
    for L in range(len(s)):
        rows.append(f"| {L} | " + " ".join(f"{v:.2f}" for v in s[L]) + " | " + " ".join(f"{v:.2f}" for v in p[L])
                    + " | " + " ".join(f"{v:.2f}" for v in ind[L]) + " |")
    return ("| layer | stripe score, heads 0-7 | previous-token (text), heads 0-7 | induction (repeated text), heads 0-7 |\n"
            "|---|---|---|---|\n" + "\n".join(rows))


def summary_rows(name, res):
    s, d, h = res["stripe"], res["detector"], res["heldout"]
    def b(x):
        return f"{x['score']:.2f} (L{x['layer']}H{x['head']})"
    return (f"| {name} | {b(s['best'])} | {s['loss_first_copy']:.2f} / {s['loss_second_copy']:.2f} | "
            f"{b(d['text']['previous_token']['best'])} | {b(d['repeated']['induction']['best'])} | "
            f"{b(d['repeated']['duplicate_token']['best'])} | {h['loss']:.4f} ({h['perplexity']:.1f}) |")


def write_card(args, card1, log1, log, marks, before, after, samples, per_step, secs):
    def avg(a, b):
        xs = [l for i, l in log if a <= i < b]
        return sum(xs) / max(1, len(xs))
    total = args.steps
    loss_rows = "\n".join(f"| {m} | {avg(m, m + 25):.3f} |" for m in sorted(set([0, 25, 50, 100, 150, 200, total - 25]))
                          if 0 <= m < total)
    stripe_rows = "\n".join(f"| {m['step']} | {m['stripe_best']['score']:.3f} (L{m['stripe_best']['layer']}H{m['stripe_best']['head']}) "
                            f"| {m['loss_first_copy']:.2f} / {m['loss_second_copy']:.2f} |" for m in marks)
    arch = section(card1, "Architecture")
    train1 = section(card1, "Training")
    uni = log1.get("unigram_loss")
    h1, h2 = before["heldout"], after["heldout"]
    sample_md = "\n\n".join(f"**Prompt** `{p!r}`\n\n```\n{s}\n```" for p, s in samples)
    n_rand = round(args.batch * args.random_share)
    n_rand2 = round(args.batch * args.random_share_decay)
    n_copy = round(args.batch * args.copy_share)
    d0 = int(args.steps * args.decay_from)
    card = f"""# olmo2-tiny — the model bundled with TranspOLMo

A small `Olmo2ForCausalLM` trained from scratch on the bundled corpus (`data/corpus`,
see `data/corpus/SOURCES.md`) so that a new user sees findings about a model that
actually learned something, induction heads included. Made in two seeded stages:
`tools/train/train_tiny_olmo2.py` (stage 1, seed 1234: tokenizer and language model)
then `tools/train/train_induction_stage.py` (stage 2, seed {args.seed}: a short
continuation with repeated spans and repeated random tokens in the mix, so that
induction heads form). The tokenizer is stage 1's, unchanged by stage 2.

To make it from scratch (reference venv, `tools/reference/setup_venv.sh`):

```
/opt/transpolmo-ref/bin/python tools/train/train_tiny_olmo2.py --steps 1800 --out /tmp/olmo2-tiny-stage1
/opt/transpolmo-ref/bin/python tools/train/train_induction_stage.py --resume-from /tmp/olmo2-tiny-stage1 --out models/olmo2-tiny
```

The stage-1 files are also in git: `models/olmo2-tiny/` at commit 3415417 (the
commit that added the stage-1 model), e.g.
`mkdir -p /tmp/olmo2-tiny-stage1 && git archive 3415417 models/olmo2-tiny | tar -x --strip-components=2 -C /tmp/olmo2-tiny-stage1`.

## Architecture
{arch}

## Training

### Stage 1: language model from scratch (`tools/train/train_tiny_olmo2.py`)
{train1}

### Stage 2: induction heads (`tools/train/train_induction_stage.py`)
| | |
|---|---|
| start | the stage-1 weights; AdamW state new |
| data per step | batch {args.batch} × {args.seq} tokens: {args.batch - n_rand - n_copy} plain corpus sequences (train.jsonl packed as in stage 1; {args.batch - n_rand2 - n_copy} from step {d0} on), {n_copy} corpus sequences with 1–2 copies of an earlier 8–48-token span inserted later, {n_rand} ({n_rand2} from step {d0} on) sequences of blocks `[<\\|endoftext\\|>, r1..rL, r1..rL]` or with a third copy, random tokens (L log-uniform in 2–64; r uniform over the non-special tokens, or for half of the blocks drawn from the train-set token frequencies; loss on r2..rL of the copies after the first only) |
| steps | {total} × {args.batch} × {args.seq} = {total * args.batch * args.seq / 1e6:.2f} M tokens |
| optimiser | AdamW (β 0.9/0.95, weight decay 0.1 on matrices), LR {args.lr} after {args.warmup} linear warm-up steps, constant until step {d0}, then cosine decay to {args.min_lr_frac * args.lr:.2g} |
| hardware | CPU, {args.threads} threads (shared machine), {per_step:.2f} s/step; whole script {secs / 60:.0f} min |
| software | torch {torch.__version__}, transformers {transformers.__version__}, tokenizers {tokenizers.__version__} |

Training loss (mean over 25 steps from the given step; the random-token loss only counts
the predictable copies after the first):

| step | loss |
|---|---|
{loss_rows}

Best induction stripe score during stage 2 (8 sequences, L = 50, seed 1) and the loss on
the first / second copy of the random tokens:

| step | best stripe | loss first / second copy |
|---|---|---|
{stripe_rows}

## Evaluation (data/corpus/heldout.jsonl, {h2['tokens'] / 1e6:.2f} M tokens)
Sequences of 256 (documents joined by `<|endoftext|>`), mean next-token loss.

| model | loss (nats/token) | perplexity |
|---|---|---|
| olmo2-tiny (stage 2, this model) | {h2['loss']:.4f} | {h2['perplexity']:.1f} |
| stage 1 | {h1['loss']:.4f} | {h1['perplexity']:.1f} |
| unigram baseline (train-set token frequencies, add-one) | {uni:.4f} | {math.exp(uni):.1f} |

## Heads (`tools/train/measure_induction.py`)
Stripe score: on [BOS, r1..rL, r1..rL] (BOS = `<|endoftext|>`, L = 50, 32 sequences of
uniformly random non-special tokens, seed 0), a head's mean attention from position i to
i−L+1 over the second half — the induction stripe. TransformerLens `head_detector`
scores (`error_measure="mul"`, no exclusions): previous-token on BOS + 63 tokens of 32
held-out documents; duplicate-token and induction on BOS + s + s with s their first 24
tokens. Best head (layer, head) of each:

| model | stripe | random-token loss 1st / 2nd copy | previous-token | induction (repeated text) | duplicate-token (repeated text) | held-out loss (ppl) |
|---|---|---|---|---|---|---|
{summary_rows("stage 1", before)}
{summary_rows("stage 2 (this model)", after)}

Per head, this model:

{head_table(after)}

## Greedy samples (40 new tokens)

{sample_md}

## Licence
The weights are derived from the corpus texts; see data/corpus/SOURCES.md for their licences.
"""
    with open(os.path.join(args.out, "MODEL_CARD.md"), "w") as f:
        f.write(card)


if __name__ == "__main__":
    main()
