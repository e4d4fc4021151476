#!/usr/bin/env python3
"""Measure a model's induction and previous-token heads and its held-out loss.

Run from the repository root with the reference venv:

    /opt/transpolmo-ref/bin/python tools/train/measure_induction.py [--model models/olmo2-tiny] [--json OUT]

All inputs are seeded; the model runs in float32 with transformers' eager attention
(the pattern is the softmax output, as TransformerLens' hook_pattern). BOS is
`<|endoftext|>` (id 0): the model has no BOS token of its own, and its training data
joins documents with it, so it is what starts a document.

Scores, per layer and head:
  stripe          induction stripe on [BOS, r1..rL, r1..rL] of uniformly random
                  non-special tokens: for one head, the mean over the second half
                  (query positions i = L+1..2L) of the pattern at (i, i-L+1), i.e. the
                  diagonal at offset 1-L restricted to the repeated half; averaged
                  over --n-random sequences (seed --seed). Also reported: the loss on
                  the first and on the second copy (an induction head makes the second
                  one low).
  previous_token, duplicate_token, induction
                  TransformerLens head_detector definitions with error_measure="mul",
                  no exclusions: score = sum(A * D) / sum(A) for the detection pattern D
                  (previous: D[i, i-1] = 1; duplicate: D[i, j] = 1 for j < i with
                  tok_j == tok_i; induction: the duplicate pattern shifted one column
                  right, first column 0), averaged over sequences.
                  previous_token and duplicate_token/induction are measured on
                    text:     BOS + the first 63 tokens of the first --n-text held-out
                              documents;
                    repeated: BOS + s + s with s the first 24 tokens of those
                              documents ("sentences repeated twice").
Held-out loss: data/corpus/heldout.jsonl tokenized, documents joined by <|endoftext|>,
cut into sequences of 256, mean next-token loss over batches of 32: exactly the
MODEL_CARD's (tools/train/train_tiny_olmo2.py evaluate()).
"""
import argparse
import json
import math
import os
import sys

