#!/usr/bin/env python3
"""Golden data for `transpolmo eval` and `transpolmo generate` on the bundled model.

Run from the repository root with the reference venv, after training the model:

    /opt/transpolmo-ref/bin/python tools/reference/make_golden_bundled.py [--model models/olmo2-tiny]

Writes tests/data/bundled/:
  sample.jsonl          the first 12 documents of data/corpus/heldout.jsonl
  per_token_loss.npy    float32, the loss of every predicted token, in order: each
                        document tokenized by `tokenizers`, cut into sequences of
                        SEQ_LEN tokens (split packing: a sequence never spans two
                        documents), loss at position t = -log softmax(logits_t)[x_{t+1}]
                        from transformers (float32, eager attention)
  eval.json             seq_len, token count, mean loss, perplexity
  generate.json         5 prompts, their token ids, and transformers' greedy
                        continuation (max_new_tokens, stop at EOS)
"""
import argparse
import json
import math
import os

os.environ["CUDA_VISIBLE_DEVICES"] = ""
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

SEQ_LEN = 64
N_DOCS = 12
MAX_NEW = 24
PROMPTS = ["In the beginning God", "def main():\n    ", "The quick brown fox",
           "NAME\n       ls - list", "A fool and his money"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/olmo2-tiny")
    ap.add_argument("--corpus", default="data/corpus/heldout.jsonl")
    ap.add_argument("--out", default="tests/data/bundled")
    args = ap.parse_args()
    torch.manual_seed(0)
    os.makedirs(args.out, exist_ok=True)
    tok = Tokenizer.from_file(os.path.join(args.model, "tokenizer.json"))
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32, attn_implementation="eager")
    model.eval()

    with open(args.corpus, encoding="utf-8") as f:
        lines = [l for l in f if l.strip()][:N_DOCS]
    with open(os.path.join(args.out, "sample.jsonl"), "w", encoding="utf-8") as f:
        f.writelines(lines)
    losses = []
    with torch.no_grad():
        for line in lines:
            ids = tok.encode(json.loads(line)["text"]).ids
            for off in range(0, len(ids), SEQ_LEN):
                chunk = ids[off:off + SEQ_LEN]
                if len(chunk) < 2:
                    continue
                x = torch.tensor([chunk])
                logits = model(input_ids=x).logits[0].double()
                lp = torch.log_softmax(logits, dim=-1)
                losses.extend((-lp[torch.arange(len(chunk) - 1), x[0, 1:]]).tolist())
    losses = np.asarray(losses, dtype=np.float32)
    np.save(os.path.join(args.out, "per_token_loss.npy"), losses)
    mean = float(np.mean(losses.astype(np.float64)))
    with open(os.path.join(args.out, "eval.json"), "w") as f:
        json.dump({"seq_len": SEQ_LEN, "documents": len(lines), "tokens_predicted": int(losses.size),
                   "loss": mean, "perplexity": math.exp(mean),
                   "made_by": "tools/reference/make_golden_bundled.py"}, f, indent=1)
        f.write("\n")

    eos = model.config.eos_token_id
    cases = []
    with torch.no_grad():
        for p in PROMPTS:
            ids = tok.encode(p).ids
            out = model.generate(torch.tensor([ids]), max_new_tokens=MAX_NEW, do_sample=False,
                                 eos_token_id=eos, pad_token_id=model.config.pad_token_id)
            new = out[0, len(ids):].tolist()
            cases.append({"prompt": p, "prompt_ids": ids, "generated_ids": new, "text": tok.decode(out[0].tolist())})
    with open(os.path.join(args.out, "generate.json"), "w") as f:
        json.dump({"max_new_tokens": MAX_NEW, "eos_token_id": eos, "cases": cases}, f, indent=1)
        f.write("\n")
    print(f"eval: {losses.size} tokens, loss {mean:.5f}; generate: {len(cases)} prompts -> {args.out}")


if __name__ == "__main__":
    main()
