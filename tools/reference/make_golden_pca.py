#!/usr/bin/env python3
"""Golden data for the distributed PCA (src/analysis/geometry/pca.c, tests/mpi/test_pca.c).

Run from the repository root with the reference venv:

    /opt/transpolmo-ref/bin/python tools/reference/make_golden_pca.py

Makes a fixed data set X (N=600 rows, d=48, float32, seeded) with a decaying
spectrum (variance 8 * 0.8**i along random orthonormal directions, so neighbouring
components are 25 % apart and well separated) and a large mean on a few columns
(like the huge-mean channels of LLM residual streams, which make the textbook
XᵀX − n·μμᵀ lose digits). The references use float64 copies of the stored float32
values, so the C code, which accumulates in float64, sees the same numbers:

  eigh   numpy.linalg.eigh (LAPACK syevd) of the two-pass covariance
         (X − μ)ᵀ(X − μ) / (N − 1): eigenvalues descending and eigenvectors
  svd    numpy.linalg.svd (LAPACK gesdd) of X − μ: s² / (N − 1) and Vᵀ

Components have the sign convention of pca.h: the entry of largest |value| (first
on a tie) positive. Summary numbers from the eigh spectrum: explained-variance
ratios λ / Σλ, intrinsic dimension at 90/95/99 % (smallest k with cumulative ratio
≥ threshold; the script refuses a data set whose cumulative ratio lies within 1e-6
of a threshold, where rounding could move the integer), participation ratio
(Σλ)² / Σλ², effective rank exp(H(λ / Σλ)) (Roy & Vetterli 2007).

Writes tests/data/golden/pca/{x.npy, components_eigh.npy, components_svd.npy,
reference.json}. If scikit-learn is installed its PCA is compared too (not needed).
"""
import json
import os
import sys

import numpy as np

SEED = 20250206
N, D = 600, 48
THRESHOLDS = (0.90, 0.95, 0.99)


def make_data():
    rng = np.random.default_rng(SEED)
    var = 8.0 * 0.8 ** np.arange(D)
    q, _ = np.linalg.qr(rng.standard_normal((D, D)))
    z = rng.standard_normal((N, D)) * np.sqrt(var)
    mean = rng.normal(0.0, 0.5, D)
    mean[[3, 17, 40]] = [60.0, -45.0, 30.0]
    return (z @ q.T + mean).astype(np.float32)


def fix_signs(comp):
    comp = comp.copy()
    for c in range(comp.shape[0]):
        a = np.sort(np.abs(comp[c]))
        if a[-1] - a[-2] < 1e-6:
            sys.exit("component %d: two entries of nearly equal |value| make the sign fragile" % c)
        j = int(np.argmax(np.abs(comp[c])))   # first maximum, as in pca.c
        if comp[c, j] < 0:
            comp[c] = -comp[c]
    return comp


def summary(lam):
    total = lam.sum()
    ratio = lam / total
    cum = np.cumsum(ratio)
    dims = {}
    for t in THRESHOLDS:
        k = int(np.argmax(cum >= t)) + 1
        margin = np.min(np.abs(cum - t))
        if margin < 1e-6:
            sys.exit("cumulative ratio within %.1e of %.2f: pick another seed" % (margin, t))
        dims["intrinsic_dim_%dpct_var" % round(100 * t)] = k
    pos = np.clip(lam, 0, None)
    p = pos / pos.sum()
    p = p[p > 0]
    return ratio, dims, float(pos.sum() ** 2 / (pos ** 2).sum()), float(np.exp(-(p * np.log(p)).sum()))


def main(root="tests/data/golden/pca"):
    os.makedirs(root, exist_ok=True)
    x32 = make_data()
    x = x32.astype(np.float64)
    mu = x.mean(axis=0)
    xc = x - mu
    cov = xc.T @ xc / (N - 1)

    w, v = np.linalg.eigh(cov)
    order = np.argsort(w)[::-1]
    lam = w[order]
    comp_eigh = fix_signs(v[:, order].T)

    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    lam_svd = s ** 2 / (N - 1)
    comp_svd = fix_signs(vt)

    gaps = np.min(np.diff(lam[::-1]) / lam[:-1][::-1])
    ratio, dims, pr, erank = summary(lam)

    np.save(os.path.join(root, "x.npy"), x32)
    np.save(os.path.join(root, "components_eigh.npy"), comp_eigh)
    np.save(os.path.join(root, "components_svd.npy"), comp_svd)
    ref = {
        "made_by": "tools/reference/make_golden_pca.py (numpy %s)" % np.__version__,
        "seed": SEED,
        "n": N,
        "d": D,
        "sign_convention": "largest-|value| entry of each component positive (first on a tie)",
        "min_relative_eigengap": float(gaps),
        "mean": mu.tolist(),
        "eigenvalues_eigh": lam.tolist(),
        "eigenvalues_svd": lam_svd.tolist(),
        "explained_variance_ratio": ratio.tolist(),
        **dims,
        "participation_ratio": pr,
        "effective_rank": erank,
        "total_variance": float(lam.sum()),
    }
    with open(os.path.join(root, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    print("eigh vs svd: eigenvalues max rel %.2e, components max abs %.2e" %
          (np.max(np.abs(lam - lam_svd) / lam), np.max(np.abs(comp_eigh - comp_svd))))
    print("min relative eigengap %.3f; dims %s; PR %.6f; erank %.6f" % (gaps, dims, pr, erank))
    try:
        from sklearn.decomposition import PCA
    except ImportError:
        print("scikit-learn not installed: skipped its cross-check")
    else:
        p = PCA(svd_solver="full").fit(x)
        print("sklearn: explained_variance max rel %.2e" %
              np.max(np.abs(p.explained_variance_ - lam) / lam))
    print("wrote", root)


if __name__ == "__main__":
    main(*sys.argv[1:])
