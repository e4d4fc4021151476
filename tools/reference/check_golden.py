#!/usr/bin/env python3
"""Independent NumPy re-implementation of the forward pass, checked against the goldens.

Reads only what the C loader reads (config.json + *.safetensors, via the safetensors
numpy API) and recomputes every capture point with a plain float32 NumPy forward
(no torch, no transformers).  Proves the golden files are reachable at the C tests'
tolerance (per tensor max|c - ref| / max|ref| <= 1e-4) by a straightforward
implementation, and documents the math in executable form.

    /opt/transpolmo-ref/bin/python tools/reference/check_golden.py [--data tests/data]
"""

import argparse
import glob
import json
import math
import os
import sys

import numpy as np

TOL = 1e-4


_ST_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16}


def load_weights(model_dir):
    """Minimal safetensors reader (8-byte LE header length, JSON header, raw data), the same
    thing the C loader does; BF16 is kept as uint16 bits and widened in to_f32."""
    w = {}
    for f in sorted(glob.glob(os.path.join(model_dir, "*.safetensors"))):
        with open(f, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(n))
            data = fh.read()
        for k, info in header.items():
            if k == "__metadata__":
                continue
            a, b = info["data_offsets"]
            arr = np.frombuffer(data[a:b], dtype=_ST_DTYPES[info["dtype"]]).reshape(info["shape"])
            w[k] = (info["dtype"], arr)
    return w


def to_f32(t):
    dt, a = t
    if dt == "BF16":
        return (a.astype(np.uint32) << 16).view(np.float32)
    return a.astype(np.float32)


def rope_inv_freq(cfg, dh):
    rp = cfg.get("rope_parameters") or {}
    theta = rp.get("rope_theta", cfg.get("rope_theta", 10000.0))
    scaling = cfg.get("rope_scaling") or rp
    rtype = scaling.get("rope_type", scaling.get("type", "default"))
    inv = 1.0 / (theta ** (np.arange(0, dh, 2, dtype=np.float32) / dh))
    inv = inv.astype(np.float32)
    if rtype == "llama3":
        factor = scaling["factor"]
        lf, hf = scaling["low_freq_factor"], scaling["high_freq_factor"]
        old = scaling["original_max_position_embeddings"]
        low_wl, high_wl = old / lf, old / hf
        wl = 2 * math.pi / inv
        out = np.where(wl > low_wl, inv / factor, inv)
        smooth = (old / wl - lf) / (hf - lf)
        smoothed = (1 - smooth) * out / factor + smooth * out
        medium = ~(wl < high_wl) & ~(wl > low_wl)
        inv = np.where(medium, smoothed, out).astype(np.float32)
    elif rtype != "default":
        raise NotImplementedError(rtype)
    return inv


def rmsnorm(x, w, eps):
    var = np.mean(x.astype(np.float32) ** 2, axis=-1, keepdims=True)
    return (w * (x / np.sqrt(var + eps))).astype(np.float32)


def rot(x, cos, sin):  # x [B,T,n,dh]; cos/sin [T,dh]
    h = x.shape[-1] // 2
    rh = np.concatenate([-x[..., h:], x[..., :h]], axis=-1)
    return x * cos[None, :, None, :] + rh * sin[None, :, None, :]


def silu(x):
    return x / (1.0 + np.exp(-x))


