#!/usr/bin/env python3
"""Golden data for phase 5, circuits (src/analysis/circuits/, tests/unit/test_circuits.c),
made with TransformerLens itself on the bundled model.

Run from the repository root with the reference venv (no network):

    /opt/transpolmo-ref/bin/python tools/reference/make_golden_circuits.py [--model models/olmo2-tiny]

It loads the model with TransformerLens 3.9's TransformerBridge.boot_transformers (offline,
Hugging Face eager attention underneath) and writes tests/data/golden/circuits/:

  heads.json        TEXT_PROMPTS as TransformerLens tokenizes them (to_tokens: BOS prepended),
                    and per prompt and head:
                      previous_token, duplicate_token, induction: head_detector.detect_head(
                        model, prompt, "<name>_head", error_measure="mul"), and detect_head on
                        the whole list (the mean over prompts);
                      bos, self, local (window LOCAL_WINDOW), entropy: docs/circuits.md's
                        definitions computed with head_detector.compute_head_attention_
                        similarity_score on the cached attn.hook_pattern (entropy: torch);
                    SYNTHETIC prompts [BOS, r1..rL, r1..rL] (r: numpy default_rng(SEED) over
                    the non-special ids 2..vocab-1), with the same scores (detection patterns
                    from head_detector.get_*_detection_pattern) and the induction stripe
                    (mean of A[i, i+1-L] over i = L+1..2L).
  weights.json      Q-, K-, V-composition scores [L][H][L][H] from transformer_lens.utilities.
                    composition_scores on FactoredMatrix objects of the folded float64 weights
                    (q_norm / k_norm weights on W_Q / W_K's columns, post_attention_layernorm's
                    weight on W_O's columns, final norm weight on W_U's rows: weight_circuits.h),
                    masked to l1 < l2 as HookedTransformer.all_composition_scores does; the
                    bridge's own unfolded all_composition_scores for the record; per head the
                    OV copying score sum(lambda)/sum(|lambda|) from FactoredMatrix(W_E W_V,
                    W_O W_U).eigenvalues (float64) with the d_head eigenvalues, and for FULL_EIG
                    heads the same score from numpy.linalg.eigvals of the full [vocab, vocab]
                    matrix (the check that the low-rank route loses nothing).
  dla.json          DLA_PROMPT / DLA_TARGET / DLA_DISTRACTOR: the metric from the bridge's
                    logits, the final norm's and each post_attention_layernorm's scale from the
                    cache (ln_final.hook_scale, blocks.L.ln1.hook_scale), and every piece
                    (embed, heads, hook_attn_out, hook_mlp_out) as dla.h defines them, in
                    float64 from the cached float32 activations.

The script reruns as is when the bundled model is retrained.
"""
import argparse
import json
import os
import time

os.environ["CUDA_VISIBLE_DEVICES"] = ""
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from importlib.metadata import version  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402
from transformer_lens import head_detector as hd  # noqa: E402
from transformer_lens.FactoredMatrix import FactoredMatrix  # noqa: E402
from transformer_lens.model_bridge import TransformerBridge  # noqa: E402
from transformer_lens.utilities.matrix import composition_scores  # noqa: E402

TEXT_PROMPTS = [
    "The cat sat on the mat.",
    "In the beginning God created the heaven and the earth.",
    "def add(a, b):\n    return a + b",
    "When Mary and John went to the store, John gave a drink to Mary.",
    "The quick brown fox jumps over the lazy dog. The quick brown fox jumps over the lazy dog.",
    "one two three four five six one two three four five six",
]
N_SYNTHETIC, SYN_L, SEED = 4, 12, 20250611
LOCAL_WINDOW = 3
FULL_EIG = 1            # heads whose full [vocab, vocab] OV circuit numpy also diagonalises
DLA_PROMPT, DLA_TARGET, DLA_DISTRACTOR = "The cat sat on the", " mat", " dog"
TL_NAMES = {"previous_token": "previous_token_head", "duplicate_token": "duplicate_token_head",
            "induction": "induction_head"}


def our_patterns(tokens):
    """The detection patterns of bos, self and local (docs/circuits.md)."""
    T = len(tokens)
    bos = torch.zeros(T, T)
    bos[:, 0] = 1
    local = torch.zeros(T, T)
    for i in range(T):
        local[i, max(0, i - LOCAL_WINDOW + 1):i + 1] = 1
    return {"bos": bos, "self": torch.eye(T), "local": local}


def entropy(A):
    """Mean over queries i >= 1 of -sum_j A[i,j] ln A[i,j]."""
    A = A.double()
    h = -(torch.where(A > 0, A * torch.log(A), torch.zeros_like(A))).sum(-1)
    return h[1:].mean().item()


