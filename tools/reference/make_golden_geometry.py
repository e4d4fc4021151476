#!/usr/bin/env python3
"""Golden data for the geometry estimators beyond PCA: distributed kNN, intrinsic
dimension (MLE, TwoNN) and k-means / silhouette (src/analysis/geometry/{knn,
intrinsic_dim,kmeans}.c, tests/mpi/test_geometry_estimators.c).

Run from the repository root with the reference venv:

    /opt/transpolmo-ref/bin/python tools/reference/make_golden_geometry.py

Two fixed, seeded data sets, stored as float32; every reference works on float64
copies of the stored float32 values, as the C code does:

  manifold.npy   400 x 24: a curved 4-dimensional manifold (4 uniform coordinates
                 and their sines and cosines, rotated into 24 dimensions), plus
                 Gaussian noise (sd 0.01) and an offset of a few units on three
                 columns. References from scikit-dimension:
                   MLE    skdim.id.MLE() (dnoise=None, sigma=0, neighborhood_based=True,
                          integral_approximation="Haro") .fit(X, n_neighbors=k, comb=...)
                          comb="mle" (MacKay-Ghahramani: 1 / mean(1 / m_k)) and
                          comb="mean", for k = 20 (unbiased=False: k - 1 in the numerator)
                          and k = 10 with unbiased=True (k - 2).
                   TwoNN  skdim.id.TwoNN() defaults (discard_fraction=0.1,
                          method="linear": least squares through the origin).
                 Full set: skdim on X directly (its own sklearn neighbours). Sampled
                 set: the rows chosen by sample_indices() below (the C sampler) are
                 the queries, neighbours come from the whole set (self excluded) by
                 exact numpy brute force, and skdim gets them as
                 precomputed_knn_arrays (MLE) or as (r1, r2) columns with dist=True
                 (TwoNN).
  blobs.npy      300 x 8: three Gaussian blobs (120, 100, 80 points, sd 1, centres
                 about 5 apart, so a few points change cluster during Lloyd), an
                 offset of 20 on column 0. References from scikit-learn:
                   KMeans(n_clusters=3, init=<fixed>, n_init=1, algorithm="lloyd",
                          tol=0, max_iter=300): labels, inertia, centres, n_iter
                          (tol=0: stop only when the assignment stops changing, as C does)
                     - init_fixed: three data rows
                     - init_empty: two data rows and a point far from all data, so the
                       third cluster is empty after the first assignment and sklearn
                       relocates it to the point farthest from its centre
                   silhouette_score(X, labels) on all rows, on the rows chosen by
                   sample_indices(), and with one point moved to a cluster of its own
                   (a singleton scores 0).

The script checks that nothing it relies on sits on a knife edge: the k-th and
(k+1)-th neighbour distances differ (so the neighbour sets are unambiguous), every
point's nearest and second-nearest centre differ at every Lloyd iteration (replayed
in numpy, which must give sklearn's labels and iteration count), and the relocated
point is the unique farthest one.

Writes tests/data/golden/geometry/{manifold.npy, blobs.npy, kmeans_init_fixed.npy,
kmeans_init_empty.npy, reference.json}.
"""
import json
import os
import sys
import warnings

import numpy as np
import sklearn
import skdim
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score
from sklearn.neighbors import NearestNeighbors

SEED = 20250311
M64 = (1 << 64) - 1

ID_SAMPLE, ID_SAMPLE_SEED = 150, 7
SIL_SAMPLE, SIL_SAMPLE_SEED = 120, 11


# ---- the C sampler (knn.c: tp_sample_indices), bit for bit -------------------------

class SplitMix64:
    """splitmix64 (Steele, Lea & Flood 2014), as in knn.c."""

    def __init__(self, seed):
        self.s = seed & M64

    def next(self):
        self.s = (self.s + 0x9E3779B97F4A7C15) & M64
        z = self.s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        return z ^ (z >> 31)

    def below(self, bound):
        """Uniform in [0, bound) by rejection (no modulo bias)."""
        rem = (1 << 64) % bound
        limit = (1 << 64) - rem
        while True:
            r = self.next()
            if r < limit:
                return r % bound


def sample_indices(n, m, seed):
    """m distinct rows of n, ascending: Floyd's algorithm (Bentley & Floyd 1987)."""
    if m >= n:
        return np.arange(n, dtype=np.int64)
    rng = SplitMix64(seed)
    chosen = set()
    for j in range(n - m, n):
        t = rng.below(j + 1)
        chosen.add(j if t in chosen else t)
    return np.array(sorted(chosen), dtype=np.int64)


# ---- data ---------------------------------------------------------------------------

def make_manifold(rng, n=400, d=24, m=4):
    t = rng.uniform(0.0, 1.0, (n, m))
    feats = np.concatenate([t, np.sin(np.pi * t), 0.5 * np.cos(2.0 * np.pi * t)], axis=1)
    q, _ = np.linalg.qr(rng.standard_normal((d, feats.shape[1])))
    x = feats @ q.T + 0.01 * rng.standard_normal((n, d))
    x[:, [2, 9, 17]] += [4.0, -3.0, 6.0]
    return x.astype(np.float32)