def forward(cfg, w, ids):
    arch = cfg["model_type"]
    d, H, K = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    dh = cfg.get("head_dim") or d // H
    eps = cfg["rms_norm_eps"]
    B, T = ids.shape
    g = lambda k: to_f32(w[k])  # noqa: E731
    acts = {}
    x = g("model.embed_tokens.weight")[ids]
    acts["hook_embed"] = x
    inv = rope_inv_freq(cfg, dh)
    ang = np.arange(T, dtype=np.float32)[:, None] * inv[None, :]
    emb = np.concatenate([ang, ang], -1)
    cos, sin = np.cos(emb), np.sin(emb)
    mask = np.triu(np.ones((T, T), bool), 1)
    for L in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{L}."
        c = f"blocks.{L}."
        acts[c + "hook_resid_pre"] = x
        h = x if arch == "olmo2" else rmsnorm(x, g(p + "input_layernorm.weight"), eps)
        q = h @ g(p + "self_attn.q_proj.weight").T
        k = h @ g(p + "self_attn.k_proj.weight").T
        v = h @ g(p + "self_attn.v_proj.weight").T
        if arch == "olmo2":  # norm over the whole H*dh (resp. K*dh) projection
            q = rmsnorm(q, g(p + "self_attn.q_norm.weight"), eps)
            k = rmsnorm(k, g(p + "self_attn.k_norm.weight"), eps)
        q, k, v = q.reshape(B, T, H, dh), k.reshape(B, T, K, dh), v.reshape(B, T, K, dh)
        acts[c + "attn.hook_q"], acts[c + "attn.hook_k"], acts[c + "attn.hook_v"] = q, k, v
        rq, rk = rot(q, cos, sin), rot(k, cos, sin)
        acts[c + "attn.hook_rot_q"], acts[c + "attn.hook_rot_k"] = rq, rk
        kk = np.repeat(rk, H // K, axis=2)  # query head h uses kv head h // (H/K)
        vv = np.repeat(v, H // K, axis=2)
        s = np.einsum("bqhd,bkhd->bhqk", rq, kk) / math.sqrt(dh)
        s = np.where(mask, -np.inf, s)
        s = s - s.max(-1, keepdims=True)
        pat = np.exp(s)
        pat /= pat.sum(-1, keepdims=True)
        acts[c + "attn.hook_pattern"] = pat
        z = np.einsum("bhqk,bkhd->bqhd", pat, vv)
        acts[c + "attn.hook_z"] = z
        ao = z.reshape(B, T, H * dh) @ g(p + "self_attn.o_proj.weight").T
        acts[c + "attn.hook_out"] = ao
        if arch == "olmo2":
            ao = rmsnorm(ao, g(p + "post_attention_layernorm.weight"), eps)
        acts[c + "hook_attn_out"] = ao
        x = x + ao
        acts[c + "hook_resid_mid"] = x
        h = x if arch == "olmo2" else rmsnorm(x, g(p + "post_attention_layernorm.weight"), eps)
        gate = h @ g(p + "mlp.gate_proj.weight").T
        up = h @ g(p + "mlp.up_proj.weight").T
        post = silu(gate) * up
        mo = post @ g(p + "mlp.down_proj.weight").T
        acts[c + "mlp.hook_pre"], acts[c + "mlp.hook_pre_linear"] = gate, up
        acts[c + "mlp.hook_post"], acts[c + "mlp.hook_out"] = post, mo
        if arch == "olmo2":
            mo = rmsnorm(mo, g(p + "post_feedforward_layernorm.weight"), eps)
        acts[c + "hook_mlp_out"] = mo
        x = x + mo
        acts[c + "hook_resid_post"] = x
    x = rmsnorm(x, g("model.norm.weight"), eps)
    acts["ln_final.hook_normalized"] = x
    head = "model.embed_tokens.weight" if cfg.get("tie_word_embeddings") else "lm_head.weight"
    if "lm_head.weight" in w:
        head = "lm_head.weight"
    return x @ g(head).T, acts


def rel(a, b):
    return float(np.abs(a.astype(np.float64) - b).max() / max(np.abs(b).max(), 1e-30))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="tests/data")
    args = ap.parse_args()
    man = json.load(open(os.path.join(args.data, "golden", "MANIFEST.json")))
    ok = True
    for m in man["models"]:
        mdir = os.path.join(args.data, m["model_dir"])
        gdir = os.path.join(args.data, m["golden_dir"])
        cfg = json.load(open(os.path.join(mdir, "config.json")))
        w = load_weights(mdir)
        ids = np.load(os.path.join(gdir, "input_ids.npy"))
        logits, acts = forward(cfg, w, ids)
        worst = ("logits", rel(logits, np.load(os.path.join(gdir, "logits.npy"))))
        for n in m["shapes"]:
            if n in ("input_ids", "logits", "logits_edit"):
                continue
            ref = np.load(os.path.join(gdir, n + ".npy"))
            assert list(ref.shape) == list(acts[n].shape), (n, ref.shape, acts[n].shape)
            e = rel(acts[n], ref)
            if e > worst[1]:
                worst = (n, e)
        status = "OK" if worst[1] <= TOL else "FAIL"
        ok &= status == "OK"
        print(f"{m['name']}: worst rel err {worst[1]:.2e} ({worst[0]}) {status}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
