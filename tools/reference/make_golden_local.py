#!/usr/bin/env python3
"""Golden data for local geometry and norm statistics (src/analysis/geometry/
{local_geometry,norm_stats}.c, tests/mpi/test_geometry_local.c).

Run from the repository root with the reference venv:

    /opt/transpolmo-ref/bin/python tools/reference/make_golden_local.py

Data (float32, seeded; the references work on float64 copies of the stored values):
  manifold.npy   the curved 4-D manifold of make_golden_geometry.py (already committed)
  plane.npy      300 x 16: a 3-D linear subspace (uniform coordinates, random
                 orthonormal basis) + Gaussian noise sd 1e-3 + an offset
  massive.npy    300 x 32: standard normal rows, a common direction added (so the
                 rows are anisotropic), two "massive" coordinates (column 5 = 400 on
                 every 10th row, column 17 = -900 on every 25th row), one zero row

References (independent routes from the C code, which uses the Gram matrix, dsyevd
and its own percentile):
  local geometry  for each sampled point x (the C sampler, sample_indices of
                  make_golden_geometry.py): exact brute-force neighbours (f64, ties by
                  index, k-th/(k+1)-th gap checked), local PCA by numpy.linalg.svd of
                  the centred neighbourhood (eigenvalues = s^2), local dimension from the
                  cumulative share (the script refuses data where a cumulative share is
                  within 1e-9 of the threshold), tangent bases from the right singular
                  vectors, principal angles by scipy.linalg.subspace_angles, summaries by
                  numpy.percentile (linear) and numpy.mean.
  norm stats      numpy.linalg.norm, numpy.percentile, numpy.median of mean |x_j|,
                  the massive rule, and the mean cosine over all pairs i != j computed
                  explicitly from the full cosine matrix U U^T (not from |sum u|^2).

Writes tests/data/golden/geometry/{plane.npy, massive.npy, local_reference.json}.
"""
import json
import os
import sys

import numpy as np
import scipy
import scipy.linalg

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_golden_geometry import brute_knn, sample_indices  # noqa: E402  (exact f64 kNN; the C sampler)

SEED = 20251125
ROOT = "tests/data/golden/geometry"
LOCAL_CASES = [  # (data, k, sample, seed, var_threshold)
    ("manifold", 10, 120, 7, 0.9),
    ("manifold", 20, 0, 3, 0.8),
    ("plane", 12, 100, 5, 0.9),
]
PCTS = [1, 5, 25, 50, 75, 95, 99]
MASSIVE_RATIO = 100.0


def make_plane(rng, n=300, d=16, m=3):
    t = rng.uniform(-1.0, 1.0, (n, m))
    q, _ = np.linalg.qr(rng.standard_normal((d, m)))
    x = t @ q.T + 1e-3 * rng.standard_normal((n, d))
    x[:, 4] += 2.5
    return x.astype(np.float32)


def make_massive(rng, n=300, d=32):
    x = rng.standard_normal((n, d))
    direction = rng.standard_normal(d)
    x += 1.5 * direction / np.linalg.norm(direction) * np.sqrt(d) * 0.3
    x[::10, 5] = 400.0
    x[::25, 17] = -900.0
    x[123] = 0.0
    return x.astype(np.float32)


def local_pca(x, centre, nbrs, thr):
    pts = x[np.concatenate([[centre], nbrs])]
    pts = pts - pts.mean(axis=0)
    _, s, vt = np.linalg.svd(pts, full_matrices=False)
    lam = s ** 2
    total = lam.sum()
    share = np.cumsum(lam) / total
    if np.min(np.abs(share - thr)) < 1e-9:
        sys.exit("a cumulative local share is within 1e-9 of the threshold: pick another seed")
    ld = int(np.argmax(share >= thr)) + 1
    return ld, vt, lam


def pct(v, q):
    v = v[~np.isnan(v)]
    return float(np.percentile(v, q)) if len(v) else None


def summary(v):
    w = v[~np.isnan(v)]
    return {"mean": float(w.mean()), "median": pct(v, 50), "p10": pct(v, 10), "p90": pct(v, 90)}


