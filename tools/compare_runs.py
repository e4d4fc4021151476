#!/usr/bin/env python3
"""compare_runs.py — are two run directories the same results?

    tools/compare_runs.py RUN_A RUN_B

Compares what the phases wrote, so that a change that claims "no change of
behaviour" (a refactor, a new backend) can show it on a whole run:

  * activations.h5: every dataset equal bit for bit (tokens, index, /acts/*, /pca/*)
    and every attribute equal, except transpolmo_version;
  * results/**.json: equal after dropping what measures the run rather than the
    model: timings and rates (wall_s, *_s, rows_per_s, ...), the run directory's own
    path (written as <run>), and the per-rank split;
  * every other file under results/ (SAE weights, ...): byte for byte.

config.yaml, versions.json and .phases/ describe the run, not its results, and are
not compared, nor the resume hash in results/sae_checkpoint.json. Prints one line per difference and exits 1 if there is any.
Needs h5py and NumPy (Debian: python3-h5py python3-numpy).
"""
import json
import os
import re
import sys

import h5py
import numpy as np

# JSON keys whose values are measurements of the run itself, not results.
VOLATILE = re.compile(r"^(wall_s|seconds|rows_per_s|rows_this_run|write_mib_per_s|io_share|wait_share|"
                      r"timing_rank0|per_rank|.*_s)$")
IGNORED_ATTRS = {"transpolmo_version"}
# Per file, keys that are bookkeeping of the run (the resume hash of a checkpoint).
BOOKKEEPING = {"results/sae_checkpoint.json": {"key"}}


def normalise(value, run_dir):
    if isinstance(value, dict):
        return {k: normalise(v, run_dir) for k, v in value.items() if not VOLATILE.match(k)}
    if isinstance(value, list):
        return [normalise(v, run_dir) for v in value]
    if isinstance(value, str):
        return value.replace(os.path.abspath(run_dir), "<run>").replace(run_dir.rstrip("/"), "<run>")
    return value


def first_difference(a, b, path=""):
    if type(a) is not type(b):
        return f"{path}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, dict):
        for k in list(a) + [k for k in b if k not in a]:
            if k not in a or k not in b:
                return f"{path}/{k}: only in {'B' if k not in a else 'A'}"
            d = first_difference(a[k], b[k], f"{path}/{k}")
            if d:
                return d
        if list(a) != list(b):
            return f"{path}: keys in another order"
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} vs {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b)):
            d = first_difference(x, y, f"{path}[{i}]")
            if d:
                return d
        return None
    if a != b and not (isinstance(a, float) and a != a and b != b):
        return f"{path}: {a!r} vs {b!r}"
    return None


def h5_items(f):
    out = {}
    f.visititems(lambda name, obj: out.__setitem__(name, obj))
    return out


def compare_store(pa, pb, report):
    with h5py.File(pa, "r") as fa, h5py.File(pb, "r") as fb:
        ia, ib = h5_items(fa), h5_items(fb)
        for name in sorted(set(ia) | set(ib)):
            if name not in ia or name not in ib:
                report(f"activations.h5 /{name}: only in {'B' if name not in ia else 'A'}")
                continue
            oa, ob = ia[name], ib[name]
            if isinstance(oa, h5py.Dataset):
                x, y = oa[()], ob[()]
                if x.dtype != y.dtype or x.shape != y.shape:
                    report(f"activations.h5 /{name}: {x.dtype}{x.shape} vs {y.dtype}{y.shape}")
                elif x.tobytes() != y.tobytes():
                    n = int(np.sum(x.view(np.uint8) != y.view(np.uint8))) if x.size else 0
                    report(f"activations.h5 /{name}: contents differ ({n} bytes)")
            keys = set(oa.attrs) | set(ob.attrs)
            for k in sorted(keys - IGNORED_ATTRS):
                va, vb = oa.attrs.get(k), ob.attrs.get(k)
                if not np.array_equal(np.asarray(va), np.asarray(vb)):
                    report(f"activations.h5 /{name} attribute {k}: {va!r} vs {vb!r}")
        for k in sorted((set(fa.attrs) | set(fb.attrs)) - IGNORED_ATTRS):
            va, vb = fa.attrs.get(k), fb.attrs.get(k)
            if not np.array_equal(np.asarray(va), np.asarray(vb)):
                report(f"activations.h5 attribute {k}: {va!r} vs {vb!r}")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    a, b = sys.argv[1], sys.argv[2]
    differences = []
    report = differences.append
    compared = 0
    if os.path.exists(os.path.join(a, "activations.h5")) or os.path.exists(os.path.join(b, "activations.h5")):
        compare_store(os.path.join(a, "activations.h5"), os.path.join(b, "activations.h5"), report)
        compared += 1
    files = set()
    for root in (a, b):
        base = os.path.join(root, "results")
        for d, _, names in os.walk(base):
            files.update(os.path.relpath(os.path.join(d, n), root) for n in names)
    for rel in sorted(files):
        fa, fb = os.path.join(a, rel), os.path.join(b, rel)
        if not os.path.exists(fa) or not os.path.exists(fb):
            report(f"{rel}: only in {'B' if not os.path.exists(fa) else 'A'}")
            continue
        compared += 1
        if rel.endswith(".json"):
            ja = normalise(json.load(open(fa)), a)
            jb = normalise(json.load(open(fb)), b)
            for k in BOOKKEEPING.get(rel, ()):
                ja.pop(k, None), jb.pop(k, None)
            d = first_difference(ja, jb)
            if d:
                report(f"{rel}: {d}")
        elif open(fa, "rb").read() != open(fb, "rb").read():
            report(f"{rel}: bytes differ")
    for d in differences:
        print(d)
    print(f"compare_runs: {compared} files compared, {len(differences)} difference(s)")
    sys.exit(1 if differences else 0)


if __name__ == "__main__":
    main()
