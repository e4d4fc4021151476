#!/usr/bin/env python3
# A random OLMo-2-0425-1B-shaped checkpoint with NumPy only (no torch, unlike
# tools/bench/make_bench_model.py, which uses transformers' own init): the same shapes
# and config; weights N(0, 0.02), norms 1; bf16 rounded to nearest even.
#   usage: make_random_model.py LAYERS f32|bf16 OUT_DIR [1b|7b]
# 7b: OLMo-2-1124-7B's shapes (d 4096, MLP 11008, 32 heads) instead.
import json, struct, sys, os
import numpy as np
L, dt, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
shape = sys.argv[4] if len(sys.argv) > 4 else "1b"
d, F, H, V = {"1b": (2048, 8192, 16, 100352), "7b": (4096, 11008, 32, 100352)}[shape]
rng = np.random.default_rng(20250425)
names = [("model.embed_tokens.weight", (V, d))]
for l in range(L):
    p = f"model.layers.{l}."
    names += [(p + "self_attn.q_proj.weight", (d, d)), (p + "self_attn.k_proj.weight", (d, d)),
              (p + "self_attn.v_proj.weight", (d, d)), (p + "self_attn.o_proj.weight", (d, d)),
              (p + "self_attn.q_norm.weight", (d,)), (p + "self_attn.k_norm.weight", (d,)),
              (p + "mlp.gate_proj.weight", (F, d)), (p + "mlp.up_proj.weight", (F, d)),
              (p + "mlp.down_proj.weight", (d, F)),
              (p + "post_attention_layernorm.weight", (d,)), (p + "post_feedforward_layernorm.weight", (d,))]
names += [("model.norm.weight", (d,)), ("lm_head.weight", (V, d))]
esz = 4 if dt == "f32" else 2
hdr, off = {}, 0
for n, s in names:
    nb = int(np.prod(s)) * esz
    hdr[n] = {"dtype": "F32" if dt == "f32" else "BF16", "shape": list(s), "data_offsets": [off, off + nb]}
    off += nb
h = json.dumps(hdr).encode()
h += b" " * ((8 - len(h) % 8) % 8)
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h)
    for n, s in names:
        a = np.ones(s, np.float32) if len(s) == 1 else (rng.standard_normal(s, dtype=np.float32) * 0.02)
        if dt == "bf16":
            a = (a.view(np.uint32) + 0x7FFF + ((a.view(np.uint32) >> 16) & 1)) >> 16
            a = a.astype(np.uint16)
        f.write(a.tobytes())
here = os.path.dirname(os.path.abspath(__file__))
cfg = json.load(open(os.path.join(here, "..", "..", "models", "olmo2-tiny", "config.json")))
cfg.update(hidden_size=d, intermediate_size=F, num_attention_heads=H, num_key_value_heads=H, vocab_size=V,
           num_hidden_layers=L, max_position_embeddings=4096, rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
           pad_token_id=100277, eos_token_id=100257, dtype="float32" if dt == "f32" else "bfloat16")
json.dump(cfg, open(os.path.join(out, "config.json"), "w"), indent=2)
print("wrote", out)
