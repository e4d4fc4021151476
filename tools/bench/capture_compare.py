#!/usr/bin/env python3
"""Compare two activation stores row by row (tools/bench/capture.sh).

    python tools/bench/capture_compare.py REFERENCE.h5 OTHER.h5 [--tol 1e-4]

REFERENCE is a `transpolmo capture` store; OTHER is another one or the file
tools/bench/capture_hf.py writes. /tokens must be identical, and every
`acts/<name>` dataset of OTHER must exist in REFERENCE with the same shape and
match it: the relative Frobenius error ||A - R|| / ||R|| per dataset must be
<= tol. Also printed: the worst row's relative error and the largest absolute
difference. Reads one dataset at a time. Exit status 0 when all match.
"""

import argparse
import sys

import h5py
import numpy as np


def compare(ref_path, other_path):
    """(tokens_equal, worst_rel_fro, worst_rel_row, max_abs, datasets compared)."""
    with h5py.File(ref_path, "r") as r, h5py.File(other_path, "r") as o:
        tok_eq = bool(np.array_equal(r["tokens"][:], o["tokens"][:]))
        worst_fro = worst_row = max_abs = 0.0
        names = list(o["acts"].keys())
        for name in names:
            if name not in r["acts"]:
                raise SystemExit(f"acts/{name} is in {other_path} but not in {ref_path}")
            a = o["acts/" + name][:].astype(np.float64)
            b = r["acts/" + name][:].astype(np.float64)
            if a.shape != b.shape:
                raise SystemExit(f"acts/{name}: shape {a.shape} in {other_path}, {b.shape} in {ref_path}")
            diff = a - b
            fro = float(np.linalg.norm(diff) / max(np.linalg.norm(b), 1e-30))
            row = float(np.max(np.linalg.norm(diff, axis=1) / np.maximum(np.linalg.norm(b, axis=1), 1e-30)))
            worst_fro, worst_row = max(worst_fro, fro), max(worst_row, row)
            max_abs = max(max_abs, float(np.max(np.abs(diff))))
    return tok_eq, worst_fro, worst_row, max_abs, len(names)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reference")
    ap.add_argument("other")
    ap.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args()
    tok_eq, fro, row, mx, n = compare(args.reference, args.other)
    ok = tok_eq and fro <= args.tol
    print(f"datasets={n} tokens_equal={int(tok_eq)} rel_fro={fro:.3g} rel_row_max={row:.3g} "
          f"max_abs={mx:.3g} ok={int(ok)}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
