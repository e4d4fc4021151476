#!/usr/bin/env python3
"""Golden gradients for the TranspOLMo backward pass (src/model/backward.h).

Run from the repository root with the reference venv (CPU, no network):

    /opt/transpolmo-ref/bin/python tools/reference/make_golden_grad.py [--out tests/data/golden/grad]

For every model below and a varlen batch of two sequences of different lengths it
writes, under <out>/<model>/:

  input_ids.npy           int32 [Σ lens]: the two sequences one after the other
  lens.npy                int32 [2]
  metrics.json            per metric: its value (f64), its arguments (target/distractor,
                          token/position), the points saved
  <metric>/<point>.npy    float32 d(metric)/d(point), [1, Σ lens, ...] as the C gradient
                          hooks deliver it (attn.hook_pattern: <point>.seq<b>.npy,
                          [1, H, n_b, n_b] per sequence)
  model/                  for the random "odd" models built here (config.json +
                          model.safetensors, bf16); the other models are read from
                          tests/data/models/ (make_golden.py) and models/olmo2-tiny

and <out>/MANIFEST.json (versions, seed, the exact definition of every metric and point,
the models, and how far these float32 gradients are from float64 autograd on the same
weights, which is what bounds the C test's tolerance from below).

Reference: Hugging Face transformers in float32, attn_implementation="eager", CPU, on the
weights as stored (bf16/f16 upcast). Each sequence is run alone (batch 1, positions from
0): the C varlen batch never lets two sequences interact either, so this is the same
function without padding or masks. The batch metric is built from the two graphs and
one .backward() gives every gradient. A capture point's gradient is the .grad of the
tensor the HF module produces there, kept with retain_grad() (names as in docs/hooks.md):

  hook_embed                 embed_tokens output (the same tensor as blocks.0.hook_resid_pre)
  blocks.L.hook_resid_pre    decoder layer L's input (= the output of layer L-1)
  blocks.L.attn.hook_q/k/v   q_norm/k_norm outputs (OLMo-2) or q_proj/k_proj (Llama); v_proj
  blocks.L.attn.hook_rot_q/k the two outputs of the modeling file's apply_rotary_pos_emb
                             (wrapped for the run), transposed to [1, T, heads, dh]
  blocks.L.attn.hook_pattern self_attn's attn_weights (the softmax output that multiplies V)
  blocks.L.attn.hook_z       o_proj's input
  blocks.L.attn.hook_out     self_attn's output (o_proj's output)
  blocks.L.hook_attn_out     post_attention_layernorm's output (OLMo-2); self_attn's output (Llama)
  blocks.L.hook_resid_mid    the MLP's input (OLMo-2) / post_attention_layernorm's input (Llama)
  blocks.L.mlp.hook_pre/pre_linear/post/out   gate_proj out, up_proj out, down_proj in, mlp out
  blocks.L.hook_mlp_out      post_feedforward_layernorm's output (OLMo-2); mlp's output (Llama)
  blocks.L.hook_resid_post   decoder layer L's output
  ln_final.hook_normalized   model.norm's output

Metrics (logits → float64 first, so d metric / d logits is formed in f64 and rounded to
f32 once, as metrics.c does):

  logit_diff  mean over sequences of logits[last](target) − logits[last](distractor);
              target = the top-1 and distractor = the top-2 token of the last position
  logprob     mean over sequences of log_softmax(logits[pos])[token], pos = n_b − 2,
              token = the sequence's own next token ids[pos + 1]
  mean_loss   mean over all predicted positions of the batch (n_b − 1 per sequence) of
              −log_softmax(logits[t])[ids[t + 1]]: transformers' causal-LM loss with
              labels = input_ids (a padded batch with −100 labels on the padding gives
              the same mean)
"""

import os

os.environ["CUDA_VISIBLE_DEVICES"] = ""  # CPU before torch is imported
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    Olmo2Config,
    Olmo2ForCausalLM,
)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_golden import LAYER_POINTS, reinit_  # noqa: E402  (the same init as the forward's models)

