#!/usr/bin/env python3
"""Deterministic golden data for the TranspOLMo C forward pass.

Run from the repository root with the reference venv:

    /opt/transpolmo-ref/bin/python tools/reference/make_golden.py [--out tests/data]

It (re)builds, from a fixed seed and with no network access:

  <out>/models/<name>/            tiny random Olmo2 / Llama checkpoints (save_pretrained)
  <out>/golden/<name>/            input_ids.npy, logits.npy, one .npy per capture point,
                                  edit.json + logits_edit.npy (intervention golden)
  <out>/golden/MANIFEST.json      versions, seed, models, point list with shapes

Every reference tensor is computed in float32 with eager attention by the Hugging
Face implementation itself, on the weights exactly as they were stored (bf16/f16
checkpoints are reloaded and upcast to f32).  Capture points are taken with forward
hooks / pre-hooks on HF modules; rot_q/rot_k are obtained by applying the model's own
`apply_rotary_pos_emb` (from its modeling file) to the captured q/k with the cos/sin
produced by the model's own rotary embedding module.  Names follow TransformerLens;
see docs/hooks.md for the exact meaning of each point.
"""

import os

os.environ["CUDA_VISIBLE_DEVICES"] = ""  # force CPU before torch is imported
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
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    Olmo2Config,
    Olmo2ForCausalLM,
)

SEED = 20240917
BATCH, SEQ = 2, 12
COMMON = dict(
    hidden_size=64,
    num_hidden_layers=2,
    vocab_size=160,
    intermediate_size=112,
    max_position_embeddings=64,
    initializer_range=0.1,
    hidden_act="silu",
    attention_bias=False,
)
INIT_STD = 0.1  # std of every Linear / Embedding weight
NORM_STD = 0.2  # RMSNorm weights are 1 + NORM_STD * randn

EDIT = {"layer": 0, "hook": "hook_resid_post", "scale": 0.5, "shift": 0.25, "position": 5}

MODELS = [
    dict(
        name="olmo2-mha-f32",
        arch="olmo2",
        storage_dtype=torch.float32,
        max_shard_size=None,
        config=dict(
            num_attention_heads=4,
            num_key_value_heads=4,
            rms_norm_eps=1e-6,
            tie_word_embeddings=False,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        ),
    ),
    dict(
        name="olmo2-gqa-bf16",
        arch="olmo2",
        storage_dtype=torch.bfloat16,
        max_shard_size=None,
        config=dict(
            num_attention_heads=4,
            num_key_value_heads=2,
            rms_norm_eps=1e-5,
            tie_word_embeddings=False,
            rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
        ),
    ),
    dict(
        name="olmo2-gqa-f16-sharded",
        arch="olmo2",
        storage_dtype=torch.float16,
        max_shard_size="64KB",
        config=dict(
            num_attention_heads=8,
            num_key_value_heads=2,
            rms_norm_eps=1e-6,
            tie_word_embeddings=False,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        ),
    ),
    dict(
        name="llama-gqa-tied",
        arch="llama",
        storage_dtype=torch.float32,
        max_shard_size=None,
        config=dict(
            num_attention_heads=4,
            num_key_value_heads=2,
            rms_norm_eps=1e-5,
            tie_word_embeddings=True,
            rope_parameters={
                "rope_type": "llama3",
                "rope_theta": 10000.0,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 16,
            },
        ),
    ),
]

LAYER_POINTS = [
    "hook_resid_pre",
    "attn.hook_q",
    "attn.hook_k",
    "attn.hook_v",
    "attn.hook_rot_q",
    "attn.hook_rot_k",
    "attn.hook_pattern",
    "attn.hook_z",
    "attn.hook_out",
    "hook_attn_out",
    "hook_resid_mid",
    "mlp.hook_pre",
    "mlp.hook_pre_linear",
    "mlp.hook_post",
    "mlp.hook_out",
    "hook_mlp_out",
    "hook_resid_post",
]