def pattern_scores(model, tokens, synthetic_len=0):
    """Every score of every head of one prompt (token ids), from the bridge's cache."""
    t = torch.tensor([tokens])
    _, cache = model.run_with_cache(t, remove_batch_dim=True)
    L, H = model.cfg.n_layers, model.cfg.n_heads
    det = {k: getattr(hd, f"get_{v}_detection_pattern")(t) for k, v in TL_NAMES.items()}
    det.update(our_patterns(tokens))
    out = {k: [[0.0] * H for _ in range(L)] for k in list(det) + ["entropy", "stripe"]}
    for layer in range(L):
        P = cache["pattern", layer, "attn"]
        for h in range(H):
            A = P[h]
            for k, D in det.items():
                out[k][layer][h] = hd.compute_head_attention_similarity_score(
                    A, D, exclude_bos=False, exclude_current_token=False, error_measure="mul")
            out["entropy"][layer][h] = entropy(A)
            if synthetic_len:
                Ls = synthetic_len
                out["stripe"][layer][h] = float(np.mean([A[i, i + 1 - Ls].item() for i in range(Ls + 1, 2 * Ls + 1)]))
    if not synthetic_len:
        del out["stripe"]
    return out


def heads_golden(model, tok_vocab):
    tokens = [model.to_tokens(p)[0].tolist() for p in TEXT_PROMPTS]
    per_prompt = [pattern_scores(model, t) for t in tokens]
    # detect_head itself, per prompt and on the list (its mean)
    for name, tl in TL_NAMES.items():
        for i, p in enumerate(TEXT_PROMPTS):
            s = hd.detect_head(model, p, tl, error_measure="mul")
            assert np.allclose(s.numpy(), per_prompt[i][name], atol=1e-6), (name, i)
            per_prompt[i][name] = s.tolist()
    mean = {name: hd.detect_head(model, TEXT_PROMPTS, tl, error_measure="mul").tolist()
            for name, tl in TL_NAMES.items()}
    rng = np.random.default_rng(SEED)
    bos = tokens[0][0]
    synthetic = []
    for _ in range(N_SYNTHETIC):
        r = rng.integers(2, tok_vocab, size=SYN_L).tolist()
        ids = [bos] + r + r
        synthetic.append({"tokens": ids, "scores": pattern_scores(model, ids, SYN_L)})
    return {"prompts": [{"text": p, "tokens": t, "scores": s} for p, t, s in zip(TEXT_PROMPTS, tokens, per_prompt)],
            "detect_head_mean": mean, "synthetic_len": SYN_L, "synthetic": synthetic,
            "local_window": LOCAL_WINDOW}


def folded(model, st):
    """W_Q, W_K, W_V [L, *, d, dh], W_O [L, H, dh, d], W_E, W_U: float64, norms folded."""
    L, H, dh = model.cfg.n_layers, model.cfg.n_heads, model.cfg.d_head
    WQ, WK, WV, WO = (x.detach().double().clone() for x in (model.W_Q, model.W_K, model.W_V, model.W_O))
    for layer in range(L):
        # the bridge's matrices are the checkpoint's: q_proj rows h*dh.. transposed
        q = st[f"model.layers.{layer}.self_attn.q_proj.weight"]
        assert np.array_equal(WQ[layer, 1].numpy(), q[dh:2 * dh].T.astype(np.float64))
        qn = torch.from_numpy(st[f"model.layers.{layer}.self_attn.q_norm.weight"]).double()
        kn = torch.from_numpy(st[f"model.layers.{layer}.self_attn.k_norm.weight"]).double()
        pn = torch.from_numpy(st[f"model.layers.{layer}.post_attention_layernorm.weight"]).double()
        WQ[layer] *= qn.view(H, 1, dh)
        WK[layer] *= kn.view(-1, 1, dh)
        WO[layer] *= pn.view(1, 1, -1)
    WE = model.W_E.detach().double()
    WU = model.W_U.detach().double() * torch.from_numpy(st["model.norm.weight"]).double().view(-1, 1)
    return WQ, WK, WV, WO, WE, WU


