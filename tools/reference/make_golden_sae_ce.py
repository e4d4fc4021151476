#!/usr/bin/env python3
"""Golden data for "CE-loss recovered" (src/analysis/sae/sae_ce.h) on the bundled model.

Run from the repository root with the reference venv (no network):

    /opt/transpolmo-ref/bin/python tools/reference/make_golden_sae_ce.py [--model models/olmo2-tiny]

Writes tests/data/golden/sae_ce/:
  input_ids.npy    int32 [N_SEQ, SEQ_LEN]: the first N_SEQ full SEQ_LEN-token pieces of
                   the first documents of data/corpus/heldout.jsonl (tokenized by
                   `tokenizers`, split packing)
  reference.json   the SAE (a formula, below), the splice point and mask, and
                   ce_clean, ce_zero, ce_sae, recovered, kl_sae, kl_zero, tokens

The SAE is a ReLU SAE (d = hidden size, F = 2d) defined by a formula, so that no
weights need storing; the C test rebuilds it bit for bit (f64 sin/cos rounded to f32):
  W_enc[i, j] = f32(0.15 sin(0.37 i + 1.3 j + 0.1))     [F, d]
  W_dec[i, j] = f32(0.10 cos(0.11 i + 0.7 j))           [F, d]
  b_enc[i]    = f32(-0.05 (i mod 7) / 7)
  b_dec[j]    = f32(0.01 sin(j))
  input scale s = 0.25, b_dec subtracted from the input:
  x̂ = (relu((s x − b_dec) W_encᵀ + b_enc) W_dec + b_dec) · f32(1/s)
It is spliced into the output of decoder layer LAYER (blocks.LAYER.hook_resid_post)
with transformers' float32 eager forward; position 0 of every sequence keeps its
activation (skip_first) in the zero and SAE passes. CE and KL are computed in float64
from the float32 logits, as sae_ce.h defines them.
"""
import argparse
import json
import os

os.environ["CUDA_VISIBLE_DEVICES"] = ""
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

N_SEQ, SEQ_LEN, LAYER, SCALE = 5, 24, 1, 0.25


def sae_params(d):
    F = 2 * d
    i = np.arange(F, dtype=np.float64)[:, None]
    j = np.arange(d, dtype=np.float64)[None, :]
    w_enc = (0.15 * np.sin(0.37 * i + 1.3 * j + 0.1)).astype(np.float32)
    w_dec = (0.10 * np.cos(0.11 * i + 0.7 * j)).astype(np.float32)
    b_enc = (-0.05 * (np.arange(F) % 7) / 7.0).astype(np.float32)
    b_dec = (0.01 * np.sin(np.arange(d, dtype=np.float64))).astype(np.float32)
    return [torch.from_numpy(a) for a in (w_enc, w_dec, b_enc, b_dec)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/olmo2-tiny")
    ap.add_argument("--corpus", default="data/corpus/heldout.jsonl")
    ap.add_argument("--out", default="tests/data/golden/sae_ce")
    args = ap.parse_args()
    torch.manual_seed(0)

    tok = Tokenizer.from_file(os.path.join(args.model, "tokenizer.json"))
    seqs = []
    with open(args.corpus, encoding="utf-8") as f:
        for line in f:
            ids = tok.encode(json.loads(line)["text"], add_special_tokens=False).ids
            for k in range(0, len(ids) - SEQ_LEN + 1, SEQ_LEN):
                if len(seqs) < N_SEQ:
                    seqs.append(ids[k:k + SEQ_LEN])
            if len(seqs) == N_SEQ:
                break
    ids = torch.tensor(seqs, dtype=torch.long)

    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32,
                                                 attn_implementation="eager").eval()
    d = model.config.hidden_size
    w_enc, w_dec, b_enc, b_dec = sae_params(d)
    s = torch.tensor(SCALE, dtype=torch.float32)
    inv = torch.tensor(np.float32(1.0 / SCALE))

    def sae(x):
        f = torch.relu((s * x - b_dec) @ w_enc.T + b_enc)
        return (f @ w_dec + b_dec) * inv

    mode = {"m": None}

    def hook(_mod, _inp, out):
        h = out[0] if isinstance(out, tuple) else out
        if mode["m"] is None:
            return out
        new = h.clone()
        rows = new[:, 1:, :]                      # position 0 keeps its activation
        new[:, 1:, :] = torch.zeros_like(rows) if mode["m"] == "zero" else sae(rows)
        return (new,) + tuple(out[1:]) if isinstance(out, tuple) else new

    model.model.layers[LAYER].register_forward_hook(hook)

    def logprobs(m):
        mode["m"] = m
        with torch.no_grad():
            z = model(input_ids=ids).logits[:, :-1, :].double()
        return torch.log_softmax(z, dim=-1)

    lp = {m: logprobs(m) for m in (None, "zero", "sae")}
    tgt = ids[:, 1:]

    def ce(m):
        return float(-lp[m].gather(-1, tgt[..., None]).mean())

    def kl(m):
        return float((lp[None].exp() * (lp[None] - lp[m])).sum(-1).mean())

    c, z, a = ce(None), ce("zero"), ce("sae")
    ref = {
        "model": args.model, "corpus": args.corpus, "layer": LAYER, "hook": "hook_resid_post",
        "skip_first": True, "bos_id": -1, "input_scale": SCALE,
        "sae": "relu, F = 2d, formula in tools/reference/make_golden_sae_ce.py",
        "ce_clean": c, "ce_zero": z, "ce_sae": a, "recovered": (z - a) / (z - c),
        "kl_sae": kl("sae"), "kl_zero": kl("zero"), "tokens": int(tgt.numel()),
        "torch": torch.__version__,
    }
    import transformers
    ref["transformers"] = transformers.__version__
    os.makedirs(args.out, exist_ok=True)
    np.save(os.path.join(args.out, "input_ids.npy"), ids.numpy().astype(np.int32))
    with open(os.path.join(args.out, "reference.json"), "w") as f:
        json.dump(ref, f, indent=2)
        f.write("\n")
    print(json.dumps(ref, indent=2))


if __name__ == "__main__":
    main()
