#!/usr/bin/env python3
"""make_pca_rows.py — seeded synthetic activation rows for the PCA benchmark (issue 6).

    make_pca_rows.py --rows 200000 --dim 2048 --seed 6 --out /tmp/tp-bench/pca/rows-200000x2048.npy

Writes an N × d float32 .npy (C order) that tools/bench/bench_pca (each MPI rank reads its
contiguous slice) and tools/bench/pca_numpy.py both read, so both sides see the same rows.
The structure imitates a residual stream:

  x = mu + (g * sqrt(lambda)) @ Q^T + spikes
  * Q: a random d × d orthogonal basis (QR of a Gaussian matrix), so the principal axes
    are not the coordinate axes;
  * lambda_i = 40 · i^-1.1 + 0.02 (i = 1..d): a power-law spectrum, a few strong directions
    ("low rank") decaying to a noise floor, condition number ~ 2000;
  * mu_j ~ N(0, 0.3²) plus MASSIVE large-mean channels (|mean| 60–250, the "massive
    activations" of LLM residual streams), which is what makes X^T X − n mu mu^T cancel;
  * spikes: a fraction 0.002 of the rows ("BOS-like" tokens) carry those channels at ~8× their
    mean, which gives the top principal component to the massive channels.
Rows are made in chunks, each from its own SeedSequence child, so the file is the same for
a given (rows, dim, seed) whatever the chunk memory. Skips the work when --out exists with
the right shape (unless --force).
"""
import argparse
import os
import sys
import time

import numpy as np

MASSIVE = [(7, 120.0), (291, -250.0), (1024, 60.0), (1777, 180.0)]   # (channel, mean) for d = 2048
CHUNK = 8192


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=200000)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=6)
    ap.add_argument("--out", required=True)
    ap.add_argument("--force", action="store_true")
    a = ap.parse_args()
    n, d = a.rows, a.dim
    if os.path.exists(a.out) and not a.force:
        try:
            m = np.load(a.out, mmap_mode="r")
            if m.shape == (n, d) and m.dtype == np.float32:
                print(f"{a.out}: exists ({n} x {d} f32)")
                return
        except ValueError:
            pass
    t0 = time.time()
    ss = np.random.SeedSequence(a.seed)
    basis_ss, mean_ss, chunks_ss = ss.spawn(3)
    g = np.random.default_rng(basis_ss).standard_normal((d, d))
    q, r = np.linalg.qr(g)
    q *= np.sign(np.diag(r))              # Haar-distributed orthogonal basis
    lam = 40.0 * np.arange(1, d + 1, dtype=np.float64) ** -1.1 + 0.02
    mix = (np.sqrt(lam)[:, None] * q.T).astype(np.float32)    # rows of g scaled then rotated: g @ mix
    mu = np.random.default_rng(mean_ss).normal(0.0, 0.3, d)
    chans = [(c % d, m) for c, m in MASSIVE]
    for c, m in chans:
        mu[c] = m
    mu32 = mu.astype(np.float32)
    tmp = a.out + ".tmp"
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, d))
    nchunks = (n + CHUNK - 1) // CHUNK
    for i, cs in enumerate(chunks_ss.spawn(nchunks)):
        r0, r1 = i * CHUNK, min(n, (i + 1) * CHUNK)
        rng = np.random.default_rng(cs)
        z = rng.standard_normal((r1 - r0, d), dtype=np.float32)
        x = z @ mix
        x += mu32
        spike = rng.random(r1 - r0) < 0.002
        for c, m in chans:
            x[:, c] += rng.normal(0.0, 0.05 * abs(m), r1 - r0).astype(np.float32)
            x[spike, c] = 8.0 * m * (1.0 + 0.1 * rng.standard_normal(int(spike.sum()))).astype(np.float32)
        out[r0:r1] = x
    out.flush()
    del out
    os.replace(tmp, a.out)
    print(f"{a.out}: {n} x {d} f32, seed {a.seed}, {time.time() - t0:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
