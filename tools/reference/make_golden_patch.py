#!/usr/bin/env python3
"""Golden data for activation patching and causal tracing (src/analysis/circuits/patch.h)
on the bundled model, made by TransformerLens itself.

Run from the repository root with the reference venv (no network):

    /opt/transpolmo-ref/bin/python tools/reference/make_golden_patch.py [--model models/olmo2-tiny]

The model is loaded with TransformerLens 3.9's TransformerBridge.boot_transformers(<model
dir>) (float32, CPU) and the sweeps are TransformerLens's own functions, unchanged:
  patching.get_act_patch_resid_pre / get_act_patch_attn_out / get_act_patch_mlp_out
      [layer, pos]: the clean blocks.L.hook_resid_pre / hook_attn_out / hook_mlp_out row
      at pos written into the corrupted run
  patching.get_act_patch_attn_head_out_all_pos
      [layer, head]: the clean blocks.L.attn.hook_z of one head at every position
with the metric (LD_patched - LD_corr) / (LD_clean - LD_corr), LD = logit(target) -
logit(distractor) at the last position (LD_clean, LD_corr from the bridge's own runs).
On the bridge, blocks.L.hook_attn_out is OLMo-2's post_attention_layernorm output (what
is added to the residual), as in TranspOLMo.

Causal tracing (Meng et al. 2022, ROME causal_trace.py, trace_with_patch): noise.npy,
[SAMPLES, n, d] float32 = 3 * std(W_E) * N(0, 1) (numpy default_rng(SEED)), is added
by a hook on hook_embed to the embeddings of the noised positions of the clean
prompt; for each sample and each (layer, pos) of resid_pre / attn_out / mlp_out the
clean activation is restored at that point by a second hook; the value is
p(target) = softmax(logits[-1])[target] (float64 from the float32 logits). Written:
the mean over samples (trace_<sweep>.npy) and its normalized form
(p - mean p_corr) / (p_clean - mean p_corr) (trace_<sweep>_norm.npy). The C test
passes noise.npy to TranspOLMo (--noise-file) so both add the same noise.

Writes tests/data/golden/patch/:
  reference.json              prompts, token ids, target/distractor, LD_clean/LD_corr,
                              p_clean, p_corr per sample, std(W_E), versions, the
                              model file's sha256 (the goldens follow the bundled model:
                              rerun this script when it changes)
  <sweep>.npy                 float32 [L, T] (resid_pre, attn_out, mlp_out), [L, H] (z)
  noise.npy                   float32 [SAMPLES, n, d]
  trace_<sweep>.npy, trace_<sweep>_norm.npy   float64 [L, T]
"""
import argparse
import hashlib
import json
import os
import sys

os.environ["CUDA_VISIBLE_DEVICES"] = ""
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformer_lens  # noqa: E402,F401
from transformer_lens import patching  # noqa: E402
from transformer_lens.model_bridge import TransformerBridge  # noqa: E402

# A bracket-closing pair of equal token length that the bundled model answers
# differently: after "foo(1, 2" it prefers ")" to "]", after "foo[1, 2" the reverse.
CLEAN, CORRUPT, TARGET, DISTRACTOR = "x = foo(1, 2", "x = foo[1, 2", ")", "]"
# A fact the bundled model knows (p(" God") = 0.86), the subject noised.
TRACE_PROMPT, TRACE_TARGET, TRACE_NOISED = "The LORD is my", " God", " LORD"
SAMPLES, SEED, NOISE_SCALE = 3, 20250601, 3.0

SWEEPS = {
    "resid_pre": patching.get_act_patch_resid_pre,
    "attn_out": patching.get_act_patch_attn_out,
    "mlp_out": patching.get_act_patch_mlp_out,
    "z": patching.get_act_patch_attn_head_out_all_pos,
}
FUNCTION_NAMES = {"resid_pre": "patching.get_act_patch_resid_pre", "attn_out": "patching.get_act_patch_attn_out",
                  "mlp_out": "patching.get_act_patch_mlp_out", "z": "patching.get_act_patch_attn_head_out_all_pos"}
HOOK = {"resid_pre": "blocks.{}.hook_resid_pre", "attn_out": "blocks.{}.hook_attn_out",
        "mlp_out": "blocks.{}.hook_mlp_out"}


def one_token(bridge, text):
    ids = bridge.to_tokens(text, prepend_bos=False)[0].tolist()
    if len(ids) != 1:
        sys.exit(f"{text!r} is {len(ids)} tokens {ids}, not one")
    return ids[0]


