#!/usr/bin/env python3
"""Golden data for `transpolmo ablate` (analysis/verify/intervention.c, ablate.c).

Run from the repository root with the reference venv:

    /opt/transpolmo-ref/bin/python tools/reference/make_golden_ablate.py [--out tests/data/golden/ablate]

On the bundled model (models/olmo2-tiny, Hugging Face transformers, float32, eager
attention, CPU) and three prompts tokenized by `tokenizers`, each intervention is
applied with plain PyTorch hooks on the HF modules, independently of the C code:

  heads zero       pre-hook on layers[L].self_attn.o_proj: columns h*dh:(h+1)*dh of its
                   input (attn.hook_z) set to 0
  heads steer      the same columns multiplied by alpha
  mlp zero         forward hook on layers[L].post_feedforward_layernorm returning 0
                   (hook_mlp_out: what the MLP adds to the residual on OLMo-2)
  neurons zero     pre-hook on layers[L].mlp.down_proj: column I of its input
                   (mlp.hook_post) set to 0
  feature zero     forward hook on layers[L] (blocks.L.hook_resid_post): the random
                   SAELens 'standard' SAE written to <out>/sae reads
                   a = relu((x - b_dec) W_enc + b_enc)[:, f] and x += -a * W_dec[f]
  feature steer    x += alpha * W_dec[f]

and the per-prompt metrics are computed from the clean and intervened logits in
float64 exactly as ablate.h defines them (ce over predicted positions, KL(clean ||
intervened) averaged over all positions, last-position logit and log-prob changes of
the chosen tokens). Output: <out>/golden.json (+ <out>/sae/{cfg.json,
sae_weights.safetensors}).
"""
import os

os.environ["CUDA_VISIBLE_DEVICES"] = ""
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse  # noqa: E402
import json  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

MODEL = "models/olmo2-tiny"
PROMPTS = [
    "The cat sat on the mat and the cat sat on the mat",
    "In the beginning God created the heaven and the earth.",
    "def __init__(self, other):\n    return self.value + other",
]
CHOSEN = [" cat", " the"]
SAE_HOOK_LAYER, SAE_WIDTH, SAE_SEED = 2, 64, 7


def metrics(clean, inter, ids, chosen):
    lc = torch.log_softmax(clean.double(), -1)
    li = torch.log_softmax(inter.double(), -1)
    T = ids.shape[0]
    tgt = ids[1:]
    ce_c = -lc[:-1].gather(1, tgt[:, None]).mean().item()
    ce_i = -li[:-1].gather(1, tgt[:, None]).mean().item()
    kl = (lc.exp() * (lc - li)).sum(-1).mean().item()
    dlogit = [float(inter[T - 1, c].double() - clean[T - 1, c].double()) for c in chosen]
    dlp = [float(li[T - 1, c] - lc[T - 1, c]) for c in chosen]
    return {"ce_clean": ce_c, "ce_intervened": ce_i, "delta_ce": ce_i - ce_c, "kl": kl, "tokens": int(T),
            "delta_logit": dlogit, "delta_logprob": dlp}


