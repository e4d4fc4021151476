"""Checks phase 3's outputs against NumPy, reading the store with h5py as users do.

usage: python3 check_geometry.py STORE.h5 geometric_analysis.json
       python3 check_geometry.py --same A.json B.json     (np-independence)

For every analysed capture point: /pca/<hook>/ (mean, eigenvalues, ratios, components
up to sign) against numpy.linalg.eigh of numpy.cov over the unmasked rows; the PCA
summary numbers recomputed from NumPy's spectrum; norm statistics (numpy.linalg.norm,
numpy.percentile, the massive-coordinate rule, the mean cosine from an explicit cosine
matrix); cluster sizes summing to the rows; the tokens listed nearest each centre equal
/tokens and /positions at their rows and are ordered by distance.
"""
import json
import sys

import h5py
import numpy as np

JT = 1e-8   # the JSON keeps 9 significant digits; /pca/ in the store is full f64


def close(a, b, rtol, what, atol=0.0):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if not np.allclose(a, b, rtol=rtol, atol=atol):
        err = np.max(np.abs(a - b) / (np.abs(b) + atol + 1e-300))
        sys.exit("%s: C and NumPy differ (max rel %.3g > %g)" % (what, err, rtol))


def same(a, b, path="", rtol=1e-7):
    skip = {"timing_rank0", "wall_s", "ranks"}
    if isinstance(a, dict):
        for k in a:
            if k not in skip:
                same(a[k], b[k], path + "." + k, rtol)
    elif isinstance(a, list):
        if len(a) != len(b):
            sys.exit("%s: lengths %d and %d" % (path, len(a), len(b)))
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, "%s[%d]" % (path, i), rtol)
    elif isinstance(a, float) and isinstance(b, (int, float)):
        if abs(a - b) > rtol * max(1.0, abs(a)):
            sys.exit("%s: %r vs %r" % (path, a, b))
    elif a != b:
        sys.exit("%s: %r vs %r" % (path, a, b))


