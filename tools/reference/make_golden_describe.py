#!/usr/bin/env python3
"""Golden data for src/analysis/verify/describe.{h,c}: the detection scores
(scikit-learn's accuracy_score, precision_score, recall_score, f1_score with
zero_division=0) and the simulation score (NumPy's corrcoef) of seeded random cases,
written to tests/data/golden/describe/golden.json and read by tests/unit/test_describe.c.

    tools/reference/make_golden_describe.py            # scikit-learn (the reference venv)
    tools/reference/make_golden_describe.py --check    # compare the file with a recomputation

Without scikit-learn the binary scores fall back to their definitions in NumPy and the
file says so ("binary_reference").
"""
import json
import os
import sys

import numpy as np

try:
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score
    import sklearn
    REF = f"scikit-learn {sklearn.__version__}"
except ImportError:  # definitions, as scikit-learn computes them with zero_division=0
    REF = "numpy definitions (scikit-learn not installed)"

    def _counts(t, p):
        t, p = np.asarray(t, bool), np.asarray(p, bool)
        return (t & p).sum(), (~t & p).sum(), (t & ~p).sum()

    def accuracy_score(t, p):
        return float(np.mean(np.asarray(t) == np.asarray(p)))

    def precision_score(t, p, zero_division=0):
        tp, fp, _ = _counts(t, p)
        return tp / (tp + fp) if tp + fp else zero_division

    def recall_score(t, p, zero_division=0):
        tp, _, fn = _counts(t, p)
        return tp / (tp + fn) if tp + fn else zero_division

    def f1_score(t, p, zero_division=0):
        pr, rc = precision_score(t, p), recall_score(t, p)
        return 2 * pr * rc / (pr + rc) if pr + rc else zero_division

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "data", "golden", "describe", "golden.json")


def cases():
    rng = np.random.default_rng(20240607)
    binary, corr = [], []
    for n, p_true, p_pred in [(1, .5, .5), (7, .3, .6), (40, .5, .5), (200, .1, .2), (64, .9, .9), (13, 0, .4),
                              (13, .4, 0), (25, 0, 0)]:
        t = (rng.random(n) < p_true).astype(int)
        p = (rng.random(n) < p_pred).astype(int)
        b = dict(truth=t.tolist(), pred=p.tolist())
        b["accuracy"] = float(accuracy_score(t, p))
        b["precision"] = float(precision_score(t, p, zero_division=0))
        b["recall"] = float(recall_score(t, p, zero_division=0))
        b["f1"] = float(f1_score(t, p, zero_division=0))
        binary.append(b)
    for n, kind in [(2, "normal"), (10, "normal"), (300, "sparse"), (57, "related"), (20, "related")]:
        x = rng.standard_normal(n)
        if kind == "sparse":
            x = np.where(rng.random(n) < .2, np.abs(x) * 3, 0.0)
        y = x * .7 + rng.standard_normal(n) * .5 if kind == "related" else np.abs(rng.standard_normal(n))
        corr.append(dict(x=x.tolist(), y=y.tolist(), r=float(np.corrcoef(x, y)[0, 1])))
    return {"binary_reference": REF, "correlation_reference": f"numpy {np.__version__} corrcoef", "binary": binary,
            "correlation": corr}


def main():
    doc = cases()
    if "--check" in sys.argv:
        old = json.load(open(OUT))
        for a, b in zip(old["binary"] + old["correlation"], doc["binary"] + doc["correlation"]):
            for k in ("accuracy", "precision", "recall", "f1", "r"):
                if k in a:
                    assert abs(a[k] - b[k]) < 1e-12, (k, a[k], b[k])
        print("ok:", OUT, "matches", REF)
        return
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print("wrote", OUT, "with", REF)


if __name__ == "__main__":
    main()