def make_blobs(rng, sizes=(120, 100, 80), d=8):
    centres = np.zeros((3, d))
    centres[1, 0], centres[2, 1] = 5.0, 5.0
    centres[:, 2] = [0.0, 1.0, -1.0]
    x = np.concatenate([c + rng.standard_normal((s, d)) for c, s in zip(centres, sizes)])
    x = x[rng.permutation(len(x))]
    x[:, 0] += 20.0
    return x.astype(np.float32)


# ---- neighbours ---------------------------------------------------------------------

def brute_knn(x, queries, k):
    """Exact f64 neighbours of x[queries] in x, self excluded, ties by index."""
    d2 = ((x[queries, None, :] - x[None, :, :]) ** 2).sum(-1)
    d2[np.arange(len(queries)), queries] = np.inf
    order = np.lexsort((np.broadcast_to(np.arange(len(x)), d2.shape), d2), axis=1)[:, : k + 1]
    dk = np.take_along_axis(d2, order, axis=1)
    gap = (dk[:, k] - dk[:, k - 1]) / dk[:, k]
    if gap.min() < 1e-9:
        sys.exit("k-th and (k+1)-th neighbours within %.1e: pick another seed" % gap.min())
    return np.sqrt(dk[:, :k]), order[:, :k]


def mle(x, k, unbiased, comb, knn=None):
    est = skdim.id.MLE(unbiased=unbiased)
    if knn is None:
        return float(est.fit(x, n_neighbors=k, comb=comb).dimension_)
    return float(est.fit(x[: len(knn[0])], precomputed_knn_arrays=knn, n_neighbors=k, comb=comb).dimension_)


def id_references(x):
    n = len(x)
    out = {}
    # The full-set references come from skdim's own neighbour search; make sure its
    # neighbours are the exact ones (sklearn may use the ||a||^2 + ||b||^2 - 2ab form).
    all_rows = np.arange(n)
    dist20, idx20 = brute_knn(x, all_rows, 20)
    nn_d, nn_i = NearestNeighbors(n_neighbors=20).fit(x).kneighbors()
    assert np.array_equal(nn_i, idx20), "sklearn neighbours differ from the exact ones"
    out["full_neighbour_distance_max_rel_diff_sklearn_vs_exact"] = float(np.max(np.abs(nn_d - dist20) / dist20))
    out["full"] = {
        "mle_k20": mle(x, 20, False, "mle"),
        "mle_mean_k20": mle(x, 20, False, "mean"),
        "mle_k10_unbiased": mle(x, 10, True, "mle"),
        "mle_mean_k10_unbiased": mle(x, 10, True, "mean"),
        "twonn": float(skdim.id.TwoNN().fit(x).dimension_),
    }
    # the same estimators on the exact neighbours, to show how little the search matters
    d10 = dist20[:, :10]
    out["full_exact_neighbours"] = {
        "mle_k20": mle(x, 20, False, "mle", (dist20, idx20)),
        "mle_k10_unbiased": mle(x, 10, True, "mle", (d10, idx20[:, :10])),
        "twonn": float(skdim.id.TwoNN(dist=True).fit(dist20[:, :2]).dimension_),
    }
    s = sample_indices(n, ID_SAMPLE, ID_SAMPLE_SEED)
    sd, si = brute_knn(x, s, 20)
    out["sample"] = {
        "size": ID_SAMPLE,
        "seed": ID_SAMPLE_SEED,
        "indices": s.tolist(),
        "mle_k20": mle(x, 20, False, "mle", (sd, si)),
        "mle_mean_k20": mle(x, 20, False, "mean", (sd, si)),
        "mle_k10_unbiased": mle(x, 10, True, "mle", (sd[:, :10], si[:, :10])),
        "mle_mean_k10_unbiased": mle(x, 10, True, "mean", (sd[:, :10], si[:, :10])),
        "twonn": float(skdim.id.TwoNN(dist=True).fit(sd[:, :2]).dimension_),
    }
    return out


# ---- k-means ------------------------------------------------------------------------

def lloyd_numpy(x, init, max_iter=300):
    """Replays sklearn's Lloyd (with its relocation of empty clusters) in numpy and
    checks the margin of every assignment."""
    c = init.copy()
    labels_old = np.full(len(x), -1)
    min_margin, relocations = np.inf, 0
    for it in range(max_iter):
        d2 = ((x[:, None, :] - c[None, :, :]) ** 2).sum(-1)
        labels = np.argmin(d2, axis=1)
        part = np.sort(d2, axis=1)
        min_margin = min(min_margin, float(np.min((part[:, 1] - part[:, 0]) / part[:, 1])))
        k = len(c)
        sums = np.zeros_like(c)
        cnt = np.zeros(k)
        for j in range(k):
            sums[j] = x[labels == j].sum(0)
            cnt[j] = np.sum(labels == j)
        empty = np.where(cnt == 0)[0]
        if len(empty):
            far = ((x - c[labels]) ** 2).sum(1)
            order = np.argsort(-far, kind="stable")
            top = np.sort(far)[::-1]
            if len(empty) < len(x) and (top[len(empty) - 1] - top[len(empty)]) / top[0] < 1e-9:
                sys.exit("farthest points nearly tie: pick another init")
            for e, f in zip(empty, order[: len(empty)]):
                old = labels[f]
                sums[old] -= x[f]
                sums[e] = x[f]
                cnt[e] = 1
                cnt[old] -= 1
                relocations += 1
        c = np.where(cnt[:, None] > 0, sums / np.maximum(cnt, 1)[:, None], c)
        if np.array_equal(labels, labels_old):
            break
        labels_old = labels
    if min_margin < 1e-6:
        sys.exit("a point is within %.1e of two centres: pick another seed" % min_margin)
    return labels, c, it + 1, min_margin, relocations


