#!/usr/bin/env python3
"""The TransformerLens side of tools/bench/patch.sh: one activation-patching sweep with
TransformerLens 3.9's own function, one full forward per cell.

    patch_tl.py --model DIR --clean P --corrupt P2 --target T --distractor D
                --sweep resid_pre|z --threads N [--ours patch_<name>.json]

Loads the model with TransformerBridge.boot_transformers(DIR) (float32, CPU), makes the
clean cache and LD_clean/LD_corr (untimed), then times patching.get_act_patch_resid_pre
(--sweep resid_pre: [layer, pos]) or patching.get_act_patch_attn_head_out_all_pos (z:
[layer, head]) alone. Prints one JSON line: cells, wall and CPU (process_time: every
thread of the process) seconds of the sweep, seconds of the boot, and with --ours the largest |difference| from TranspOLMo's values of the same sweep
(proof that both computed the same thing).
"""
import argparse
import json
import os
import time

os.environ["CUDA_VISIBLE_DEVICES"] = ""
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformer_lens import patching  # noqa: E402
from transformer_lens.model_bridge import TransformerBridge  # noqa: E402

SWEEPS = {"resid_pre": patching.get_act_patch_resid_pre, "z": patching.get_act_patch_attn_head_out_all_pos}


def main():
    ap = argparse.ArgumentParser()
    for a in ("--model", "--clean", "--corrupt", "--target", "--distractor"):
        ap.add_argument(a, required=True)
    ap.add_argument("--sweep", choices=sorted(SWEEPS), required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ours")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    bridge = TransformerBridge.boot_transformers(args.model, device="cpu", dtype=torch.float32)
    boot = time.perf_counter() - t0
    clean = bridge.to_tokens(args.clean, prepend_bos=False)
    corrupt = bridge.to_tokens(args.corrupt, prepend_bos=False)
    assert clean.shape == corrupt.shape, (clean.shape, corrupt.shape)
    t = bridge.to_tokens(args.target, prepend_bos=False)[0, 0].item()
    d = bridge.to_tokens(args.distractor, prepend_bos=False)[0, 0].item()

    def ld(logits):
        return logits[0, -1, t] - logits[0, -1, d]

    with torch.no_grad():
        clean_logits, cache = bridge.run_with_cache(clean)
        ld_clean, ld_corr = ld(clean_logits).item(), ld(bridge(corrupt)).item()

        def metric(logits):
            return (ld(logits) - ld_corr) / (ld_clean - ld_corr)

        t1, c1 = time.perf_counter(), time.process_time()
        res = SWEEPS[args.sweep](bridge, corrupt, cache, metric)
        secs, cpu = time.perf_counter() - t1, time.process_time() - c1
    out = {"tool": "TransformerLens", "sweep": args.sweep, "cells": int(res.numel()), "tokens": int(clean.shape[1]),
           "threads": args.threads, "seconds": round(secs, 3), "cpu_seconds": round(cpu, 3), "boot_seconds": round(boot, 3)}
    if args.ours:
        ours = np.array(json.load(open(args.ours))["sweeps"][args.sweep], dtype=float)
        out["max_abs_diff_vs_ours"] = float(np.abs(ours - res.numpy()).max())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
