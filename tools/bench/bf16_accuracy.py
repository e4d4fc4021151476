#!/usr/bin/env python3
"""Logit accuracy of forward.bf16_compute (run by tools/bench/bf16.sh).

    bf16_accuracy.py --model DIR --ids 1,2,3 --c-on ON.npy --c-off OFF.npy

ON / OFF: the C forward's logits of the BF16 checkpoint DIR with forward.bf16_compute on
and off (`transpolmo forward --logits-out`). Runs Hugging Face transformers (eager
attention, CPU) on the same checkpoint and ids in bfloat16 (everything bf16, as HF runs a
bf16 model) and in float32, and prints max |a - b| / max |b| over the logits for each
pair: C on vs C off is the cost of rounding X to bf16; HF bf16 vs HF f32 is the cost HF's
own bf16 inference pays, for scale.
"""
import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402


def hf_logits(model_dir, ids, dtype):
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, attn_implementation="eager")
    model.eval()
    with torch.no_grad():
        out = model(torch.tensor([ids], dtype=torch.int64)).logits.float().numpy()
    del model
    return out.reshape(-1, out.shape[-1])


def rel(a, b):
    return float(np.max(np.abs(a.astype(np.float64) - b)) / np.max(np.abs(b)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--ids", required=True)
    ap.add_argument("--c-on", required=True)
    ap.add_argument("--c-off", required=True)
    a = ap.parse_args()
    torch.set_num_threads(2)
    ids = [int(t) for t in a.ids.split(",")]
    on = np.load(a.c_on).reshape(len(ids), -1)
    off = np.load(a.c_off).reshape(len(ids), -1)
    hb = hf_logits(a.model, ids, torch.bfloat16)
    hf = hf_logits(a.model, ids, torch.float32)
    top = lambda x: x.argmax(-1)  # noqa: E731
    print(f"accuracy ({len(ids)} tokens, max|a-b|/max|b| of the logits; top-1 agreement):")
    for name, x, y in [("C on  vs C off (f32 X)", on, off), ("C on  vs HF bf16", on, hb), ("C on  vs HF f32", on, hf),
                       ("C off vs HF f32", off, hf), ("C off vs HF bf16", off, hb), ("HF bf16 vs HF f32", hb, hf)]:
        print(f"  {name:22s} {rel(x, y):.3e}  top-1 {np.mean(top(x) == top(y)):.3f}")


if __name__ == "__main__":
    main()