os.environ["CUDA_VISIBLE_DEVICES"] = os.environ.get("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_tiny_olmo2 import evaluate, pack, read_jsonl  # noqa: E402

BOS = 0          # <|endoftext|>
N_SPECIAL = 2    # ids 0, 1 are <|endoftext|>, <|pad|>


@torch.no_grad()
def patterns(model, x):
    """[n_layers] tensors [batch, heads, seq, seq] and the logits."""
    out = model(input_ids=x, output_attentions=True)
    return [a.float() for a in out.attentions], out.logits.float()


def random_repeated(n, L, vocab, seed):
    g = torch.Generator().manual_seed(seed)
    r = torch.randint(N_SPECIAL, vocab, (n, L), generator=g)
    return torch.cat([torch.full((n, 1), BOS, dtype=torch.long), r, r], dim=1)


@torch.no_grad()
def stripe_scores(model, x, L, batch=8):
    """Mean of A[i, i-L+1], i = L+1..2L, per [layer][head]; losses on both copies."""
    tot, n = None, 0
    first, second = 0.0, 0.0
    for k in range(0, len(x), batch):
        xb = x[k:k + batch]
        att, logits = patterns(model, xb)
        i = torch.arange(L + 1, 2 * L + 1)
        s = torch.stack([a[:, :, i, i - L + 1].mean(-1).sum(0) for a in att])  # [layers, heads]
        tot = s if tot is None else tot + s
        n += len(xb)
        lp = torch.log_softmax(logits.double(), -1)
        nll = -lp[:, :-1].gather(-1, xb[:, 1:, None])[..., 0]      # nll[t] predicts token t+1
        first += nll[:, 1:L].mean(-1).sum().item()                   # r2..rL from the first copy
        second += nll[:, L:2 * L].mean(-1).sum().item()              # r1..rL of the second copy
    return (tot / n), first / n, second / n


def detection_patterns(tokens):
    """TransformerLens head_detector detection patterns for one token sequence."""
    T = len(tokens)
    prev = torch.zeros(T, T)
    prev[1:, :-1] = torch.eye(T - 1)
    prev = torch.tril(prev)
    t = tokens[None, :]
    dup = (t == t.T).float()
    dup.fill_diagonal_(0)
    dup = torch.tril(dup)
    shifted = torch.roll(dup, shifts=1, dims=1)
    ind = torch.tril(torch.cat([torch.zeros(T, 1), shifted[:, 1:]], dim=1))
    return {"previous_token": prev, "duplicate_token": dup, "induction": ind}


@torch.no_grad()
def detector_scores(model, seqs):
    """{name: [layers][heads]} averaged over sequences (each its own length)."""
    acc = {}
    for s in seqs:
        x = torch.tensor([s])
        att, _ = patterns(model, x)
        det = detection_patterns(x[0])
        for name, D in det.items():
            sc = torch.stack([(a[0] * D).sum((-1, -2)) / a[0].sum((-1, -2)) for a in att])
            acc[name] = acc.get(name, 0) + sc
    return {k: v / len(seqs) for k, v in acc.items()}


def best(m):
    idx = int(torch.argmax(m))
    L, H = divmod(idx, m.shape[1])
    return {"layer": L, "head": H, "score": round(float(m[L, H]), 4)}


def measure(model, tok, corpus="data/corpus", n_random=32, L=50, seed=0, n_text=32, heldout=True):
    vocab = model.config.vocab_size
    model.eval()
    res = {}
    x = random_repeated(n_random, L, vocab, seed)
    st, l1, l2 = stripe_scores(model, x, L)
    res["stripe"] = {"L": L, "sequences": n_random, "seed": seed, "per_head": st.tolist(), "best": best(st),
                     "loss_first_copy": l1, "loss_second_copy": l2}
    docs = [d["text"] for d in read_jsonl(os.path.join(corpus, "heldout.jsonl"))]
    ids = [tok.encode(d).ids for d in docs]
    ids = [d for d in ids if len(d) >= 63][:n_text]
    text = detector_scores(model, [[BOS] + d[:63] for d in ids])
    rep = detector_scores(model, [[BOS] + d[:24] + d[:24] for d in ids])
    res["detector"] = {"prompts": len(ids),
                       "text": {k: {"per_head": v.tolist(), "best": best(v)} for k, v in text.items()},
                       "repeated": {k: {"per_head": v.tolist(), "best": best(v)} for k, v in rep.items()}}
    if heldout:
        eos = tok.token_to_id("<|endoftext|>")
        held = pack([e.ids for e in tok.encode_batch(docs)], eos, 256)
        loss = evaluate(model, held, 32)
        model.eval()
        res["heldout"] = {"loss": loss, "perplexity": math.exp(loss), "tokens": held.numel()}
    return res


def summary(res):
    s = res["stripe"]
    b = s["best"]
    lines = [f"stripe (L={s['L']}, {s['sequences']} random sequences): best {b['score']:.3f} at L{b['layer']}H{b['head']}; "
             f"loss first copy {s['loss_first_copy']:.3f}, second copy {s['loss_second_copy']:.3f}"]
    for row_l, row in enumerate(s["per_head"]):
        lines.append(f"  layer {row_l}: " + " ".join(f"{v:.3f}" for v in row))
    d = res["detector"]
    for kind in ("text", "repeated"):
        lines.append(f"head_detector on {kind} ({d['prompts']} prompts): " + ", ".join(
            f"{k} {v['best']['score']:.3f} at L{v['best']['layer']}H{v['best']['head']}" for k, v in d[kind].items()))
    if "heldout" in res:
        h = res["heldout"]
        lines.append(f"held-out loss {h['loss']:.4f} (ppl {h['perplexity']:.1f}) over {h['tokens']} tokens")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/olmo2-tiny")
    ap.add_argument("--corpus", default="data/corpus")
    ap.add_argument("--L", type=int, default=50)
    ap.add_argument("--n-random", type=int, default=32)
    ap.add_argument("--n-text", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-heldout", action="store_true")
    ap.add_argument("--json", help="write the measurement here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tok = Tokenizer.from_file(os.path.join(args.model, "tokenizer.json"))
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32, attn_implementation="eager")
    res = measure(model, tok, args.corpus, args.n_random, args.L, args.seed, args.n_text, not args.no_heldout)
    res["model"] = args.model
    print(summary(res))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
