#!/usr/bin/env python3
"""make_sae_rows.py — random but structured activation rows for the SAE benchmark
(tools/bench/sae.sh) and the SAELens check (tools/reference/check_saelens.py).

    make_sae_rows.py --rows N --dim D [--features G] [--active A] [--seed S] --out ROWS.npy

Each row is a sparse sum of "true" features, as SAE papers' synthetic data: G unit
directions (Gaussian, normalised) with a power-law firing frequency (feature g fires
with probability ∝ (g+1)^-0.8, scaled so that a row has A active on average), each
active one with an exponential(1) + 0.5 magnitude, plus a common mean vector (norm 4)
and isotropic Gaussian noise (σ 0.05 per coordinate). f32, C order. Seeded: the same
arguments give the same file; an existing file of the right shape is kept.
"""
import argparse
import os
import sys

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--dim", type=int, required=True)
    ap.add_argument("--features", type=int, default=0, help="true features (default 4*dim)")
    ap.add_argument("--active", type=float, default=16.0, help="mean active true features per row")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    n, d = a.rows, a.dim
    g = a.features or 4 * d
    if os.path.exists(a.out):
        try:
            old = np.load(a.out, mmap_mode="r")
            if old.shape == (n, d) and old.dtype == np.float32:
                print(f"{a.out}: kept ({n} x {d} f32)")
                return 0
        except Exception:
            pass
    rng = np.random.default_rng(a.seed)
    dirs = rng.standard_normal((g, d)).astype(np.float32)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    p = (np.arange(g) + 1.0) ** -0.8
    p *= a.active / p.sum()
    p = np.minimum(p, 0.9)
    mean = rng.standard_normal(d).astype(np.float32)
    mean *= 4.0 / np.linalg.norm(mean)
    out = np.lib.format.open_memmap(a.out + ".tmp.npy", mode="w+", dtype=np.float32, shape=(n, d))
    chunk = 8192
    for r0 in range(0, n, chunk):
        r1 = min(n, r0 + chunk)
        m = r1 - r0
        fire = rng.random((m, g), dtype=np.float32) < p[None, :].astype(np.float32)
        mag = (rng.exponential(1.0, (m, g)).astype(np.float32) + 0.5) * fire
        x = mag @ dirs + mean[None, :] + 0.05 * rng.standard_normal((m, d)).astype(np.float32)
        out[r0:r1] = x
    out.flush()
    del out
    os.replace(a.out + ".tmp.npy", a.out)
    print(f"{a.out}: {n} x {d} f32, {g} true features, {a.active:g} active per row on average, seed {a.seed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