def kmeans_reference(x, init):
    km = KMeans(n_clusters=len(init), init=init, n_init=1, algorithm="lloyd", tol=0.0, max_iter=300)
    km.fit(x)
    labels, centres, n_iter, margin, reloc = lloyd_numpy(x, init)
    assert np.array_equal(labels, km.labels_), "numpy replay of Lloyd differs from sklearn"
    assert n_iter == km.n_iter_, "numpy replay: %d iterations, sklearn %d" % (n_iter, km.n_iter_)
    assert np.allclose(centres, km.cluster_centers_, rtol=0, atol=1e-10)
    return {
        "labels": km.labels_.astype(int).tolist(),
        "inertia": float(km.inertia_),
        "centres": km.cluster_centers_.tolist(),
        "n_iter": int(km.n_iter_),
        "sizes": np.bincount(km.labels_, minlength=len(init)).astype(int).tolist(),
        "min_assignment_margin": margin,
        "relocations": reloc,
    }


def main(root="tests/data/golden/geometry"):
    os.makedirs(root, exist_ok=True)
    rng = np.random.default_rng(SEED)
    xm = make_manifold(rng)
    xb = make_blobs(rng)
    xm64, xb64 = xm.astype(np.float64), xb.astype(np.float64)

    ref = {
        "generator": "tools/reference/make_golden_geometry.py",
        "seed": SEED,
        "versions": {"numpy": np.__version__, "scikit-learn": sklearn.__version__,
                     "scikit-dimension": skdim.__version__},
        "manifold": {"n": xm.shape[0], "d": xm.shape[1]},
        "blobs": {"n": xb.shape[0], "d": xb.shape[1]},
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")    # no duplicate points, no clipped k
        ref["intrinsic_dim"] = id_references(xm64)

    init_rows = rng.choice(len(xb), 3, replace=False)
    init_fixed = xb64[init_rows].copy()
    init_empty = xb64[init_rows].copy()
    init_empty[2] = xb64.mean(0) + 100.0
    ref["kmeans_fixed"] = kmeans_reference(xb64, init_fixed)
    ref["kmeans_fixed"]["init_rows"] = init_rows.tolist()
    ref["kmeans_empty"] = kmeans_reference(xb64, init_empty)
    if ref["kmeans_empty"]["relocations"] != 1:
        sys.exit("init_empty: expected one relocation, got %d" % ref["kmeans_empty"]["relocations"])

    labels = np.array(ref["kmeans_fixed"]["labels"])
    s = sample_indices(len(xb), SIL_SAMPLE, SIL_SAMPLE_SEED)
    single = labels.copy()
    single[0] = 3
    ref["silhouette"] = {
        "full": float(silhouette_score(xb64, labels)),
        "sample": {"size": SIL_SAMPLE, "seed": SIL_SAMPLE_SEED, "indices": s.tolist(),
                   "score": float(silhouette_score(xb64[s], labels[s]))},
        "singleton_row0_in_cluster3": float(silhouette_score(xb64, single)),
    }

    np.save(os.path.join(root, "manifold.npy"), xm)
    np.save(os.path.join(root, "blobs.npy"), xb)
    np.save(os.path.join(root, "kmeans_init_fixed.npy"), init_fixed)
    np.save(os.path.join(root, "kmeans_init_empty.npy"), init_empty)
    with open(os.path.join(root, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    idr = ref["intrinsic_dim"]
    print("MLE k=20 %.6f (mean %.6f), k=10 unbiased %.6f, TwoNN %.6f; sample MLE %.6f TwoNN %.6f"
          % (idr["full"]["mle_k20"], idr["full"]["mle_mean_k20"], idr["full"]["mle_k10_unbiased"],
             idr["full"]["twonn"], idr["sample"]["mle_k20"], idr["sample"]["twonn"]))
    for key in ("kmeans_fixed", "kmeans_empty"):
        r = ref[key]
        print("%s: inertia %.6f, %d iterations, sizes %s, margin %.2e" % (key, r["inertia"], r["n_iter"],
                                                                       r["sizes"], r["min_assignment_margin"]))
    print("silhouette %.6f, sample %.6f, singleton %.6f" % (ref["silhouette"]["full"],
                                                          ref["silhouette"]["sample"]["score"],
                                                          ref["silhouette"]["singleton_row0_in_cluster3"]))


if __name__ == "__main__":
    main(*sys.argv[1:])