SEED = 20250611
METRICS = ["logit_diff", "logprob", "mean_loss"]

# Which points each model keeps, per metric: the gradient is linear in d metric /
# d logits, so each point type needs checking once per architecture and weight dtype,
# and the other metrics check their own d logits through a few points. Sets (the C test
# reads whatever metrics.json lists):
ALL = "all"   # every point: 17 per layer + hook_embed + ln_final.hook_normalized
# attention (q, k, v, pattern, z), the norm of the residual branch (resid_mid) and the
# MLP's inside (post) of every layer: the BF16/F16 weight paths and GQA shapes
MID = ["hook_embed", "ln_final.hook_normalized"] + [
    f"blocks.{{L}}.{p}" for p in ("attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_pattern", "attn.hook_z",
                                  "hook_resid_mid", "mlp.hook_post")]
FEW = ["hook_embed", "blocks.0.attn.hook_z", "ln_final.hook_normalized"]
# The bundled model is wide (d 256, F 768, 4 layers, 18 rows): the pattern of every
# layer, z of the first and last, the embedding (~110 KB in all).
BUNDLED = ["hook_embed", "blocks.0.attn.hook_z", "blocks.{last}.attn.hook_z", "blocks.{L}.attn.hook_pattern"]

MODELS = [
    dict(name="olmo2-mha-f32", dir="tests/data/models/olmo2-mha-f32", lens=(5, 3),
         points={"logit_diff": ALL, "logprob": FEW, "mean_loss": FEW}),
    dict(name="olmo2-gqa-bf16", dir="tests/data/models/olmo2-gqa-bf16", lens=(5, 3),
         points={"logit_diff": MID, "logprob": FEW, "mean_loss": FEW}),
    dict(name="olmo2-gqa-f16-sharded", dir="tests/data/models/olmo2-gqa-f16-sharded", lens=(3, 5),
         points={"logit_diff": MID, "logprob": FEW, "mean_loss": FEW}),
    dict(name="llama-gqa-tied", dir="tests/data/models/llama-gqa-tied", lens=(5, 3),
         points={"logit_diff": ALL, "logprob": FEW, "mean_loss": FEW}),
    dict(
        name="olmo2-tiny",
        dir="models/olmo2-tiny",
        prompts=["The cat sat on the mat and the dog sat on the", "The capital of France is"],
        points={"logit_diff": BUNDLED, "logprob": ["hook_embed"], "mean_loss": ["hook_embed"]},
    ),
    # Random configs with odd sizes: head dims 10 and 6 (not multiples of 16: the scalar
    # attention kernels), 3:1 and 3:1 GQA, widths not multiples of 8.
    dict(
        name="olmo2-odd",
        build=dict(
            cls=Olmo2ForCausalLM,
            cfg=Olmo2Config,
            kw=dict(hidden_size=30, num_attention_heads=3, num_key_value_heads=1, intermediate_size=46,
                    vocab_size=53, rms_norm_eps=1e-6, tie_word_embeddings=False,
                    rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
        ),
        lens=(9, 4),
        points={"logit_diff": ALL, "logprob": FEW, "mean_loss": FEW},
    ),
    dict(
        name="llama-odd",
        build=dict(
            cls=LlamaForCausalLM,
            cfg=LlamaConfig,
            kw=dict(hidden_size=36, num_attention_heads=6, num_key_value_heads=2, intermediate_size=50,
                    vocab_size=71, rms_norm_eps=1e-5, tie_word_embeddings=False,
                    rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
        ),
        lens=(4, 7),
        points={"logit_diff": MID, "logprob": FEW, "mean_loss": FEW},
    ),
]


# --------------------------------------------------------------------------------------
# models


def build_odd(spec, model_dir, seed):
    b = spec["build"]
    cfg = b["cfg"](num_hidden_layers=2, max_position_embeddings=64, initializer_range=0.1, hidden_act="silu",
                   attention_bias=False, **b["kw"])
    cfg._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = b["cls"](cfg).to(torch.float32).eval()
    reinit_(model, torch.Generator().manual_seed(seed))
    if os.path.isdir(model_dir):
        shutil.rmtree(model_dir)
    model.to(torch.bfloat16).save_pretrained(model_dir, safe_serialization=True)
    gc = os.path.join(model_dir, "generation_config.json")
    if os.path.exists(gc):
        os.remove(gc)


def load(model_dir, dtype=torch.float32):
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, attn_implementation="eager",
                                                 local_files_only=True)
    model.eval()
    assert model.config._attn_implementation == "eager"
    return model


def arch_of(model):
    return "olmo2" if "Olmo2" in type(model).__name__ else "llama"


def dims(model):
    c = model.config
    H, K = c.num_attention_heads, c.num_key_value_heads
    dh = getattr(c, "head_dim", None) or c.hidden_size // H
    return dict(d_model=c.hidden_size, n_layers=c.num_hidden_layers, n_heads=H, n_kv_heads=K, head_dim=dh,
                d_mlp=c.intermediate_size, vocab=c.vocab_size, tied=bool(c.tie_word_embeddings))


# --------------------------------------------------------------------------------------
# capture: the tensor of every point, kept with retain_grad()


def run_one(model, ids):
    """Forward of one sequence [T] with grad; returns (logits [T, V], {point: tensor})."""
    arch = arch_of(model)
    D = dims(model)
    H, K, dh, T = D["n_heads"], D["n_kv_heads"], D["head_dim"], ids.shape[0]
    m = model.model
    mod = sys.modules[type(model).__module__]
    keep, handles, layer = {}, [], {"L": None}

    def put(name, t, shape=None):
        t.retain_grad()
        keep[name] = (t, shape)

    def out_hook(name, shape=None):
        def hook(_m, _inp, out):
            put(name, out[0] if isinstance(out, (tuple, list)) else out, shape)
        return hook

    def in_hook(name, shape=None):
        def hook(_m, args, kwargs):
            put(name, args[0] if args else kwargs["hidden_states"], shape)
        return hook

    def embed_hook(_m, _inp, out):
        # The weights do not require grad: the graph starts at the embedding output, a
        # leaf that does (every later point's gradient is unchanged by this).
        leaf = out.detach().requires_grad_(True)
        put("hook_embed", leaf)
        return leaf

    handles.append(m.embed_tokens.register_forward_hook(embed_hook))
    handles.append(m.norm.register_forward_hook(out_hook("ln_final.hook_normalized")))
    for L, lay in enumerate(m.layers):
        p, a, mlp = f"blocks.{L}.", lay.self_attn, lay.mlp
        handles.append(lay.register_forward_pre_hook(in_hook(p + "hook_resid_pre"), with_kwargs=True))
        handles.append(lay.register_forward_hook(out_hook(p + "hook_resid_post")))
        qm, km = (a.q_norm, a.k_norm) if arch == "olmo2" else (a.q_proj, a.k_proj)
        handles.append(qm.register_forward_hook(out_hook(p + "attn.hook_q", (1, T, H, dh))))
        handles.append(km.register_forward_hook(out_hook(p + "attn.hook_k", (1, T, K, dh))))
        handles.append(a.v_proj.register_forward_hook(out_hook(p + "attn.hook_v", (1, T, K, dh))))

        def attn_pre(_m, _args, _kwargs, L=L):
            layer["L"] = L
        handles.append(a.register_forward_pre_hook(attn_pre, with_kwargs=True))

        def attn_out(_m, _inp, out, p=p):
            put(p + "attn.hook_out", out[0])
            put(p + "attn.hook_pattern", out[1])
        handles.append(a.register_forward_hook(attn_out))

        def o_in(_m, args, p=p):
            put(p + "attn.hook_z", args[0], (1, T, H, dh))
        handles.append(a.o_proj.register_forward_pre_hook(o_in))
        handles.append(mlp.gate_proj.register_forward_hook(out_hook(p + "mlp.hook_pre")))
        handles.append(mlp.up_proj.register_forward_hook(out_hook(p + "mlp.hook_pre_linear")))

        def down_in(_m, args, p=p):
            put(p + "mlp.hook_post", args[0])
        handles.append(mlp.down_proj.register_forward_pre_hook(down_in))
        handles.append(mlp.register_forward_hook(out_hook(p + "mlp.hook_out")))
        if arch == "olmo2":
            handles.append(lay.post_attention_layernorm.register_forward_hook(out_hook(p + "hook_attn_out")))
            handles.append(lay.post_feedforward_layernorm.register_forward_hook(out_hook(p + "hook_mlp_out")))
            handles.append(mlp.register_forward_pre_hook(in_hook(p + "hook_resid_mid"), with_kwargs=True))
        else:
            handles.append(lay.post_attention_layernorm.register_forward_pre_hook(
                in_hook(p + "hook_resid_mid"), with_kwargs=True))

    orig_rope = mod.apply_rotary_pos_emb

    def rope(q, k, cos, sin, *args, **kwargs):
        rq, rk = orig_rope(q, k, cos, sin, *args, **kwargs)
        p = f"blocks.{layer['L']}."
        assert p + "attn.hook_rot_q" not in keep, "apply_rotary_pos_emb called twice in a layer"
        put(p + "attn.hook_rot_q", rq, "heads")   # [1, H, T, dh] inside HF attention
        put(p + "attn.hook_rot_k", rk, "heads")
        return rq, rk

    mod.apply_rotary_pos_emb = rope
    try:
        logits = model(input_ids=ids[None], use_cache=False).logits[0]
    finally:
        mod.apply_rotary_pos_emb = orig_rope
        for h in handles:
            h.remove()
    for L in range(D["n_layers"]):
        assert f"blocks.{L}.attn.hook_rot_q" in keep, f"RoPE of layer {L} not seen"
        if arch == "llama":   # one tensor in Llama
            keep[f"blocks.{L}.hook_attn_out"] = keep[f"blocks.{L}.attn.hook_out"]
            keep[f"blocks.{L}.hook_mlp_out"] = keep[f"blocks.{L}.mlp.hook_out"]
    return logits, keep


def grad_of(entry):
    t, shape = entry
    g = t.grad
    assert g is not None, "no gradient reached the point"
    if shape == "heads":
        return g.transpose(1, 2).contiguous()
    return g.reshape(shape) if shape is not None else g


# --------------------------------------------------------------------------------------
# metrics (float64 from the float32 logits)


def metric_args(name, seqs, logits):
    if name == "logit_diff":
        top = [torch.topk(lg[-1].detach(), 2).indices.tolist() for lg in logits]
        return {"target": [t[0] for t in top], "distractor": [t[1] for t in top], "pos": None}
    if name == "logprob":
        pos = [len(s) - 2 for s in seqs]
        return {"token": [int(s[p + 1]) for s, p in zip(seqs, pos)], "pos": pos}
    return {}


def metric_value(name, args, seqs, logits):
    l64 = [lg.double() for lg in logits]
    if name == "logit_diff":
        v = [lg[-1, t] - lg[-1, d] for lg, t, d in zip(l64, args["target"], args["distractor"])]
        return torch.stack(v).mean()
    if name == "logprob":
        v = [torch.log_softmax(lg[p], -1)[t] for lg, p, t in zip(l64, args["pos"], args["token"])]
        return torch.stack(v).mean()
    tot = sum(torch.nn.functional.cross_entropy(lg[:-1], s[1:], reduction="sum") for lg, s in zip(l64, seqs))
    return tot / sum(len(s) - 1 for s in seqs)


def gradients(model, seqs, metric, args=None):
    runs = [run_one(model, s) for s in seqs]
    logits = [r[0] for r in runs]
    if args is None:
        args = metric_args(metric, seqs, logits)
    value = metric_value(metric, args, seqs, logits)
    value.backward()
    grads = {}
    for name in runs[0][1]:
        per = [grad_of(r[1][name]) for r in runs]
        grads[name] = per if name.endswith("hook_pattern") else torch.cat(per, dim=1)
    return float(value.item()), args, grads


# --------------------------------------------------------------------------------------


def rel_err(a, b):
    return (a.double() - b.double()).abs().max().item() / max(b.double().abs().max().item(), 1e-300)


def expand(points, n_layers):
    out = []
    for p in points:
        if "{L}" in p:
            out += [p.replace("{L}", str(L)) for L in range(n_layers)]
        else:
            out.append(p.replace("{last}", str(n_layers - 1)))
    return out


def all_points(n_layers):
    return ["hook_embed"] + [f"blocks.{L}.{p}" for L in range(n_layers) for p in LAYER_POINTS] + [
        "ln_final.hook_normalized"]


def make_seqs(spec, V, seed):
    if "prompts" in spec:
        tok = Tokenizer.from_file(os.path.join(spec["dir"], "tokenizer.json"))
        return [torch.tensor(tok.encode(p).ids, dtype=torch.int64) for p in spec["prompts"]]
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(0, V, (n,), generator=gen, dtype=torch.int64) for n in spec["lens"]]


