#!/usr/bin/env python3
"""same_results.py RUN_A RUN_B — the CLI tests' check that two runs of the same
configuration ended with the same results: every JSON under results/ and docs/ of
RUN_A exists in RUN_B and is equal after dropping what measures the run rather than
the model (timings, rates, the per-rank split) and writing each run's own path as
<run>; at least 10 files. Exits non-zero (an assertion naming the file) otherwise.
"""
import json, os, re, sys
a, b = sys.argv[1], sys.argv[2]
VOLATILE = re.compile(r"(_s|seconds|_per_s|_share|wall.*|timing.*|per_rank|bytes_written|rows_this_run|time|date|_at)$")
def norm(x, root):
    if isinstance(x, dict):
        return {k: norm(v, root) for k, v in x.items() if not VOLATILE.search(k)}
    if isinstance(x, list):
        return [norm(v, root) for v in x]
    if isinstance(x, str):
        return x.replace(root, "<run>")
    return x
n = 0
for sub in ("results", "docs"):
    for root, _, files in os.walk(os.path.join(a, sub)):
        for f in files:
            if not f.endswith(".json"):
                continue
            pa = os.path.join(root, f)
            pb = os.path.join(b, os.path.relpath(pa, a))
            assert os.path.exists(pb), pb
            x, y = norm(json.load(open(pa)), a), norm(json.load(open(pb)), b)
            if f == "model_documentation.json":
                # provenance hashes the input files as they are: they record timings (compared
                # above, normalized) and config.yaml names the run folder
                for d in (x, y):
                    for item in d["provenance"]["inputs"] + [d["provenance"]["config"]]:
                        item.pop("fnv1a64", None), item.pop("bytes", None)
            assert x == y, pa
            n += 1
assert n >= 10, n