def make_sae(d, out):
    g = torch.Generator().manual_seed(SAE_SEED)
    W_enc = torch.randn(d, SAE_WIDTH, generator=g) * 0.1
    b_enc = torch.randn(SAE_WIDTH, generator=g) * 0.05
    W_dec = torch.randn(SAE_WIDTH, d, generator=g) * 0.1
    b_dec = torch.randn(d, generator=g) * 0.05
    os.makedirs(out, exist_ok=True)
    save_file({"W_enc": W_enc.contiguous(), "b_enc": b_enc, "W_dec": W_dec.contiguous(), "b_dec": b_dec},
              os.path.join(out, "sae_weights.safetensors"))
    cfg = {"architecture": "standard", "d_in": d, "d_sae": SAE_WIDTH, "dtype": "float32", "device": "cpu",
           "apply_b_dec_to_input": True, "normalize_activations": "none",
           "metadata": {"hook_name": "blocks.%d.hook_resid_post" % SAE_HOOK_LAYER, "model_name": "olmo2-tiny"}}
    with open(os.path.join(out, "cfg.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    return W_enc, b_enc, W_dec, b_dec


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/data/golden/ablate")
    args = ap.parse_args()
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(MODEL, torch_dtype=torch.float32, attn_implementation="eager")
    model.eval()
    tok = Tokenizer.from_file(os.path.join(MODEL, "tokenizer.json"))
    cfg = model.config
    dh = cfg.hidden_size // cfg.num_attention_heads
    layers = model.model.layers
    chosen = []
    for t in CHOSEN:
        ids = tok.encode(t, add_special_tokens=False).ids
        assert len(ids) == 1, (t, ids)
        chosen.append(ids[0])
    prompts = [tok.encode(p, add_special_tokens=False).ids for p in PROMPTS]
    W_enc, b_enc, W_dec, b_dec = make_sae(cfg.hidden_size, os.path.join(args.out, "sae"))

    def heads_pre(heads, scale):
        def fn(mod, inp):
            x = inp[0].clone()
            for h in heads:
                x[..., h * dh:(h + 1) * dh] *= scale
            return (x,)
        return fn

    def zero_out(mod, inp, out):
        return torch.zeros_like(out)

    def neuron_pre(cols):
        def fn(mod, inp):
            x = inp[0].clone()
            x[..., cols] = 0
            return (x,)
        return fn

    def feature_hook(f, mode, alpha=0.0):
        def fn(mod, inp, out):
            h = out[0] if isinstance(out, tuple) else out
            a = torch.relu((h - b_dec) @ W_enc + b_enc)[..., f]
            delta = -a if mode == "zero" else torch.full_like(a, alpha)
            h = h + delta[..., None] * W_dec[f]
            return (h,) + tuple(out[1:]) if isinstance(out, tuple) else h
        return fn

    cases = {
        "heads_zero": ("1.3,2.0", None, None, None, "zero", None,
                       lambda: [layers[1].self_attn.o_proj.register_forward_pre_hook(heads_pre([3], 0.0)),
                                layers[2].self_attn.o_proj.register_forward_pre_hook(heads_pre([0], 0.0))]),
        "heads_steer": ("0.1", None, None, None, "steer", 2.0,
                        lambda: [layers[0].self_attn.o_proj.register_forward_pre_hook(heads_pre([1], 2.0))]),
        "mlp_zero": (None, None, "1", None, "zero", None,
                     lambda: [layers[1].post_feedforward_layernorm.register_forward_hook(zero_out)]),
        "neurons_zero": (None, None, None, "2:101,2:7,3:500", "zero", None,
                         lambda: [layers[2].mlp.down_proj.register_forward_pre_hook(neuron_pre([101, 7])),
                                  layers[3].mlp.down_proj.register_forward_pre_hook(neuron_pre([500]))]),
        "feature_zero": (None, "blocks.2.hook_resid_post:5,blocks.2.hook_resid_post:17", None, None, "zero", None,
                         lambda: [layers[2].register_forward_hook(feature_hook(5, "zero")),
                                  layers[2].register_forward_hook(feature_hook(17, "zero"))]),
        "feature_steer": (None, "blocks.2.hook_resid_post:9", None, None, "steer", 3.0,
                          lambda: [layers[2].register_forward_hook(feature_hook(9, "steer", 3.0))]),
    }
    out = {"generator": "tools/reference/make_golden_ablate.py",
           "command": "/opt/transpolmo-ref/bin/python tools/reference/make_golden_ablate.py",
           "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "numpy": np.__version__},
           "model": MODEL, "prompts": PROMPTS, "prompt_ids": prompts, "chosen": CHOSEN, "chosen_ids": chosen,
           "sae": {"dir": "sae", "hook": "blocks.%d.hook_resid_post" % SAE_HOOK_LAYER, "seed": SAE_SEED},
           "cases": {}}
    with torch.no_grad():
        clean = [model(torch.tensor([p])).logits[0] for p in prompts]
        for name, (heads, feats, mlps, neurons, mode, alpha, install) in cases.items():
            handles = install()
            # two feature hooks on one layer must read the same x: apply both deltas
            # from the unedited output (as the C code does) by reading x before either
            if name == "feature_zero":
                for hd in handles:
                    hd.remove()

                def both(mod, inp, o):
                    h = o[0] if isinstance(o, tuple) else o
                    codes = torch.relu((h - b_dec) @ W_enc + b_enc)
                    h = h - codes[..., 5:6] * W_dec[5] - codes[..., 17:18] * W_dec[17]
                    return (h,) + tuple(o[1:]) if isinstance(o, tuple) else h
                handles = [layers[2].register_forward_hook(both)]
            rows = []
            for p, c in zip(prompts, clean):
                inter = model(torch.tensor([p])).logits[0]
                rows.append(metrics(c, inter, torch.tensor(p), chosen))
            for hd in handles:
                hd.remove()
            out["cases"][name] = {"heads": heads, "features": feats, "mlp": mlps, "neurons": neurons, "mode": mode,
                                  "alpha": alpha, "per_prompt": rows}
    with open(os.path.join(args.out, "golden.json"), "w") as f:
        json.dump(out, f, indent=1)
    print("wrote", os.path.join(args.out, "golden.json"))


if __name__ == "__main__":
    main()
