#!/usr/bin/env python3
"""PyTorch / transformers baseline for tools/bench/bench_forward.c.

    /opt/transpolmo-ref/bin/python tools/bench/forward_hf.py --model DIR --seq 512 --threads 2 --reps 5

Runs the Hugging Face Olmo2ForCausalLM in float32 (dtype=torch.float32; a bf16
checkpoint is upcast at load, like the C `upfront` mode) with transformers' default
attention implementation (sdpa), under torch.inference_mode, on one sequence of
`seq` random token ids, computing logits at every position (logits_to_keep=0), with
a forward hook on one decoder layer that copies its output into a numpy buffer (what
the C benchmark's capture callback does). One warm-up, then the median of `reps`
runs. The FLOP count is the C one (forward_flops() in src/model/forward.c): 2 x the
multiply-adds of every GEMM, including the full T x T attention products and the LM
head on all positions.

Prints `key=value` lines for tools/bench/forward.sh.
"""

import os

os.environ["CUDA_VISIBLE_DEVICES"] = ""
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402


def forward_flops(cfg, B, T):
    """Same formula as forward_flops(c, B, T, TP_LOGITS_ALL) in src/model/forward.c."""
    d, F = cfg.hidden_size, cfg.intermediate_size
    dh = getattr(cfg, "head_dim", None) or d // cfg.num_attention_heads
    qd, kd = cfg.num_attention_heads * dh, cfg.num_key_value_heads * dh
    rows = B * T
    per_layer = 2.0 * rows * (d * qd + 2 * d * kd + qd * d + 3 * d * F) \
        + 2.0 * 2.0 * B * cfg.num_attention_heads * T * T * dh
    return per_layer * cfg.num_hidden_layers + 2.0 * rows * d * cfg.vocab_size


def setup(model_dir, seq, threads, capture_layer=-1, seed=1234):
    """Model, input ids, capture buffer, capture layer and a function running one
    forward pass (returns the [1, seq, V] logits). Shared with forward_paired.py."""
    torch.set_num_threads(threads)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    cfg = model.config
    L = capture_layer if capture_layer >= 0 else cfg.num_hidden_layers // 2
    ids = torch.from_numpy(
        np.random.default_rng(seed).integers(0, cfg.vocab_size, (1, seq), dtype=np.int64))

    capture = np.empty((1, seq, cfg.hidden_size), dtype=np.float32)
    capture_t = torch.from_numpy(capture)

    def hook(_mod, _inp, out):
        h = out[0] if isinstance(out, tuple) else out
        capture_t.copy_(h)

    model.model.layers[L].register_forward_hook(hook)

    def run():
        with torch.inference_mode():
            return model(input_ids=ids, use_cache=False, logits_to_keep=0).logits

    return model, ids, capture, L, run


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--capture-layer", type=int, default=-1, help="default: the middle layer")
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()

    model, ids, capture, L, run = setup(args.model, args.seq, args.threads, args.capture_layer, args.seed)
    cfg = model.config
    times = []
    for rep in range(args.reps + 1):
        t0 = time.perf_counter()
        logits = run()
        dt = time.perf_counter() - t0
        if rep > 0:
            times.append(dt)
    assert logits.shape == (1, args.seq, cfg.vocab_size)
    finite = bool(torch.isfinite(logits).all()) and bool(np.isfinite(capture).all())
    med = statistics.median(times)
    fl = forward_flops(cfg, 1, args.seq)
    print(f"impl=torch {torch.__version__} transformers f32 attn={model.config._attn_implementation}")
    print(f"torch_threads={torch.get_num_threads()}")
    print(f"layers={cfg.num_hidden_layers} seq={args.seq} capture_layer={L} reps={args.reps}")
    print(f"median_s={med:.4f} min_s={min(times):.4f} max_s={max(times):.4f}")
    print(f"tokens_per_s={args.seq / med:.1f}")
    print(f"gflop={fl / 1e9:.2f} gflops={fl / med / 1e9:.1f}")
    print(f"peak_rss_mb={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")
    print(f"finite={int(finite)} capture_sum={float(capture.astype(np.float64).sum()):.6g}")


if __name__ == "__main__":
    main()
