#!/usr/bin/env python3
"""A random OLMo-2 checkpoint with OLMo-2-0425-1B's shapes, for tools/bench/forward.sh.

    /opt/transpolmo-ref/bin/python tools/bench/make_bench_model.py --layers 4 --dtype bf16 \
        --out /tmp/tp-bench/olmo2-1b-L4-bf16

Shapes are the published allenai/OLMo-2-0425-1B config.json (hidden 2048, MLP 8192,
16 heads, 16 kv heads, vocab 100352, RoPE theta 5e5, eps 1e-6, 4096 positions,
untied head); only the layer count changes. Weights are transformers' own random
init from a fixed seed, so the f32 and bf16 checkpoints of one layer count hold the
same values (bf16 = f32 rounded). No Hub access is needed. If DIR already holds a
complete checkpoint made with the same arguments, nothing is done.
"""

import os

os.environ["CUDA_VISIBLE_DEVICES"] = ""
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
from transformers import Olmo2Config, Olmo2ForCausalLM  # noqa: E402

SEED = 20250425
MARKER = "bench_model.json"

# allenai/OLMo-2-0425-1B config.json, minus num_hidden_layers.
OLMO2_1B = dict(
    vocab_size=100352,
    hidden_size=2048,
    intermediate_size=8192,
    num_attention_heads=16,
    num_key_value_heads=16,
    hidden_act="silu",
    max_position_embeddings=4096,
    initializer_range=0.02,
    rms_norm_eps=1e-6,
    tie_word_embeddings=False,
    attention_bias=False,
    pad_token_id=100277,
    eos_token_id=100257,
    bos_token_id=None,
    rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, required=True)
    ap.add_argument("--dtype", choices=["f32", "bf16"], required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    want = {"layers": args.layers, "dtype": args.dtype, "seed": SEED, "shape": "OLMo-2-0425-1B"}
    marker = os.path.join(args.out, MARKER)
    if os.path.exists(marker):
        with open(marker) as fh:
            if json.load(fh) == want:
                print(f"cached: {args.out}")
                return
    if os.path.exists(args.out):
        shutil.rmtree(args.out)

    t0 = time.time()
    torch.manual_seed(SEED)
    cfg = Olmo2Config(num_hidden_layers=args.layers, **OLMO2_1B)
    model = Olmo2ForCausalLM(cfg).eval()
    if args.dtype == "bf16":
        model = model.to(torch.bfloat16)
    tmp = args.out + ".tmp"
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    model.save_pretrained(tmp)
    with open(os.path.join(tmp, MARKER), "w") as fh:
        json.dump(want, fh)
    os.rename(tmp, args.out)  # complete or absent, never half-written
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.out}: {n / 1e9:.3f} B params, {args.dtype}, {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