def main():
    if sys.argv[1] == "--same":
        same(json.load(open(sys.argv[2])), json.load(open(sys.argv[3])))
        print("same results")
        return
    f = h5py.File(sys.argv[1], "r")
    doc = json.load(open(sys.argv[2]))
    mask = f["mask"][:].astype(bool)
    tokens, positions = f["tokens"][:], f["positions"][:]
    assert doc["rows_unmasked"] == int(mask.sum()), "rows_unmasked"
    for L in doc["layers"]:
        hook = L["hook"]
        x = f["acts"][hook][:][mask].astype(np.float64)
        n, d = x.shape
        g = f["pca"][hook]
        assert g.attrs["complete"] == 1 and g.attrs["n_rows"] == n, hook + ": /pca attributes"
        mu = x.mean(axis=0)
        cov = np.cov(x, rowvar=False)
        w, v = np.linalg.eigh(cov)
        w, v = w[::-1], v[:, ::-1]
        # geometry.pca.gram = f32: eigenvalues err by ~eps32·λ_1 = 6e-8·λ_1 in absolute
        # terms, so the tolerances scale with λ_1 (×30 margin); a component moves by
        # ~eps32·λ_1 / gap, ≤ 6e-5 where the gap is ≥ 1e-3·λ_1. The mean stays f64-exact.
        f32 = doc["settings"].get("pca_gram") == "f32"
        t_lam, t_ratio, t_gap, t_cos, t_sum, t_edge = (
            (2e-6, 2e-6, 1e-3, 1e-4, 1e-5, 1e-5) if f32 else (1e-10, 1e-10, 1e-6, 1e-6, 1e-7, 1e-9))
        close(g["mean"][:], mu, 1e-9, hook + " mean", atol=1e-9 * np.abs(mu).max())
        close(g["eigenvalues"][:], w, 0 if f32 else 1e-9, hook + " eigenvalues", atol=t_lam * w[0])
        ratio = w / w.sum()
        close(g["explained_variance_ratio"][:], ratio, 0 if f32 else 1e-9, hook + " ratios", atol=t_ratio)
        comp = g["components"][:]
        k = comp.shape[0]
        # components where the eigenvalue is separated from its neighbours
        for i in range(k):
            gap = min(abs(w[i] - w[i - 1]) if i else np.inf, abs(w[i] - w[i + 1]) if i + 1 < d else np.inf)
            if gap < t_gap * w[0]:
                continue
            dot = abs(comp[i] @ v[:, i])
            if dot < 1 - t_cos:
                sys.exit("%s: component %d |cos| = %.9f with NumPy's" % (hook, i, dot))
            j = np.argmax(np.abs(comp[i]))
            assert comp[i][j] > 0, hook + ": sign convention"
        P = L["pca"]
        cum = np.cumsum(ratio)
        for pct in (90, 95, 99):
            want = int(np.argmax(cum >= pct / 100.0)) + 1
            if abs(cum[want - 1] - pct / 100.0) > t_edge:   # not on a knife edge
                assert P["intrinsic_dim_%dpct_var" % pct] == want, "%s: id %d%%" % (hook, pct)
        wp = np.clip(w, 0, None)
        close(P["participation_ratio"], wp.sum() ** 2 / (wp ** 2).sum(), t_sum, hook + " participation ratio")
        p = wp / wp.sum()
        p = p[p > 0]
        close(P["effective_rank"], np.exp(-(p * np.log(p)).sum()), t_sum, hook + " effective rank")
        if doc["rows_in_memory"] == doc["rows_unmasked"]:
            N = L["norms"]
            nr = np.linalg.norm(x, axis=1)
            close(N["mean"], nr.mean(), JT, hook + " norm mean")
            close(N["std"], nr.std(), JT, hook + " norm std")
            for q in (1, 5, 25, 50, 75, 95, 99):
                close(N["percentiles"]["p%d" % q], np.percentile(nr, q), JT, hook + " norm p%d" % q)
            typ = np.median(np.abs(x).mean(axis=0))
            close(N["typical_abs_coordinate"], typ, JT, hook + " typical |x|")
            mx = np.abs(x).max(axis=0)
            massive = [j for j in np.argsort(-mx, kind="stable") if mx[j] >= N["massive_ratio_threshold"] * typ]
            assert N["massive_dims_count"] == len(massive), hook + " massive count"
            assert [m["dim"] for m in N["massive_dims"]] == massive[: len(N["massive_dims"])], hook + " massive dims"
            u = x / nr[:, None]
            tot = 0.0
            for s in range(0, n, 2048):
                tot += (u[s:s + 2048] @ u.T).sum()
            close(N["mean_cosine"], (tot - n) / (n * (n - 1)), 1e-7, hook + " mean cosine", atol=1e-9)
            C = L["clusters"]
            assert sum(C["sizes"]) == doc["rows_in_memory"], hook + " cluster sizes"
        C = L["clusters"]
        for cl in C["nearest_to_centre"]:
            dist = [r["distance"] for r in cl["rows"]]
            assert dist == sorted(dist), hook + " nearest rows are not by distance"
            for r in cl["rows"]:
                assert mask[r["row"]], hook + ": a masked row listed"
                assert tokens[r["row"]] == r["token_id"] and positions[r["row"]] == r["position"], hook + " token"
        check_label(L, hook)
    print("%d capture points match NumPy" % len(doc["layers"]))


def check_label(L, hook):
    """geometry_type re-derived from the layer's own estimates by the rule of
    docs/geometry.md, independently of the C code: its inputs must be the JSON's
    numbers, and the dimension and shape classes must follow from them."""
    G = L["geometry_type"]
    m = (L["intrinsic_dimension"]["mle"] + L["intrinsic_dimension"]["twonn"]) / 2
    dim, shp = G["attributes"]["dimension"], G["attributes"]["shape"]
    assert G["inputs"]["pca_id_90"] == L["pca"]["intrinsic_dim_90pct_var"], hook + " label input pca_id_90"
    close(dim["nonlinear_dimension"], m, JT, hook + " nonlinear dimension")
    r, s = m / L["d"], L["pca"]["intrinsic_dim_90pct_var"] / m
    lo, hi = sorted([L["intrinsic_dimension"]["mle"], L["intrinsic_dimension"]["twonn"]])
    if hi / lo <= 2:
        want = ("low" if r <= 0.04 else "low or intermediate" if r < 0.0625 else "intermediate" if r <= 0.2
                else "intermediate or high" if r < 0.3125 else "high")
    else:
        want = "uncertain"
    assert dim["class"] == want, "%s dimension %s, the rule gives %s" % (hook, dim["class"], want)
    want = "flat" if s <= 2 else "curved" if s >= 4 else "uncertain"
    assert shp["class"] == want, "%s shape %s, the rule gives %s" % (hook, shp["class"], want)
    uncertain = dim["class"] not in ("low", "intermediate", "high") or shp["class"] not in ("flat", "curved")
    assert G["uncertain"] == uncertain and G["label"].startswith("uncertain: ") == uncertain, hook + " uncertain"


main()
