#!/usr/bin/env python3
"""Golden data for the sparse autoencoders (src/analysis/sae/sae.{h,c},
tests/unit/test_sae.c): a plain-PyTorch SAE written from the definitions in sae.h,
trained 3 Adam steps from fixed initial weights on fixed data, per architecture.

Run from the repository root with the reference venv:

    /opt/transpolmo-ref/bin/python tools/reference/make_golden_sae.py

Data: x [64, 16] float32, a sparse code over 40 random unit directions (3 active
per row, exponential magnitudes) plus an offset and Gaussian noise, so that b_dec
and the input scale matter. F = 64 latents.

Reference, everything float32 on the CPU as the C code computes (f64 only for the
input scale, the geometric median and the metrics, as in C):
  u = x * s, s = sqrt(d) / mean ||x||
  x~ = u - b_dec (apply_b_dec_to_input) or u;  pre = x~ @ W_enc.T + b_enc
  relu       f = relu(pre);  loss = mean_n ||u - x^||^2 + l1_t * mean_n sum_i f_ni ||w_i||
  topk       f = scatter(relu(topk(pre, k)));  + AuxK
  batchtopk  f = relu(pre) * [relu(pre) >= theta_b], theta_b = (k*N)-th largest
             positive value of the batch;  + AuxK
  x^ = f @ W_dec + b_dec
  AuxK: e = (u - x^).detach(); among dead latents (since_fired >= dead_tokens) the
        min(aux_k, #dead) largest pre per row, relu, e^ = a @ W_dec (no bias);
        + aux_coef * mean_n ||e^ - e||^2
Step: autograd; if decoder_unit_norm, W_dec.grad -= (g.w) w per row; clip_grad_norm_
(max_norm); torch.optim.Adam(foreach=False) with the group's lr set to lr_t;
W_dec rows renormalised (decoder_unit_norm); since_fired; batchtopk threshold EMA.
Schedules as sae.h (l1 warm-up, lr warm-up and linear decay), T = 4 total steps so
that all three ramps act within the 3 steps.

Initial weights: W_dec rows = normalised torch.randn rows * init_dec_norm,
W_enc = W_dec, b_enc = 0, b_dec = mean (relu) or Weiszfeld geometric median
(topk, batchtopk) of u; since_fired starts at 1000 (dead) for latents 0..19 and 0
for the others, with dead_tokens = 64, so AuxK acts from step 0 and every latent
that does not fire in a step is dead at the next.

The script refuses data where a TopK, BatchTopK or AuxK selection lies within 2e-5
of a tie (so f32 rounding cannot change it).

Writes tests/data/golden/sae/{<arch>.safetensors, reference.json}: x, the initial
state (init.*), the final state (final.*: parameters, Adam exp_avg/exp_avg_sq,
since_fired), and in reference.json the configs, s, the median and per-step metrics.
"""
import json
import math
import os
import sys

import numpy as np
import safetensors.torch
import torch

SEED = 20250610
N, D, F = 64, 16, 64
STEPS = 3
DEAD_INIT = 20


def make_data(rng):
    dirs = rng.standard_normal((40, D))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    codes = np.zeros((N, 40))
    for n in range(N):
        idx = rng.choice(40, size=3, replace=False)
        codes[n, idx] = rng.exponential(1.0, size=3) + 0.2
    x = codes @ dirs * 3.0 + 1.5 * rng.standard_normal(D)[None, :] + 0.05 * rng.standard_normal((N, D))
    return x.astype(np.float32)


def input_scale(x):
    x64 = x.astype(np.float64)
    return math.sqrt(D) / np.linalg.norm(x64, axis=1).mean()


def geometric_median(u, max_iter):
    """Weiszfeld from the mean, as sae_init_b_dec."""
    y = u.mean(axis=0)
    for _ in range(max_iter):
        r = np.sqrt(((u - y) ** 2).sum(axis=1))
        w = 1.0 / np.maximum(r, 1e-12)
        ynew = (w[:, None] * u).sum(axis=0) / w.sum()
        step = np.sqrt(((ynew - y) ** 2).sum())
        y = ynew
        if step <= 1e-7 * (np.sqrt((y * y).sum()) + 1e-12):
            break
    return y


def round_half_up(v):
    return math.floor(v + 0.5)


def l1_coef_at(c, t):
    w = round_half_up(c["l1_warmup_frac"] * c["total_steps"])
    f = (t + 1) / w if w > 0 else 1.0
    return c["l1_coef"] * min(f, 1.0)


def lr_at(c, t):
    T = c["total_steps"]
    wl = round_half_up(c["lr_warmup_frac"] * T)
    dd = round_half_up(c["lr_decay_frac"] * T)
    up = min((t + 1) / wl, 1.0) if wl > 0 else 1.0
    down = min(max((T - t) / dd, 0.0), 1.0) if dd > 0 else 1.0
    return c["lr"] * up * down


