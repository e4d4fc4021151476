#!/usr/bin/env python3
"""Golden EAP / EAP-IG scores for src/analysis/circuits/eap.h on the bundled model.

Run from the repository root with the reference venv (CPU, no network):

    /opt/transpolmo-ref/bin/python tools/reference/make_golden_eap.py [--out tests/data/golden/circuits/eap.json]

Reference: Hugging Face transformers, float32, attn_implementation="eager", module hooks,
torch autograd; everything below is computed here from the definitions, not from the C
code (docs/circuits.md, "Attribution"):

  m          logits[last, target] - logits[last, distractor]
  a_embed    embed_tokens output
  a_head     head h of layer L: (z_h @ W_O[:, h]^T) * w_1 / s_1, z = o_proj's input,
             s_1 = sqrt(mean(o^2) + eps) of o = o_proj's output (post_attention_layernorm's
             scale, frozen at the run's own value per position)
  a_mlp      post_feedforward_layernorm's output
  g_head     torch.autograd.grad(z_L, resid_pre_L, grad_outputs = dm/dz_L masked to head h)
  g_mlp      dm/d resid_mid_L - dm/d resid_post_L   (resid_mid = the MLP's input)
  g_logits   dm/d resid_post of the last layer
  edge(u,v)  sum over positions of g_v . (a_u^clean - a_u^corr), g on the corrupted run;
             EAP-IG: g averaged over runs with embeddings corr + (k/M)(clean - corr), k=1..M
  node(u)    sum over positions of dm/da_u . delta a_u, dm/da_u = the gradient at hook_embed,
             resid_mid_L (heads), resid_post_L (MLPs)
Edges that do not exist (u not upstream of v) are 0. Node order as eap.h.
"""

import os

os.environ["CUDA_VISIBLE_DEVICES"] = ""
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse  # noqa: E402
import json  # noqa: E402

import torch  # noqa: E402
import transformers  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

MODEL = "models/olmo2-tiny"
CLEAN = "The cat sat on the mat and the dog sat on the"
SWAPS = {2: 1000, 6: 2000}     # corrupt = clean with these positions' tokens replaced
IG_STEPS = [0, 3]


def run(model, ids, emb=None):
    """One forward; returns logits [T, V] and the tensors of every point (grad-enabled)."""
    m, keep, hs = model.model, {}, []

    def emb_hook(_m, _i, out):
        t = (emb if emb is not None else out).detach().clone().requires_grad_(True)
        keep["embed"] = t
        return t
    hs.append(m.embed_tokens.register_forward_hook(emb_hook))
    for L, lay in enumerate(m.layers):
        def pre(_m, args, kwargs, L=L):
            keep[("pre", L)] = args[0] if args else kwargs["hidden_states"]
        hs.append(lay.self_attn.register_forward_pre_hook(pre, with_kwargs=True))

        def z_in(_m, args, L=L):
            keep[("z", L)] = args[0]
        hs.append(lay.self_attn.o_proj.register_forward_pre_hook(z_in))

        def o_out(_m, _i, out, L=L):
            keep[("o", L)] = out
        hs.append(lay.self_attn.o_proj.register_forward_hook(o_out))

        def mid(_m, args, kwargs, L=L):
            keep[("mid", L)] = args[0] if args else kwargs["hidden_states"]
        hs.append(lay.mlp.register_forward_pre_hook(mid, with_kwargs=True))

        def mlp_out(_m, _i, out, L=L):
            keep[("mlp", L)] = out
        hs.append(lay.post_feedforward_layernorm.register_forward_hook(mlp_out))

        def post(_m, _i, out, L=L):
            keep[("post", L)] = out[0] if isinstance(out, (tuple, list)) else out
        hs.append(lay.register_forward_hook(post))
    try:
        logits = model(input_ids=torch.tensor(ids)[None], use_cache=False).logits[0]
    finally:
        for h in hs:
            h.remove()
    return logits, keep


def node_outputs(model, keep):
    """[n_up, T, d] float64: embed, then per layer the heads and the MLP."""
    c = model.config
    H, dh, eps = c.num_attention_heads, c.hidden_size // c.num_attention_heads, c.rms_norm_eps
    out = [keep["embed"][0].double()]
    for L, lay in enumerate(model.model.layers):
        z, o = keep[("z", L)][0].double(), keep[("o", L)][0].double()
        W = lay.self_attn.o_proj.weight.double()
        w1 = lay.post_attention_layernorm.weight.double()
        s1 = torch.sqrt((o * o).mean(-1, keepdim=True) + eps)
        for h in range(H):
            out.append(z[:, h * dh:(h + 1) * dh] @ W[:, h * dh:(h + 1) * dh].T * w1 / s1)
        out.append(keep[("mlp", L)][0].double())
    return torch.stack(out).detach()


