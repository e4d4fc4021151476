#!/usr/bin/env python3
"""Golden singular-value spectra for `transpolmo inspect` (architecture.json).

Run from the repository root with the reference venv, after make_golden.py:

    /opt/transpolmo-ref/bin/python tools/reference/make_golden_spectra.py

For every test model it reads the checkpoint with `safetensors` (upcast to float64)
and computes with NumPy (LAPACK gesdd) the singular values of each per-head block of
W_Q, W_K, W_V (the head's rows), W_O (the head's columns) and of the three MLP
matrices, plus effective rank exp(H(s/sum s)) and stable rank ||W||_F^2/s_max^2.
Writes tests/data/golden/<model>/spectra.json.
"""
import json
import os
import sys

import numpy as np
import torch  # only to read bf16 tensors
from safetensors.torch import load_file as load_torch

MODELS = ["olmo2-mha-f32", "olmo2-gqa-bf16", "olmo2-gqa-f16-sharded", "llama-gqa-tied"]


def load_all(model_dir):
    out = {}
    for f in sorted(os.listdir(model_dir)):
        if f.endswith(".safetensors"):
            for k, v in load_torch(os.path.join(model_dir, f)).items():
                out[k] = v.to(torch.float64).numpy()
    return out


def spec(a):
    s = np.linalg.svd(a, compute_uv=False)
    p = s / s.sum()
    p = p[p > 0]
    return {
        "singular_values": s.tolist(),
        "effective_rank": float(np.exp(-(p * np.log(p)).sum())),
        "stable_rank": float((s ** 2).sum() / s[0] ** 2),
        "frobenius": float(np.sqrt((s ** 2).sum())),
    }


def main(root="tests/data"):
    for name in MODELS:
        mdir = os.path.join(root, "models", name)
        cfg = json.load(open(os.path.join(mdir, "config.json")))
        w = load_all(mdir)
        H, K = cfg["num_attention_heads"], cfg["num_key_value_heads"]
        dh = cfg.get("head_dim") or cfg["hidden_size"] // H
        layers = []
        for L in range(cfg["num_hidden_layers"]):
            p = f"model.layers.{L}."
            q, k, v, o = (w[p + f"self_attn.{n}_proj.weight"] for n in "qkvo")
            entry = {
                "layer": L,
                "W_Q": [spec(q[h * dh:(h + 1) * dh]) for h in range(H)],
                "W_K": [spec(k[h * dh:(h + 1) * dh]) for h in range(K)],
                "W_V": [spec(v[h * dh:(h + 1) * dh]) for h in range(K)],
                "W_O": [spec(o[:, h * dh:(h + 1) * dh]) for h in range(H)],
            }
            for m in ("gate", "up", "down"):
                entry[f"mlp_{m}_proj"] = spec(w[p + f"mlp.{m}_proj.weight"])
            layers.append(entry)
        out = os.path.join(root, "golden", name, "spectra.json")
        with open(out, "w") as f:
            json.dump({"made_by": "tools/reference/make_golden_spectra.py (numpy %s)" % np.__version__,
                       "layers": layers}, f, indent=1)
            f.write("\n")
        print("wrote", out)


if __name__ == "__main__":
    main(*sys.argv[1:])