def point_shape(point, B, T, d, H, K, dh, F):
    return {
        "hook_embed": [B, T, d],
        "ln_final.hook_normalized": [B, T, d],
        "hook_resid_pre": [B, T, d],
        "attn.hook_q": [B, T, H, dh],
        "attn.hook_k": [B, T, K, dh],
        "attn.hook_v": [B, T, K, dh],
        "attn.hook_rot_q": [B, T, H, dh],
        "attn.hook_rot_k": [B, T, K, dh],
        "attn.hook_pattern": [B, H, T, T],
        "attn.hook_z": [B, T, H, dh],
        "attn.hook_out": [B, T, d],
        "hook_attn_out": [B, T, d],
        "hook_resid_mid": [B, T, d],
        "mlp.hook_pre": [B, T, F],
        "mlp.hook_pre_linear": [B, T, F],
        "mlp.hook_post": [B, T, F],
        "mlp.hook_out": [B, T, d],
        "hook_mlp_out": [B, T, d],
        "hook_resid_post": [B, T, d],
    }[point]


# --------------------------------------------------------------------------------------
# model construction


def build_config(spec):
    kw = dict(COMMON)
    kw.update(spec["config"])
    cls = Olmo2Config if spec["arch"] == "olmo2" else LlamaConfig
    cfg = cls(**kw)
    cfg._attn_implementation = "eager"
    return cfg


@torch.no_grad()
def reinit_(model, gen):
    """Deterministic init independent of HF's _init_weights: every matrix ~ N(0, INIT_STD),
    every RMSNorm weight = 1 + NORM_STD * randn (so ignoring a norm weight is detectable)."""
    for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        if name.endswith("norm.weight"):
            p.copy_(1.0 + NORM_STD * torch.randn(p.shape, generator=gen, dtype=torch.float32))
        elif p.dim() == 2:
            p.copy_(INIT_STD * torch.randn(p.shape, generator=gen, dtype=torch.float32))
        else:
            raise RuntimeError(f"unexpected parameter {name} {tuple(p.shape)}")


def build_and_save(spec, model_dir, seed):
    cfg = build_config(spec)
    cls = Olmo2ForCausalLM if spec["arch"] == "olmo2" else LlamaForCausalLM
    torch.manual_seed(seed)
    model = cls(cfg).to(torch.float32).eval()
    gen = torch.Generator().manual_seed(seed)
    reinit_(model, gen)
    if cfg.tie_word_embeddings:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    model = model.to(spec["storage_dtype"])
    if os.path.isdir(model_dir):
        shutil.rmtree(model_dir)
    kwargs = {}
    if spec["max_shard_size"] is not None:
        kwargs["max_shard_size"] = spec["max_shard_size"]
    model.save_pretrained(model_dir, safe_serialization=True, **kwargs)
    # generation_config.json is irrelevant to the C loader; keep the tree minimal.
    gc = os.path.join(model_dir, "generation_config.json")
    if os.path.exists(gc):
        os.remove(gc)
    return model


def load_reference(model_dir):
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32, attn_implementation="eager", local_files_only=True
    )
    model.eval()
    assert model.config._attn_implementation == "eager"
    for n, p in model.named_parameters():
        assert p.dtype == torch.float32, n
    return model


# --------------------------------------------------------------------------------------
# capture