def save_npy(path, t):
    arr = np.ascontiguousarray(t.detach().cpu().numpy())
    assert arr.dtype in (np.float32, np.int32), (path, arr.dtype)
    if arr.dtype == np.float32:
        assert np.isfinite(arr).all(), path
    np.save(path, arr, allow_pickle=False)


def check_model_grads(name, grads, n_layers):
    """Identities every run must show: points that are one tensor have one gradient."""
    assert torch.equal(grads["hook_embed"], grads["blocks.0.hook_resid_pre"]), name
    for L in range(n_layers - 1):
        assert torch.equal(grads[f"blocks.{L}.hook_resid_post"], grads[f"blocks.{L + 1}.hook_resid_pre"]), (name, L)
    for n, g in grads.items():
        gs = g if isinstance(g, list) else [g]
        assert all(torch.isfinite(x).all() for x in gs), (name, n)


def do_model(spec, idx, out_root):
    name = spec["name"]
    gdir = os.path.join(out_root, name)
    if os.path.isdir(gdir):
        shutil.rmtree(gdir)
    os.makedirs(gdir)
    mseed = SEED + 100 * (idx + 1)
    if "build" in spec:
        spec["dir"] = os.path.join(gdir, "model")
        build_odd(spec, spec["dir"], mseed)
    model = load(spec["dir"])
    for p in model.parameters():   # the activations' graph is all that is needed
        p.requires_grad_(False)
    D = dims(model)
    seqs = make_seqs(spec, D["vocab"], mseed + 7)
    lens = [len(s) for s in seqs]
    assert len(set(lens)) == 2, f"{name}: the two sequences must differ in length"

    # float64 autograd on the same weights: how far float32 autograd is from exact
    model64 = load(spec["dir"], torch.float64)
    for p in model64.parameters():
        p.requires_grad_(False)

    entry = {"name": name, "model_dir": os.path.relpath(spec["dir"]), "architecture": arch_of(model),
             "dims": D, "lens": lens, "metrics": {}}
    mjson = {"lens": lens, "metrics": {}}
    points_spec = spec["points"]
    for metric in METRICS:
        value, args, grads = gradients(model, seqs, metric)
        check_model_grads(name, grads, D["n_layers"])
        v64, _, g64 = gradients(model64, seqs, metric, args)
        want = points_spec[metric]
        pts = all_points(D["n_layers"]) if want == ALL else expand(want, D["n_layers"])
        os.makedirs(os.path.join(gdir, metric))
        worst = 0.0
        for p in pts:
            if p.endswith("hook_pattern"):
                for b, g in enumerate(grads[p]):
                    assert list(g.shape) == [1, D["n_heads"], lens[b], lens[b]], (name, p, g.shape)
                    save_npy(os.path.join(gdir, metric, f"{p}.seq{b}.npy"), g)
                    worst = max(worst, rel_err(g, g64[p][b]))
            else:
                g = grads[p]
                assert g.shape[0] == 1 and g.shape[1] == sum(lens), (name, p, g.shape)
                save_npy(os.path.join(gdir, metric, p + ".npy"), g)
                worst = max(worst, rel_err(g, g64[p]))
        mjson["metrics"][metric] = dict(args, value=value, points=pts)
        entry["metrics"][metric] = {"value": value, "value_f64_autograd": v64, "points": len(pts),
                                    "max_rel_err_f32_vs_f64_autograd": worst}
        print(f"{name} {metric}: value {value:.6f} (f64 {v64:.6f}), {len(pts)} points, "
              f"f32 vs f64 autograd max rel err {worst:.2e}")
        assert worst < 1e-5, f"{name} {metric}: float32 autograd too far from float64 ({worst})"
    ids = torch.cat(seqs).to(torch.int32)
    save_npy(os.path.join(gdir, "input_ids.npy"), ids)
    save_npy(os.path.join(gdir, "lens.npy"), torch.tensor(lens, dtype=torch.int32))
    with open(os.path.join(gdir, "metrics.json"), "w") as f:
        json.dump(mjson, f, indent=1)
        f.write("\n")
    return entry


