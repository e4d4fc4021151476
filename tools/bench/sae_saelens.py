#!/usr/bin/env python3
"""sae_saelens.py — SAELens (PyPI sae-lens) training steps on CPU, the baseline of
tools/bench/sae.sh: the same rows, architecture, size, batch and number of steps as
bench_sae.

    sae_saelens.py --npy ROWS.npy [--arch topk|relu] [--d-sae F] [--k 32] [--batch 4096]
                   [--steps 40] [--warmup 3] [--threads 2] [--sparse-acts] [--tag TEXT]
                   [--device cpu|cuda]

What runs: SAELens' own trainer, `sae_lens.training.sae_trainer.SAETrainer`, and its
public per-step method `SAETrainer.step(batch)` (what `SAETrainer.fit()` calls per
batch): `training_forward_pass` of the training SAE class (TopKTrainingSAE or
StandardTrainingSAE: encode, decode, MSE, the architecture's aux loss), the dead-latent
and firing-frequency bookkeeping, `loss.backward()`, `clip_grad_norm_(…, 1.0)`,
`torch.optim.Adam.step()`, `zero_grad()`, the LR and coefficient schedulers. wandb
logging, evals and checkpoints are off (they are off the per-step path anyway).
Configuration, to match bench_sae:
  topk  TopKTrainingSAEConfig(d_in=d, d_sae=F, k, apply_b_dec_to_input=True,
        rescale_acts_by_decoder_norm=True (SAELens' default; ours keeps unit decoder
        rows instead), use_sparse_activations=False (default: dense decode) or True with
        --sparse-acts (its backward fails on CPU with torch 2.15: aten::view on
        SparseCPU), aux_loss_coefficient=1/32 (ours: aux_coef 1/32)). SAELens' AuxK uses
        k_aux = d/2 (ours: --aux-k d/2). dead_feature_window = 1000 steps: no latent is
        dead within the run, so the AuxK term is 0 on both sides (both still look for
        dead latents every step).
  relu  StandardTrainingSAEConfig(l1_coefficient=5, apply_b_dec_to_input=False — as
        ours (Anthropic April 2024): L1 of f_i·‖w_i‖, free decoder norms).
Rows are multiplied by s = √d / mean‖x‖ of the first batch before training (ours does
the same inside its step); normalize_activations="none".

--device cuda (tools/bench/gpu.sh): the SAE, the trainer and every batch on the GPU
(the batches are moved there before the timed steps: the baseline reads no host memory
per step, while bench_sae --device cuda uploads each batch), torch.cuda.synchronize()
after each step. No CUDA in torch, or no sae-lens: one JSON line with "skipped" and
exit 0 (the device machine has torch but not sae-lens unless it was carried as wheels).

Timing: torch.set_num_threads(threads); the first `warmup` steps are untimed; then
the wall time of `steps` calls of trainer.step(batch) (+ n_training_steps += 1, as fit()
does), batch = rows[b·batch:(b+1)·batch] as a torch tensor view (b = t mod N/batch),
made before the clock starts. One JSON line on stdout.
"""
import argparse
import json
import os
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--npy", required=True)
    ap.add_argument("--arch", default="topk", choices=["topk", "relu"])
    ap.add_argument("--d-sae", type=int, default=0)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--sparse-acts", action="store_true")
    ap.add_argument("--tag", default="")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    a = ap.parse_args()

    t_import = time.perf_counter()
    import numpy as np
    import torch

    def skipped(why):
        print(json.dumps({"bench": "sae", "kind": "train", "impl": "saelens", "device": a.device, "skipped": why}))
        return 0

    if a.device == "cuda" and not torch.cuda.is_available():
        return skipped(f"no GPU: torch {torch.__version__} sees no CUDA device")
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    try:
        import sae_lens
        from sae_lens.config import LoggingConfig, SAETrainerConfig
        from sae_lens.saes.standard_sae import StandardTrainingSAE, StandardTrainingSAEConfig
        from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
        from sae_lens.training.sae_trainer import SAETrainer
    except ImportError as e:
        return skipped(f"no sae-lens in this Python ({e})")
    sync = torch.cuda.synchronize if a.device == "cuda" else (lambda: None)

    t_import = time.perf_counter() - t_import

    X = np.load(a.npy)
    N, d = X.shape
    F = a.d_sae or 8 * d
    nb = N // a.batch
    s = np.sqrt(d) / np.linalg.norm(X[: a.batch].astype(np.float64), axis=1).mean()
    Xt = torch.from_numpy((X * np.float32(s)).astype(np.float32))
    batches = [Xt[b * a.batch:(b + 1) * a.batch].to(a.device) for b in range(nb)]

    if a.arch == "topk":
        cfg = TopKTrainingSAEConfig(d_in=d, d_sae=F, k=a.k, dtype="float32", device=a.device,
                                    apply_b_dec_to_input=True, rescale_acts_by_decoder_norm=True,
                                    use_sparse_activations=a.sparse_acts, aux_loss_coefficient=1 / 32)
        sae = TopKTrainingSAE(cfg)
    else:
        cfg = StandardTrainingSAEConfig(d_in=d, d_sae=F, dtype="float32", device=a.device,
                                        apply_b_dec_to_input=False, l1_coefficient=5.0)
        sae = StandardTrainingSAE(cfg)
    total = a.warmup + a.steps
    lr = 2e-4 if a.arch == "topk" else 5e-5
    tcfg = SAETrainerConfig(total_training_samples=total * a.batch, train_batch_size_samples=a.batch,
                            lr=lr, lr_end=lr / 10, device=a.device, autocast=False,
                            dead_feature_window=1000, feature_sampling_window=2000,
                            logger=LoggingConfig(log_to_wandb=False))
    trainer = SAETrainer(cfg=tcfg, sae=sae, data_provider=iter(()))

    step_t = []
    first = last = None
    t_start = 0.0
    for t in range(total):
        if t == a.warmup:
            sync()
            t_start = time.perf_counter()
        t0 = time.perf_counter()
        out = trainer.step(batches[t % nb])
        trainer.n_training_steps += 1
        sync()
        if t >= a.warmup:
            step_t.append(time.perf_counter() - t0)
        if t == 0:
            first = float(out.loss.detach())
    train_s = time.perf_counter() - t_start
    with torch.no_grad():
        last = float(out.loss.detach())
        x = out.sae_in
        fvu = float(((out.sae_out - x) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())
        fa = out.feature_acts
        l0 = float((fa.to_dense() if fa.is_sparse else fa).bool().float().sum(-1).mean())
        aux = float(out.losses.get("auxiliary_reconstruction_loss", torch.tensor(0.0)))
    st = sorted(step_t)
    n = len(st)
    med = st[n // 2] if n % 2 else 0.5 * (st[n // 2 - 1] + st[n // 2])
    print(json.dumps({
        "bench": "sae", "kind": "train", "impl": "saelens-sparse" if a.sparse_acts else "saelens", "device": a.device,
        "tag": a.tag,
        "arch": a.arch, "ranks": 1, "torch_threads": torch.get_num_threads(), "rows_file": N, "d": d, "F": F,
        "k": a.k if a.arch == "topk" else 0, "batch": a.batch, "warmup": a.warmup, "steps": a.steps,
        "train_s": train_s, "rows_per_s": a.steps * a.batch / train_s, "step_s_median": med, "step_s_min": st[0],
        "import_s": t_import, "loss_first": first, "loss_last": last, "fvu_last": fvu, "l0_last": l0,
        "aux_last": aux, "sae_lens": sae_lens.__version__, "torch": torch.__version__,
        "dead_last": int(trainer.dead_neurons.sum()),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