def weights_golden(model, st):
    WQ, WK, WV, WO, WE, WU = folded(model, st)
    L, H = model.cfg.n_layers, model.cfg.n_heads
    rep = H // WK.shape[1]
    WKx, WVx = WK.repeat_interleave(rep, dim=1), WV.repeat_interleave(rep, dim=1)
    OV = FactoredMatrix(WVx, WO)
    QK = FactoredMatrix(WQ, WKx.transpose(-2, -1))
    mask = torch.arange(L)[:, None, None, None] < torch.arange(L)[None, None, :, None]
    comp = {}
    for mode, right in (("q", QK), ("k", QK.T), ("v", OV)):
        s = composition_scores(OV, right, broadcast_dims=True)
        comp[mode] = torch.where(mask, s, torch.zeros_like(s)).tolist()
    unfolded = {m.lower(): torch.as_tensor(model.all_composition_scores(m).scores).tolist() for m in "QKV"}
    full_ov = FactoredMatrix(WE @ WVx, WO @ WU)
    eig = full_ov.eigenvalues                       # [L, H, dh] complex128
    score = (eig.sum(-1).real / eig.abs().sum(-1)).tolist()
    order = torch.argsort(-eig.abs(), dim=-1)
    eig_sorted = torch.gather(eig, -1, order)
    best = np.unravel_index(int(np.argmax(np.abs(np.array(score)))), (L, H))
    full = []
    for (layer, h) in [tuple(int(x) for x in best)][:FULL_EIG]:
        t0 = time.time()
        M = ((WE @ WVx[layer, h]) @ (WO[layer, h] @ WU)).numpy()
        lam = np.linalg.eigvals(M)
        full.append({"layer": layer, "head": h, "score": float(lam.sum().real / np.abs(lam).sum()),
                     "top_abs": np.sort(np.abs(lam))[::-1][:8].tolist(), "seconds": time.time() - t0})
        assert abs(full[-1]["score"] - score[layer][h]) < 1e-6, (full[-1], score[layer][h])
    return {"composition": comp, "composition_unfolded_bridge": unfolded, "copying_score": score,
            "eigenvalues_re": eig_sorted.real.tolist(), "eigenvalues_im": eig_sorted.imag.tolist(),
            "full_eig": full}


def dla_golden(model, st):
    t = model.to_tokens(DLA_PROMPT)
    target = model.to_single_token(DLA_TARGET)
    distractor = model.to_single_token(DLA_DISTRACTOR)
    logits, cache = model.run_with_cache(t)
    L, H = model.cfg.n_layers, model.cfg.n_heads
    s_f = cache["ln_final.hook_scale"][0, -1].double().item()
    wf = torch.from_numpy(st["model.norm.weight"]).double()
    WU = model.W_U.detach().double()
    u = wf * (WU[:, target] - WU[:, distractor]) / s_f
    piece = lambda name: (cache[name][0, -1].double() @ u).item()  # noqa: E731
    out = {"prompt": DLA_PROMPT, "tokens": t[0].tolist(), "target": DLA_TARGET, "target_id": target,
           "distractor": DLA_DISTRACTOR, "distractor_id": distractor,
           "metric": (logits[0, -1, target] - logits[0, -1, distractor]).item(), "final_scale": s_f,
           "embed": piece("hook_embed"), "attn_out": [], "mlp_out": [], "heads": [], "attn_scale": []}
    for layer in range(L):
        s1 = cache[f"blocks.{layer}.ln1.hook_scale"][0, -1].double().item()
        w1 = torch.from_numpy(st[f"model.layers.{layer}.post_attention_layernorm.weight"]).double()
        z = cache[f"blocks.{layer}.attn.hook_z"][0, -1].double()            # [H, dh]
        WO = model.W_O[layer].detach().double()                              # [H, dh, d]
        heads = [((z[h] @ WO[h]) * w1 / s1 @ u).item() for h in range(H)]
        out["heads"].append(heads)
        out["attn_scale"].append(s1)
        out["attn_out"].append(piece(f"blocks.{layer}.hook_attn_out"))
        out["mlp_out"].append(piece(f"blocks.{layer}.hook_mlp_out"))
    total = out["embed"] + sum(out["attn_out"]) + sum(out["mlp_out"])
    assert abs(total - out["metric"]) < 1e-4 * (1 + abs(out["metric"])), (total, out["metric"])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/olmo2-tiny")
    ap.add_argument("--out", default="tests/data/golden/circuits")
    args = ap.parse_args()
    torch.manual_seed(0)
    model = TransformerBridge.boot_transformers(args.model, device="cpu")
    st = load_file(os.path.join(args.model, "model.safetensors"))
    os.makedirs(args.out, exist_ok=True)
    meta = {"generator": "tools/reference/make_golden_circuits.py", "model": args.model,
            "versions": {"transformer_lens": version("transformer-lens"), "torch": torch.__version__,
                         "numpy": np.__version__}}
    vocab = model.cfg.d_vocab
    docs = {"heads.json": heads_golden(model, vocab), "weights.json": weights_golden(model, st),
            "dla.json": dla_golden(model, st)}
    for name, doc in docs.items():
        with open(os.path.join(args.out, name), "w") as f:
            json.dump({"meta": meta, **doc}, f, indent=1)
        print("wrote", os.path.join(args.out, name))


if __name__ == "__main__":
    main()