def dir_size(path):
    return sum(os.path.getsize(os.path.join(r, f)) for r, _d, fs in os.walk(path) for f in fs)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="tests/data/golden/grad")
    args = ap.parse_args()
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    os.makedirs(args.out, exist_ok=True)

    manifest = {
        "generator": "tools/reference/make_golden_grad.py",
        "command": "/opt/transpolmo-ref/bin/python tools/reference/make_golden_grad.py --out " + args.out,
        "seed": SEED,
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                     "transformers": transformers.__version__, "numpy": np.__version__},
        "reference": "torch autograd through HF transformers in float32, attn_implementation=eager, CPU, "
                     "weights as stored (bf16/f16 upcast); each sequence of the batch run alone (batch 1, "
                     "positions from 0); one backward of the batch metric",
        "tolerance": "C test: per point max|c - ref| / max|ref| <= 1e-4 (tests/unit/test_backward.c)",
        "layout": "<metric>/<point>.npy float32 [1, sum(lens), ...] (sequence 0's rows, then sequence 1's); "
                  "attn.hook_pattern: <point>.seq<b>.npy [1, H, n_b, n_b]",
        "metrics": {
            "logit_diff": "mean over sequences b of logits_b[n_b-1, target_b] - logits_b[n_b-1, distractor_b]; "
                          "target/distractor = top-1/top-2 token of the last position",
            "logprob": "mean over sequences b of log_softmax(logits_b[pos_b])[token_b], pos_b = n_b-2, "
                       "token_b = ids_b[pos_b+1]",
            "mean_loss": "sum over sequences b and t < n_b-1 of -log_softmax(logits_b[t])[ids_b[t+1]], divided "
                         "by sum(n_b-1) (transformers' causal-LM loss, labels = input_ids)",
            "precision": "metric formed in float64 from the float32 logits",
        },
        "points": {
            "definition": "d(metric)/d(tensor) of the tensor HF produces at the point, kept with retain_grad() "
                          "(docs/hooks.md for the tensors); attn.hook_pattern: every entry of attn_weights, the "
                          "masked ones included (z = attn_weights @ V reads them); rot_q/rot_k: the outputs of "
                          "the modeling file's apply_rotary_pos_emb",
            "sets": {"all": "every point (17 per layer + hook_embed + ln_final.hook_normalized)",
                     "mid": MID, "few": FEW, "bundled": BUNDLED},
            "per_model": "each model's metrics.json lists the points of each metric",
        },
        "models": [],
    }
    for idx, spec in enumerate(MODELS):
        manifest["models"].append(do_model(spec, idx, args.out))
    with open(os.path.join(args.out, "MANIFEST.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    print(f"total size of {args.out}: {dir_size(args.out) / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