def local_reference(x, k, sample, seed, thr):
    n = len(x)
    m = n if sample == 0 or sample >= n else sample
    q = sample_indices(n, m, seed)
    dist, idx = brute_knn(x, q, k)
    ys = idx[:, 0]
    dist_y, idx_y = brute_knn(x, ys, k)
    ld = np.zeros(m, dtype=np.int64)
    angle = np.full(m, np.nan)
    gaps = []
    for i in range(m):
        ldx, vx, lx = local_pca(x, q[i], idx[i], thr)
        ldy, vy, ly = local_pca(x, ys[i], idx_y[i], thr)
        ld[i] = ldx
        t = min(ldx, ldy)
        # the bases are defined when the t-th and (t+1)-th local eigenvalues differ
        gaps.append(min(lx[t - 1] / lx[t], ly[t - 1] / ly[t]) if t < len(lx) else np.inf)
        ang = scipy.linalg.subspace_angles(vx[:t].T, vy[:t].T)
        angle[i] = np.degrees(ang.mean())
    turn = np.radians(angle) / dist[:, 0]
    hist = np.bincount(ld, minlength=k + 2)[: k + 2]
    return {
        "k": k, "sample": sample, "seed": seed, "var_threshold": thr, "n_sample": int(m),
        "sample_index": q.tolist(), "local_dim": ld.tolist(), "angle_deg": angle.tolist(),
        "nn_dist": dist[:, 0].tolist(), "dim_histogram": hist.tolist(),
        "dim": summary(ld.astype(np.float64)), "angle": summary(angle), "turn_per_dist": summary(turn),
        "min_eigen_gap_ratio": float(np.min(gaps)),
    }


def norm_reference(x):
    n, d = x.shape
    nr = np.linalg.norm(x, axis=1)
    mean_abs = np.abs(x).mean(axis=0)
    typ = float(np.median(mean_abs))
    mx = np.abs(x).max(axis=0)
    massive = [int(j) for j in np.argsort(-mx, kind="stable") if mx[j] >= MASSIVE_RATIO * typ and mx[j] > 0]
    nz = nr > 0
    u = x[nz] / nr[nz, None]
    cos = u @ u.T
    m = len(u)
    mean_cos = (cos.sum() - np.trace(cos)) / (m * (m - 1))
    xc = x - x.mean(axis=0)
    nc = np.linalg.norm(xc, axis=1)
    uc = xc[nc > 0] / nc[nc > 0, None]
    cc = uc @ uc.T
    mc = len(uc)
    mean_cos_c = (cc.sum() - np.trace(cc)) / (mc * (mc - 1))
    mu = x.mean(axis=0)
    return {
        "n": n, "d": d, "norm_mean": float(nr.mean()), "norm_std": float(nr.std()), "norm_min": float(nr.min()),
        "norm_max": float(nr.max()), "norm_pct": [float(np.percentile(nr, p)) for p in PCTS],
        "typical_abs": typ, "massive_ratio": MASSIVE_RATIO, "massive_dims": massive,
        "massive_max_abs": [float(mx[j]) for j in massive], "massive_mean": [float(mu[j]) for j in massive],
        "mean_cosine": float(mean_cos), "mean_cosine_centred": float(mean_cos_c),
        "mean_share": float(mu @ mu / (nr ** 2).mean()), "zero_rows": int((~nz).sum()),
    }


def main():
    rng = np.random.default_rng(SEED)
    plane = make_plane(rng)
    massive = make_massive(rng)
    np.save(os.path.join(ROOT, "plane.npy"), plane)
    np.save(os.path.join(ROOT, "massive.npy"), massive)
    data = {"manifold": np.load(os.path.join(ROOT, "manifold.npy")), "plane": plane, "massive": massive}
    ref = {
        "generator": "tools/reference/make_golden_local.py", "seed": SEED,
        "versions": {"numpy": np.__version__, "scipy": scipy.__version__},
        "local": [dict(data=name, **local_reference(data[name].astype(np.float64), k, s, sd, thr))
                  for name, k, s, sd, thr in LOCAL_CASES],
        "norms": {name: norm_reference(data[name].astype(np.float64)) for name in ("massive", "manifold")},
    }
    for c in ref["local"]:
        print("%s k=%d: local dim median %.1f, angle median %.2f deg, min eigen gap ratio %.3f"
              % (c["data"], c["k"], c["dim"]["median"], c["angle"]["median"], c["min_eigen_gap_ratio"]))
    for name, r in ref["norms"].items():
        print("%s: massive dims %s, mean cosine %.4f" % (name, r["massive_dims"], r["mean_cosine"]))
    with open(os.path.join(ROOT, "local_reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