def base_config(arch):
    c = dict(architecture=arch, d_in=D, d_sae=F, k=4, aux_k=8, aux_coef=1.0 / 32, dead_tokens=64,
             l1_coef=0.0, l1_warmup_frac=0.0, lr=2e-3, lr_warmup_frac=0.5, lr_decay_frac=0.75,
             total_steps=4, beta1=0.9, beta2=0.999, eps=6.25e-10, max_grad_norm=0.0,
             apply_b_dec_to_input=1, decoder_unit_norm=1, init_dec_norm=1.0, b_dec_init=2,
             threshold_lr=0.1, dense_freq=0.1)
    if arch == "relu":
        c.update(k=0, aux_k=0, l1_coef=0.3, l1_warmup_frac=0.5, eps=1e-8, apply_b_dec_to_input=0,
                 decoder_unit_norm=0, init_dec_norm=0.1, b_dec_init=1)
    return c


# gradient-norm clipping: on for relu and batchtopk (the values sit below the
# unclipped norms, so clipping acts at every step), off for topk
CLIP = {"relu": 1.0, "topk": 0.0, "batchtopk": 0.05}


def check_gap(what, gaps):
    """A selection must not sit on a knife edge: f32 rounding in another order
    (C vs torch: pre-activations agree to ~1e-6 here) must not change which latents are chosen."""
    g = float(torch.as_tensor(gaps).min())
    if g < 2e-5:
        sys.exit(f"{what}: selection within {g:.2g} of a tie; change SEED")


class RefSAE:
    def __init__(self, c, W_dec, b_dec, s, since_fired):
        self.c = c
        self.s = s
        self.W_enc = torch.nn.Parameter(W_dec.clone())
        self.W_dec = torch.nn.Parameter(W_dec.clone())
        self.b_enc = torch.nn.Parameter(torch.zeros(F, dtype=torch.float32))
        self.b_dec = torch.nn.Parameter(b_dec.clone())
        self.params = [self.W_enc, self.W_dec, self.b_enc, self.b_dec]
        self.opt = torch.optim.Adam(self.params, lr=c["lr"], betas=(c["beta1"], c["beta2"]), eps=c["eps"],
                                    weight_decay=0.0, foreach=False)
        self.since = since_fired.clone()
        self.threshold = 0.0
        self.t = 0

    def step(self, x):
        c, t = self.c, self.t
        n = x.shape[0]
        u = x * self.s
        xt = u - self.b_dec if c["apply_b_dec_to_input"] else u
        pre = xt @ self.W_enc.T + self.b_enc
        arch = c["architecture"]
        metrics = {}
        if arch == "relu":
            f = torch.relu(pre)
        elif arch == "topk":
            srt = pre.detach().sort(dim=1, descending=True).values
            check_gap("topk", srt[:, c["k"] - 1] - srt[:, c["k"]])
            v, i = pre.topk(c["k"], dim=1)
            f = torch.zeros_like(pre).scatter(1, i, torch.relu(v))
        else:
            acts = torch.relu(pre)
            flat = acts.detach().flatten()
            m = c["k"] * n
            npos = int((flat > 0).sum())
            if npos <= m:
                theta = float(flat[flat > 0].min()) if npos > 0 else 0.0
            else:
                top = flat.topk(m + 1).values
                check_gap("batchtopk", top[m - 1] - top[m])
                theta = float(top[m - 1])
            f = acts * ((acts >= theta) & (acts > 0)).float()
            metrics["batch_threshold"] = theta
        xhat = f @ self.W_dec + self.b_dec
        recon = ((xhat - u) ** 2).sum(dim=1).mean()
        loss = recon
        l1 = torch.zeros(())
        aux = torch.zeros(())
        lam = 0.0
        if arch == "relu":
            lam = l1_coef_at(c, t)
            l1 = lam * (f * self.W_dec.norm(dim=1)).sum(dim=1).mean()
            loss = loss + l1
        else:
            dead = self.since >= c["dead_tokens"]
            nd = int(dead.sum())
            ka = min(c["aux_k"], nd)
            if ka > 0:
                pa = pre.masked_fill(~dead[None, :], float("-inf"))
                if ka < nd:
                    srt = pa.detach().sort(dim=1, descending=True).values
                    check_gap("auxk", srt[:, ka - 1] - srt[:, ka])
                av, ai = pa.topk(ka, dim=1)
                a = torch.zeros_like(pre).scatter(1, ai, torch.relu(av))
                e = (u - xhat).detach()
                ehat = a @ self.W_dec
                aux = c["aux_coef"] * ((ehat - e) ** 2).sum(dim=1).mean()
                loss = loss + aux
        self.opt.zero_grad()
        loss.backward()
        with torch.no_grad():
            if c["decoder_unit_norm"]:
                g = self.W_dec.grad
                g -= (g * self.W_dec).sum(dim=1, keepdim=True) * self.W_dec
            gnorm = math.sqrt(sum(float((p.grad.double() ** 2).sum()) for p in self.params))
            if c["max_grad_norm"] > 0:
                torch.nn.utils.clip_grad_norm_(self.params, c["max_grad_norm"], foreach=False)
            lr = lr_at(c, t)
            for grp in self.opt.param_groups:
                grp["lr"] = lr
            self.opt.step()
            if c["decoder_unit_norm"]:
                self.W_dec /= self.W_dec.norm(dim=1, keepdim=True)
            fires = (f.detach() > 0).sum(dim=0)
            self.since = torch.where(fires > 0, torch.zeros_like(self.since), self.since + n)
            if arch == "batchtopk":
                th = metrics["batch_threshold"]
                self.threshold = th if t == 0 else (1 - c["threshold_lr"]) * self.threshold + c["threshold_lr"] * th
            u64 = u.double()
            var = float(((u64 - u64.mean(dim=0)) ** 2).sum())
            rsum = float(((xhat.detach().double() - u64) ** 2).sum())
            metrics.update(
                step=t + 1, loss=float(loss), recon=float(recon), l1=float(l1), aux=float(aux), fvu=rsum / var,
                l0=float((f.detach() > 0).sum()) / n, lr=lr, l1_coef=lam, grad_norm=gnorm,
                dead_frac=float((self.since >= c["dead_tokens"]).sum()) / F,
                dense_frac=float((fires > c["dense_freq"] * n).sum()) / F, threshold=self.threshold)
        self.t += 1
        return metrics

    def state(self, prefix):
        out = {}
        for name, p in zip(["W_enc", "W_dec", "b_enc", "b_dec"], self.params):
            out[prefix + name] = p.detach().clone().contiguous()
            st = self.opt.state.get(p, {})
            if st:
                out[prefix + "m." + name] = st["exp_avg"].clone().contiguous()
                out[prefix + "v." + name] = st["exp_avg_sq"].clone().contiguous()
        out[prefix + "since_fired"] = self.since.clone()
        return out