def _first(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def _hidden_arg(args, kwargs):
    if args:
        return args[0]
    return kwargs["hidden_states"]


def capture(model, input_ids, arch):
    """Run HF's forward once with hooks; return (logits, dict point -> f32 tensor)."""
    cfg = model.config
    H, K = cfg.num_attention_heads, cfg.num_key_value_heads
    dh = getattr(cfg, "head_dim", None) or cfg.hidden_size // H
    B, T = input_ids.shape
    mod = sys.modules[type(model).__module__]
    apply_rope = mod.apply_rotary_pos_emb  # HF's own function from the modeling file

    acts = {}
    raw = {}
    handles = []

    def fwd(name, fn=lambda o: _first(o)):
        def hook(_m, _inp, out):
            acts[name] = fn(out).detach().clone()

        return hook

    def pre(name):
        def hook(_m, args, kwargs):
            acts[name] = _hidden_arg(args, kwargs).detach().clone()

        return hook

    m = model.model
    handles.append(m.embed_tokens.register_forward_hook(fwd("hook_embed")))

    def rot_hook(_m, _inp, out):
        raw["cos"], raw["sin"] = out[0].detach().clone(), out[1].detach().clone()

    handles.append(m.rotary_emb.register_forward_hook(rot_hook))
    handles.append(m.norm.register_forward_hook(fwd("ln_final.hook_normalized")))

    for L, layer in enumerate(m.layers):
        p = f"blocks.{L}."
        a = layer.self_attn
        handles.append(layer.register_forward_pre_hook(pre(p + "hook_resid_pre"), with_kwargs=True))
        handles.append(layer.register_forward_hook(fwd(p + "hook_resid_post")))
        if arch == "olmo2":
            qmod, kmod = a.q_norm, a.k_norm
        else:
            qmod, kmod = a.q_proj, a.k_proj
        handles.append(qmod.register_forward_hook(fwd(p + "attn.hook_q", lambda o: o.view(B, T, H, dh))))
        handles.append(kmod.register_forward_hook(fwd(p + "attn.hook_k", lambda o: o.view(B, T, K, dh))))
        handles.append(a.v_proj.register_forward_hook(fwd(p + "attn.hook_v", lambda o: o.view(B, T, K, dh))))

        def attn_hook(_m, _inp, out, p=p):
            acts[p + "attn.hook_out"] = out[0].detach().clone()
            assert out[1] is not None, "eager attention must return weights"
            acts[p + "attn.hook_pattern"] = out[1].detach().clone()

        handles.append(a.register_forward_hook(attn_hook))

        def o_pre(_m, args, p=p):
            acts[p + "attn.hook_z"] = args[0].detach().clone().view(B, T, H, dh)

        handles.append(a.o_proj.register_forward_pre_hook(o_pre))
        mlp = layer.mlp
        handles.append(mlp.gate_proj.register_forward_hook(fwd(p + "mlp.hook_pre")))
        handles.append(mlp.up_proj.register_forward_hook(fwd(p + "mlp.hook_pre_linear")))

        def down_pre(_m, args, p=p):
            acts[p + "mlp.hook_post"] = args[0].detach().clone()

        handles.append(mlp.down_proj.register_forward_pre_hook(down_pre))
        handles.append(mlp.register_forward_hook(fwd(p + "mlp.hook_out")))
        if arch == "olmo2":
            handles.append(layer.post_attention_layernorm.register_forward_hook(fwd(p + "hook_attn_out")))
            handles.append(
                layer.post_feedforward_layernorm.register_forward_hook(fwd(p + "hook_mlp_out"))
            )
            # OLMo-2 (post-norm): the MLP reads the residual stream directly.
            handles.append(mlp.register_forward_pre_hook(pre(p + "hook_resid_mid"), with_kwargs=True))
        else:
            # Llama (pre-norm): ln2 = post_attention_layernorm reads resid_mid.
            handles.append(
                layer.post_attention_layernorm.register_forward_pre_hook(
                    pre(p + "hook_resid_mid"), with_kwargs=True
                )
            )

        # rot_q / rot_k: HF's apply_rotary_pos_emb on the captured pre-RoPE q/k.
        def attn_pre(_m, args, kwargs, p=p):
            raw[p + "pos_emb"] = tuple(t.detach().clone() for t in kwargs["position_embeddings"])

        handles.append(a.register_forward_pre_hook(attn_pre, with_kwargs=True))

    try:
        with torch.no_grad():
            logits = model(input_ids=input_ids, use_cache=False).logits.detach().clone()
    finally:
        for h in handles:
            h.remove()

    for L in range(len(m.layers)):
        p = f"blocks.{L}."
        if arch == "llama":
            acts[p + "hook_attn_out"] = acts[p + "attn.hook_out"]
            acts[p + "hook_mlp_out"] = acts[p + "mlp.hook_out"]
        cos, sin = raw["cos"], raw["sin"]
        c2, s2 = raw[p + "pos_emb"]
        assert torch.equal(cos, c2) and torch.equal(sin, s2)
        q = acts[p + "attn.hook_q"].transpose(1, 2)  # [B,H,T,dh] as inside HF attention
        k = acts[p + "attn.hook_k"].transpose(1, 2)
        rq, rk = apply_rope(q, k, cos, sin)
        acts[p + "attn.hook_rot_q"] = rq.transpose(1, 2).contiguous()
        acts[p + "attn.hook_rot_k"] = rk.transpose(1, 2).contiguous()
    return logits, acts, raw


def edited_logits(model, input_ids, edit):
    def hook(_m, _inp, out):
        h = _first(out)
        h = h.clone()
        pos = edit["position"]
        h[:, pos, :] = h[:, pos, :] * edit["scale"] + edit["shift"]
        if isinstance(out, (tuple, list)):
            return (h, *out[1:])
        return h

    assert edit["hook"] == "hook_resid_post"
    handle = model.model.layers[edit["layer"]].register_forward_hook(hook)
    try:
        with torch.no_grad():
            return model(input_ids=input_ids, use_cache=False).logits.detach().clone()
    finally:
        handle.remove()


# --------------------------------------------------------------------------------------
# checks


def close(a, b, tol=1e-5):
    """Relative max-abs error (the C tests' metric)."""
    a, b = a.double(), b.double()
    return (a - b).abs().max().item() / max(b.abs().max().item(), 1e-30) <= tol


def sanity(model, arch, acts, logits, raw, B, T):
    cfg = model.config
    H, K = cfg.num_attention_heads, cfg.num_key_value_heads
    dh = getattr(cfg, "head_dim", None) or cfg.hidden_size // H
    nL = cfg.num_hidden_layers
    assert torch.equal(acts["hook_embed"], acts["blocks.0.hook_resid_pre"])
    for L in range(nL):
        p = f"blocks.{L}."
        g = lambda n: acts[p + n]  # noqa: E731
        assert close(g("hook_resid_mid"), g("hook_resid_pre") + g("hook_attn_out")), p + "resid_mid"
        assert close(g("hook_resid_post"), g("hook_resid_mid") + g("hook_mlp_out")), p + "resid_post"
        if L + 1 < nL:
            assert torch.equal(g("hook_resid_post"), acts[f"blocks.{L + 1}.hook_resid_pre"])
        post = torch.nn.functional.silu(g("mlp.hook_pre")) * g("mlp.hook_pre_linear")
        assert close(g("mlp.hook_post"), post), p + "mlp.hook_post"
        # The eager pattern must be reproducible from rot_q/rot_k (validates the RoPE reference).
        rq = g("attn.hook_rot_q").transpose(1, 2)
        rk = g("attn.hook_rot_k").transpose(1, 2).repeat_interleave(H // K, dim=1)
        s = (rq @ rk.transpose(-1, -2)) * dh**-0.5
        mask = torch.ones(T, T, dtype=torch.bool).triu(1)
        s = s.masked_fill(mask, float("-inf"))
        pat = torch.softmax(s, dim=-1)
        assert close(g("attn.hook_pattern"), pat), p + "pattern"
        assert (g("attn.hook_pattern").masked_select(mask.expand(B, H, T, T)) == 0).all()
        # z = pattern @ v (GQA-expanded)
        v = g("attn.hook_v").transpose(1, 2).repeat_interleave(H // K, dim=1)
        z = (g("attn.hook_pattern") @ v).transpose(1, 2)
        assert close(g("attn.hook_z"), z), p + "z"
        # RoPE actually rotates (position 0 is identity, later positions are not)
        assert torch.allclose(g("attn.hook_rot_q")[:, 0], g("attn.hook_q")[:, 0], atol=1e-6)
        assert not torch.allclose(g("attn.hook_rot_q")[:, 3], g("attn.hook_q")[:, 3], atol=1e-3)
    W = model.lm_head.weight
    assert close(logits, acts["ln_final.hook_normalized"] @ W.T), "logits"
    # Sanity: RMSNorm weights are non-trivial.
    for n, prm in model.named_parameters():
        if n.endswith("norm.weight"):
            assert (prm - 1).abs().max() > 0.1, n


def rope_report(model):
    re = model.model.rotary_emb
    cfg = model.config
    H = cfg.num_attention_heads
    dh = getattr(cfg, "head_dim", None) or cfg.hidden_size // H
    base = cfg.rope_parameters["rope_theta"]
    plain = 1.0 / (base ** (torch.arange(0, dh, 2, dtype=torch.float32) / dh))
    return {
        "rope_type": re.rope_type,
        "attention_scaling": float(re.attention_scaling),
        "inv_freq": [float(x) for x in re.inv_freq],
        "n_inv_freq_changed_by_scaling": int((~torch.isclose(re.inv_freq, plain, rtol=1e-6)).sum()),
    }


# --------------------------------------------------------------------------------------


def make_input_ids(vocab, seed):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab - 1, (BATCH, SEQ), generator=gen, dtype=torch.int64)
    ids[0, 3] = 0
    ids[1, 7] = vocab - 1
    ids[1, 0] = vocab - 1
    ids[0, SEQ - 1] = 0
    return ids


def save_npy(path, t):
    arr = t.detach().cpu().numpy()
    assert arr.dtype in (np.float32, np.int64), (path, arr.dtype)
    assert np.isfinite(arr).all() if arr.dtype == np.float32 else True, path
    np.save(path, np.ascontiguousarray(arr), allow_pickle=False)


def dir_size(path):
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="tests/data", help="output root (default: tests/data)")
    args = ap.parse_args()

    torch.manual_seed(SEED)
    np.random.seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    out = args.out
    models_root = os.path.join(out, "models")
    golden_root = os.path.join(out, "golden")
    os.makedirs(models_root, exist_ok=True)
    os.makedirs(golden_root, exist_ok=True)

    manifest = {
        "generator": "tools/reference/make_golden.py",
        "command": "/opt/transpolmo-ref/bin/python tools/reference/make_golden.py --out " + out,
        "seed": SEED,
        "versions": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "numpy": np.__version__,
        },
        "reference": "HF transformers forward in float32, attn_implementation=eager, CPU, "
        "on the weights as stored (bf16/f16 upcast to f32)",
        "tolerance": "per tensor: max|c - ref| / max|ref| <= 1e-4",
        "init": {"linear_and_embedding_std": INIT_STD, "rmsnorm_weight": f"1 + {NORM_STD} * randn"},
        "batch": BATCH,
        "seq_len": SEQ,
        "edit": dict(
            EDIT,
            semantics="forward hook on model.model.layers[layer] replacing its output h: "
            "h[:, position, :] = h[:, position, :] * scale + shift (all batch rows, only that position)",
        ),
        "global_points": ["hook_embed", "ln_final.hook_normalized"],
        "layer_points": ["blocks.{L}." + p for p in LAYER_POINTS],
        "models": [],
    }

    for idx, spec in enumerate(MODELS):
        name = spec["name"]
        mseed = SEED + 1000 * (idx + 1)
        model_dir = os.path.join(models_root, name)
        gdir = os.path.join(golden_root, name)
        build_and_save(spec, model_dir, mseed)
        model = load_reference(model_dir)
        cfg = model.config
        arch = spec["arch"]

        # the reloaded f32 model must hold exactly the stored weights
        stored = type(model)(build_config(spec)).to(spec["storage_dtype"])
        reinit_(stored.to(torch.float32), torch.Generator().manual_seed(mseed))
        stored = stored.to(spec["storage_dtype"]).to(torch.float32)
        sd_ref = stored.state_dict()
        for n, p in model.state_dict().items():
            assert torch.equal(p, sd_ref[n]), f"{name}: weight {n} does not round-trip"
        if cfg.tie_word_embeddings:
            assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
        else:
            assert not torch.equal(model.lm_head.weight, model.model.embed_tokens.weight)

        H, K = cfg.num_attention_heads, cfg.num_key_value_heads
        dh = getattr(cfg, "head_dim", None) or cfg.hidden_size // H
        d, F, V = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size

        input_ids = make_input_ids(V, mseed + 7)
        logits, acts, raw = capture(model, input_ids, arch)
        sanity(model, arch, acts, logits, raw, BATCH, SEQ)
        logits_edit = edited_logits(model, input_ids, EDIT)
        # positions before the edit are untouched, later ones change
        p5 = EDIT["position"]
        assert torch.equal(logits_edit[:, :p5], logits[:, :p5])
        diff = (logits_edit - logits).abs().max().item()
        assert diff > 1e-2, f"{name}: edit has no visible effect ({diff})"

        # same forward without hooks must give identical logits
        with torch.no_grad():
            plain = model(input_ids=input_ids, use_cache=False).logits
        assert torch.equal(plain, logits)

        if os.path.isdir(gdir):
            shutil.rmtree(gdir)
        os.makedirs(gdir)
        save_npy(os.path.join(gdir, "input_ids.npy"), input_ids)
        save_npy(os.path.join(gdir, "logits.npy"), logits)
        save_npy(os.path.join(gdir, "logits_edit.npy"), logits_edit)
        with open(os.path.join(gdir, "edit.json"), "w") as f:
            json.dump(EDIT, f, indent=2)
            f.write("\n")

        shapes = {}
        names = ["hook_embed"]
        names += [f"blocks.{L}.{pt}" for L in range(cfg.num_hidden_layers) for pt in LAYER_POINTS]
        names += ["ln_final.hook_normalized"]
        for n in names:
            t = acts[n]
            base = n.split(".", 2)[2] if n.startswith("blocks.") else n
            want = point_shape(base, BATCH, SEQ, d, H, K, dh, F)
            assert list(t.shape) == want, (name, n, list(t.shape), want)
            assert t.dtype == torch.float32
            assert torch.isfinite(t).all(), (name, n)
            assert t.abs().max() > 0, (name, n)
            save_npy(os.path.join(gdir, n + ".npy"), t)
            shapes[n] = want

        lstd = logits.std(dim=-1).mean().item()
        probs = torch.softmax(logits, -1)
        ent = -(probs * probs.clamp_min(1e-30).log()).sum(-1).mean().item()
        print(
            f"{name}: logits std(over vocab, mean) = {lstd:.4f}, mean entropy = {ent:.3f} nats "
            f"(uniform = {np.log(V):.3f}), max|edit - base| = {diff:.4f}"
        )
        assert lstd > 0.3, f"{name}: logits too close to uniform"

        with open(os.path.join(model_dir, "config.json")) as f:
            cfg_json = json.load(f)
        files = sorted(os.listdir(model_dir))
        manifest["models"].append(
            {
                "name": name,
                "architecture": cfg_json.get("architectures"),
                "model_dir": os.path.relpath(model_dir, out),
                "golden_dir": os.path.relpath(gdir, out),
                "files": files,
                "storage_dtype": str(spec["storage_dtype"]).replace("torch.", ""),
                "seed": mseed,
                "dims": {
                    "d_model": d,
                    "n_layers": cfg.num_hidden_layers,
                    "n_heads": H,
                    "n_kv_heads": K,
                    "head_dim": dh,
                    "d_mlp": F,
                    "vocab": V,
                },
                "rope": rope_report(model),
                "attention_scale": float(model.model.layers[0].self_attn.scaling),
                "config_json_keys": sorted(cfg_json.keys()),
                "logits_std": round(lstd, 6),
                "shapes": dict(
                    {"input_ids": [BATCH, SEQ], "logits": [BATCH, SEQ, V], "logits_edit": [BATCH, SEQ, V]},
                    **shapes,
                ),
            }
        )

    with open(os.path.join(golden_root, "MANIFEST.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    print(f"total size of {out}: {dir_size(out) / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
