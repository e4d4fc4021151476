#!/usr/bin/env python3
"""pca_numpy.py — the NumPy and scikit-learn baselines of the PCA benchmark (issue 6).

    OPENBLAS_NUM_THREADS=2 OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 \\
    /opt/transpolmo-ref/bin/python tools/bench/pca_numpy.py --npy ROWS.npy \\
        [--rows N] [--k 100] [--what numpy,skl-full,skl-cov] [--cov-out COV.npy] \\
        [--c-prefix PREFIX ...] [--tag TEXT]
    pca_numpy.py --cov-in COV.npy --what eigh [--reps 3]     # eigh alone, on a saved covariance

Reads the first N rows of ROWS.npy (f32, made by make_pca_rows.py; load time reported,
not counted) and times, one JSON line each:
  numpy     np.cov(X, rowvar=False) (f64: a centred f64 copy, then Xc^T Xc, which NumPy
            runs as a syrk) = cov_s; numpy.linalg.eigh of that covariance (LAPACK syevd,
            all eigenvectors) = eigh_s; --cov-out writes the covariance (f64) for
            bench_pca --eig-cov, so that both sides decompose the same matrix.
  skl-full  sklearn.decomposition.PCA(n_components=k, svd_solver="full").fit(X): LAPACK
            gesdd of the centred f32 rows = fit_s.
  skl-cov   PCA(n_components=k, svd_solver="covariance_eigh").fit(X) (scikit-learn ≥ 1.5):
            X^T X in the rows' dtype (f32), minus n mu mu^T, then eigh = fit_s.
  eigh      (with --cov-in, no rows read) numpy.linalg.eigh alone on a saved covariance,
            --reps times (eigh_s each).
With --c-prefix (bench_pca --out PREFIX files; may be repeated), a parity check: the C eigenvalues against
NumPy's eigh (relative error on the top 10 and top k, and the largest error over the whole
spectrum relative to lambda_1), |cos| between the C components and NumPy's eigenvectors (the
smallest over the top 10). Each scikit-learn fit run here is checked the same way against
NumPy's f64 eigh when numpy ran too (its top k only: that is all it returns), else against the
first C prefix.
"""
import argparse
import json
import os
import sys
import time

import numpy as np


def rel(a, b):
    return float(np.max(np.abs(a - b) / np.abs(b)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--npy")
    ap.add_argument("--cov-in")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--rows", type=int, default=0)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--what", default="numpy,skl-full,skl-cov")
    ap.add_argument("--cov-out")
    ap.add_argument("--c-prefix", action="append", default=[])
    ap.add_argument("--tag", default="")
    a = ap.parse_args()
    what = [w for w in a.what.split(",") if w]
    if a.cov_in:
        C = np.load(a.cov_in)
        for rep in range(a.reps):
            t0 = time.perf_counter()
            w = np.linalg.eigh(C)[0]
            print(json.dumps({"bench": "pca", "tag": a.tag, "kind": "eigh", "d": C.shape[0], "rep": rep,
                              "threads": os.environ.get("OPENBLAS_NUM_THREADS", ""),
                              "eigh_s": round(time.perf_counter() - t0, 4), "lambda1": float(w[-1])}), flush=True)
        return
    if not a.npy:
        ap.error("--npy ROWS.npy (or --cov-in COV.npy) is required")

    t0 = time.perf_counter()
    m = np.load(a.npy, mmap_mode="r")
    n = a.rows if 0 < a.rows < m.shape[0] else m.shape[0]
    X = np.ascontiguousarray(m[:n])
    del m
    load_s = time.perf_counter() - t0
    d = X.shape[1]
    k = min(a.k, d)
    base = {"bench": "pca", "tag": a.tag, "n": n, "d": d, "k": k, "load_s": round(load_s, 4),
            "threads": os.environ.get("OPENBLAS_NUM_THREADS", "")}
    try:
        from threadpoolctl import threadpool_info
        base["blas"] = sorted({f"{i.get('internal_api')}-{i.get('version')}x{i.get('num_threads')}"
                               for i in threadpool_info()})
    except ImportError:
        pass

    cs = [(os.path.basename(p), np.load(p + ".eigenvalues.npy"), np.load(p + ".components.npy"))
          for p in a.c_prefix if os.path.exists(p + ".eigenvalues.npy")]
    parity = {}
    w = V = None

    if "numpy" in what:
        t0 = time.perf_counter()
        C = np.cov(X, rowvar=False)
        cov_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        w, V = np.linalg.eigh(C)
        eigh_s = time.perf_counter() - t0
        w, V = w[::-1], V[:, ::-1]
        print(json.dumps({**base, "kind": "numpy", "cov_s": round(cov_s, 4), "eigh_s": round(eigh_s, 4),
                          "total_s": round(cov_s + eigh_s, 4), "lambda1": float(w[0]), "cov_dtype": str(C.dtype),
                          "numpy": np.__version__}), flush=True)
        if a.cov_out:
            tmp = a.cov_out + ".tmp.npy"
            np.save(tmp, C)
            os.replace(tmp, a.cov_out)
        for name, c_eig, c_comp in cs:
            kk = min(k, c_comp.shape[0])
            cos = np.abs(np.sum(c_comp[:10] * V[:, :10].T, axis=1))
            parity[f"{name}_vs_numpy"] = {
                "rel_top10": rel(c_eig[:10], w[:10]), f"rel_top{kk}": rel(c_eig[:kk], w[:kk]),
                "max_abs_over_lambda1": float(np.max(np.abs(c_eig - w)) / w[0]),
                "min_cos_top10": float(np.min(cos)), "lambda1": [float(c_eig[0]), float(w[0])],
                "lambda_d": [float(c_eig[-1]), float(w[-1])]}
        del C

    skl = [w_ for w_ in what if w_.startswith("skl-")]
    if skl:
        import sklearn
        from sklearn.decomposition import PCA
        for w_ in skl:
            solver = {"skl-full": "full", "skl-cov": "covariance_eigh"}[w_]
            pca = PCA(n_components=k, svd_solver=solver)
            t0 = time.perf_counter()
            try:
                pca.fit(X)
            except ValueError as e:   # covariance_eigh before scikit-learn 1.5
                print(json.dumps({**base, "kind": w_, "error": str(e)}), flush=True)
                continue
            fit_s = time.perf_counter() - t0
            ev = pca.explained_variance_.astype(np.float64)
            print(json.dumps({**base, "kind": w_, "solver": solver, "fit_s": round(fit_s, 4), "lambda1": float(ev[0]),
                              "dtype": str(pca.components_.dtype), "sklearn": sklearn.__version__}), flush=True)
            if w is not None:   # against the f64 reference
                cos = np.abs(np.sum(V[:, :10].T * pca.components_[:10].astype(np.float64), axis=1))
                parity[f"{w_}_vs_numpy"] = {"rel_top10": rel(ev[:10], w[:10]), f"rel_top{k}": rel(ev[:k], w[:k]),
                                            f"max_abs_top{k}_over_lambda1": float(np.max(np.abs(ev[:k] - w[:k])) / w[0]),
                                            "min_cos_top10": float(np.min(cos))}
            for name, c_eig, c_comp in cs[:1] if w is None else []:
                cos = np.abs(np.sum(c_comp[:10] * pca.components_[:10].astype(np.float64), axis=1))
                parity[f"{name}_vs_{w_}"] = {"rel_top10": rel(ev[:10], c_eig[:10]),
                                        f"rel_top{k}": rel(ev[:k], c_eig[:k]), "min_cos_top10": float(np.min(cos))}
    if parity:
        print(json.dumps({**base, "kind": "parity", **parity}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