def main():
    root = os.path.join("tests", "data", "golden", "sae")
    if not os.path.isdir(os.path.join("tests", "data")):
        sys.exit("run from the repository root")
    os.makedirs(root, exist_ok=True)
    rng = np.random.default_rng(SEED)
    torch.manual_seed(SEED)
    x = make_data(rng)
    s = input_scale(x)
    u64 = x.astype(np.float64) * s
    median = geometric_median(u64, 200)
    mean = u64.mean(axis=0)
    ref = {"generator": "tools/reference/make_golden_sae.py",
           "command": "/opt/transpolmo-ref/bin/python tools/reference/make_golden_sae.py",
           "seed": SEED, "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                                      "numpy": np.__version__},
           "rows": N, "d_in": D, "d_sae": F, "steps": STEPS, "input_scale": s,
           "geometric_median_max_iter": 200, "geometric_median": median.tolist(), "mean": mean.tolist(),
           "archs": {}}
    since0 = torch.zeros(F, dtype=torch.int64)
    since0[:DEAD_INIT] = 1000
    xt = torch.from_numpy(x)
    for arch in ["relu", "topk", "batchtopk"]:
        c = base_config(arch)
        c["max_grad_norm"] = CLIP[arch]
        W = torch.randn(F, D, dtype=torch.float64)
        W = (W / W.norm(dim=1, keepdim=True) * c["init_dec_norm"]).float()
        b = torch.from_numpy((mean if c["b_dec_init"] == 1 else median).astype(np.float32))
        sae = RefSAE(c, W, b, s, since0)
        tensors = {"x": xt.clone()}
        tensors.update(sae.state("init."))
        steps = [sae.step(xt) for _ in range(STEPS)]
        tensors.update(sae.state("final."))
        path = os.path.join(root, arch + ".safetensors")
        safetensors.torch.save_file(tensors, path)
        os.chmod(path, 0o644)
        ref["archs"][arch] = {"config": c, "steps": steps, "final_threshold": sae.threshold}
        print(arch, [(round(m["loss"], 5), round(m["grad_norm"], 4), m["l0"], m["dead_frac"]) for m in steps])
    with open(os.path.join(root, "reference.json"), "w") as fh:
        json.dump(ref, fh, indent=1)
        fh.write("\n")


if __name__ == "__main__":
    main()