def activation_patching(bridge, out):
    clean = bridge.to_tokens(CLEAN, prepend_bos=False)
    corrupt = bridge.to_tokens(CORRUPT, prepend_bos=False)
    assert clean.shape == corrupt.shape, (clean, corrupt)
    t, d = one_token(bridge, TARGET), one_token(bridge, DISTRACTOR)

    def ld(logits):
        return logits[0, -1, t] - logits[0, -1, d]

    clean_logits, clean_cache = bridge.run_with_cache(clean)
    ld_clean, ld_corr = ld(clean_logits).item(), ld(bridge(corrupt)).item()

    def metric(logits):
        return (ld(logits) - ld_corr) / (ld_clean - ld_corr)

    for name, fn in SWEEPS.items():
        res = fn(bridge, corrupt, clean_cache, metric)
        np.save(os.path.join(out, f"{name}.npy"), res.detach().cpu().numpy().astype(np.float32))
        print(f"{name}: {tuple(res.shape)}, max {res.max().item():.4f}")
    return {"clean": CLEAN, "corrupt": CORRUPT, "clean_ids": clean[0].tolist(), "corrupt_ids": corrupt[0].tolist(),
            "target": TARGET, "target_id": t, "distractor": DISTRACTOR, "distractor_id": d,
            "LD_clean": ld_clean, "LD_corr": ld_corr, "functions": FUNCTION_NAMES}


def causal_tracing(bridge, out):
    ids = bridge.to_tokens(TRACE_PROMPT, prepend_bos=False)
    t = one_token(bridge, TRACE_TARGET)
    noised = [i for i, tok in enumerate(ids[0].tolist()) if bridge.to_string([tok]) == TRACE_NOISED]
    assert noised, (TRACE_PROMPT, TRACE_NOISED)
    W_E = bridge.W_E.detach().float()
    emb_std = W_E.std().item()   # torch's unbiased std over every entry
    rng = np.random.default_rng(SEED)
    noise = (NOISE_SCALE * emb_std * rng.standard_normal((SAMPLES, len(noised), W_E.shape[1]))).astype(np.float32)
    np.save(os.path.join(out, "noise.npy"), noise)

    def prob(logits):
        return torch.softmax(logits[0, -1].double(), dim=-1)[t].item()

    clean_logits, cache = bridge.run_with_cache(ids)
    p_clean = prob(clean_logits)
    L, T = bridge.cfg.n_layers, ids.shape[1]

    def add_noise(s):
        def hook(x, hook):
            x = x.clone()
            x[0, noised] += torch.from_numpy(noise[s])
            return x
        return hook

    def restore(name, pos):
        def hook(x, hook):
            x = x.clone()
            x[0, pos] = cache[name][0, pos]
            return x
        return hook

    p_corr = [prob(bridge.run_with_hooks(ids, fwd_hooks=[("hook_embed", add_noise(s))])) for s in range(SAMPLES)]
    pc = float(np.mean(p_corr))
    for sweep, hook_name in HOOK.items():
        p = np.zeros((L, T))
        for layer in range(L):
            name = hook_name.format(layer)
            for pos in range(T):
                p[layer, pos] = np.mean([prob(bridge.run_with_hooks(
                    ids, fwd_hooks=[("hook_embed", add_noise(s)), (name, restore(name, pos))])) for s in range(SAMPLES)])
        np.save(os.path.join(out, f"trace_{sweep}.npy"), p)
        np.save(os.path.join(out, f"trace_{sweep}_norm.npy"), (p - pc) / (p_clean - pc))
        print(f"trace {sweep}: max p {p.max():.4f}")
    return {"prompt": TRACE_PROMPT, "ids": ids[0].tolist(), "target": TRACE_TARGET, "target_id": t,
            "noised_text": TRACE_NOISED, "noised_positions": noised, "samples": SAMPLES, "seed": SEED,
            "noise_scale": NOISE_SCALE, "embedding_std": emb_std, "p_clean": p_clean, "p_corr": p_corr}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/olmo2-tiny")
    ap.add_argument("--out", default="tests/data/golden/patch")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    bridge = TransformerBridge.boot_transformers(args.model, device="cpu", dtype=torch.float32)
    ref = {"generator": "tools/reference/make_golden_patch.py",
           "command": "/opt/transpolmo-ref/bin/python tools/reference/make_golden_patch.py",
           "model": args.model,
           "model_sha256": hashlib.sha256(open(os.path.join(args.model, "model.safetensors"), "rb").read()).hexdigest(),
           "loader": "transformer_lens.model_bridge.TransformerBridge.boot_transformers(model dir), float32, CPU",
           "versions": {"transformer_lens": __import__("importlib.metadata").metadata.version("transformer-lens"),
                        "torch": torch.__version__, "numpy": np.__version__},
           "patching": activation_patching(bridge, args.out),
           "tracing": causal_tracing(bridge, args.out)}
    with open(os.path.join(args.out, "reference.json"), "w") as f:
        json.dump(ref, f, indent=2)
        f.write("\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