def grads(model, ids, target, distractor, emb):
    """g_v [n_down, T, d] and dm/da rows [1 + 2L, T, d] on one run."""
    c = model.config
    H, dh, nL = c.num_attention_heads, c.hidden_size // c.num_attention_heads, c.num_hidden_layers
    logits, k = run(model, ids, emb)
    metric = logits[-1, target].double() - logits[-1, distractor].double()
    pts = [k["embed"]] + [k[(n, L)] for L in range(nL) for n in ("z", "mid", "post")]
    gr = torch.autograd.grad(metric, pts, retain_graph=True)
    d_embed = gr[0][0]
    G, Gn = [], [d_embed]
    for L in range(nL):
        dz, dmid, dpost = gr[1 + 3 * L], gr[2 + 3 * L], gr[3 + 3 * L]
        for h in range(H):
            mask = torch.zeros_like(dz)
            mask[..., h * dh:(h + 1) * dh] = dz[..., h * dh:(h + 1) * dh]
            G.append(torch.autograd.grad(k[("z", L)], k[("pre", L)], grad_outputs=mask, retain_graph=True)[0][0])
        G.append((dmid - dpost)[0])
        Gn += [dmid[0], dpost[0]]
    G.append(gr[3 * nL][0])
    return torch.stack(G).double(), torch.stack(Gn).double()


def edge_exists(c, u, v):
    H, nL = c.num_attention_heads, c.num_hidden_layers
    if u == 0:
        return True
    lu, ku = divmod(u - 1, H + 1)
    lv, kv = (nL, 0) if v == nL * (H + 1) else divmod(v, H + 1)
    return lv > lu or (lv == lu and ku < H and kv == H)


def case(model, clean, corrupt, target, distractor, steps):
    c = model.config
    H, nL = c.num_attention_heads, c.num_hidden_layers
    with torch.no_grad():
        lc, kc = run(model, clean)
        lk, kk = run(model, corrupt)
        A, B = node_outputs(model, kc), node_outputs(model, kk)
    D = A - B
    G = Gn = 0
    for s in range(1, max(steps, 1) + 1):
        emb = None if steps == 0 else kk["embed"] + (s / steps) * (kc["embed"] - kk["embed"])
        g, gn = grads(model, corrupt, target, distractor, emb)
        G, Gn = G + g / max(steps, 1), Gn + gn / max(steps, 1)
    E = torch.einsum("utd,vtd->uv", D, G)
    for u in range(E.shape[0]):
        for v in range(E.shape[1]):
            if not edge_exists(c, u, v):
                E[u, v] = 0.0
    rows = [0] + [1 + 2 * L + (k == H) for L in range(nL) for k in range(H + 1)]
    nodes = [float((D[u] * Gn[rows[u]]).sum()) for u in range(D.shape[0])]
    ld = lambda lg: float(lg[-1, target].double() - lg[-1, distractor].double())  # noqa: E731
    return {"clean": clean, "corrupt": corrupt, "target": target, "distractor": distractor, "ig_steps": steps,
            "ld_clean": ld(lc), "ld_corr": ld(lk), "edges": E.tolist(), "nodes": nodes}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/data/golden/circuits/eap.json")
    a = ap.parse_args()
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32, attn_implementation="eager",
                                                 local_files_only=True).eval()
    tok = Tokenizer.from_file(os.path.join(MODEL, "tokenizer.json"))
    clean = [0] + tok.encode(CLEAN, add_special_tokens=False).ids   # BOS = eos_token_id 0, as circuits.prepend_bos
    corrupt = list(clean)
    for p, t in SWAPS.items():
        corrupt[p] = t
    with torch.no_grad():
        top = torch.topk(run(model, clean)[0][-1], 2).indices.tolist()
    target, distractor = top
    cases = [case(model, clean, corrupt, target, distractor, s) for s in IG_STEPS]
    doc = {"generator": "tools/reference/make_golden_eap.py", "torch": torch.__version__,
           "transformers": transformers.__version__, "model": MODEL, "definitions": __doc__, "cases": cases}
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(doc, f)
    for cs in cases:
        print(f"ig {cs['ig_steps']}: LD clean {cs['ld_clean']:.4f} corr {cs['ld_corr']:.4f} "
              f"sum nodes {sum(cs['nodes']):.4f}")


if __name__ == "__main__":
    main()
