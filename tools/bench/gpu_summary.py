#!/usr/bin/env python3
"""gpu_summary.py — the markdown summary of tools/bench/gpu.sh (standard library only).

    gpu_summary.py --steps STEPS.jsonl --results RESULTS.jsonl --gpu NAME --dry 0|1
                   [--commit HASH] [--wall SECONDS] [--capture-label TEXT]

STEPS: one line per step ({"step","status","seconds","note"}; a step recorded twice
keeps its worst status). RESULTS: the benchmarks' JSON lines (bench_gpu's
"gpu_linear" lines, "capture" lines with impl capture_ours_gpu / capture_ours_cpu /
capture_hf_<device>, "sae" lines with impl sae_ours_gpu / sae_ours_cpu /
sae_saelens_<device>). Prints the table: check, result, ratio, goal, met?
"""
import argparse
import json

RANK = {"PASS": 0, "SKIP": 1, "TIMEOUT": 2, "FAIL": 3}


def load(path):
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
    return out


def met(value, goal, dry, ours_ok=True):
    if dry:
        return "(dry run)"
    if not ours_ok:
        return "**NO** (ours: no result)"
    if value is None:
        return "n/a (no baseline)"
    return "**yes**" if value >= goal else "**NO**"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", required=True)
    ap.add_argument("--results", required=True)
    ap.add_argument("--gpu", default="?")
    ap.add_argument("--dry", type=int, default=0)
    ap.add_argument("--commit", default="?")
    ap.add_argument("--wall", default="?")
    ap.add_argument("--capture-label", default="")
    a = ap.parse_args()
    dry = bool(a.dry)

    steps = {}
    for s in load(a.steps):
        old = steps.get(s["step"])
        if old is None or RANK.get(s["status"], 3) >= RANK.get(old["status"], 3):
            if old is not None:
                s["seconds"] = max(s["seconds"], old["seconds"])
            steps[s["step"]] = s
    res = load(a.results)
    failed = [s for s in steps.values() if s["status"] in ("FAIL", "TIMEOUT")]

    print(f"# GPU checks (issue 19){' — DRY RUN, no GPU' if dry else ''}")
    print()
    print(f"GPU: {a.gpu}; commit {a.commit}; wall {a.wall} s; `tools/bench/gpu.sh`.")
    print()
    if failed:
        print(f"**FAIL: {len(failed)} step(s) failed or timed out: "
              f"{', '.join(s['step'] for s in failed)}** (logs in gpu_logs.tar.gz)")
    else:
        print("All steps passed or were skipped (see the table)." if not dry else
              "Dry run: every step ran; GPU parts report skipped.")
    print()
    print("| check | result | ratio | goal | met? |")
    print("|---|---|---:|---|---|")
    for name in ("deps", "configure", "build", "test_cuda", "test_cuda_parity", "test_capture_device", "test_sae"):
        s = steps.get(name)
        if s:
            st = s["status"] if s["status"] == "PASS" else f"**{s['status']}**"
            note = s["note"].replace("|", "/")[:120]
            ok = "yes" if s["status"] == "PASS" else "(dry run)" if dry and s["status"] == "SKIP" else "**NO**"
            print(f"| {name} | {st} ({s['seconds']} s): {note} | | pass | {ok} |")

    # a. linear vs cuBLAS and the peak
    lin = [r for r in res if r.get("bench") == "gpu_linear"]
    skip = [r for r in lin if "skipped" in r]
    dev = next((r for r in lin if r.get("kind") == "device"), None)
    shp = [r for r in lin if r.get("kind") == "shape"]
    if shp:
        fl = sum(2.0 * r["m"] * r["n"] * r["k"] for r in shp)
        tb = sum(r["linear_s"] for r in shp)
        tc = sum(r["cublas_s"] for r in shp)
        peak = shp[0]["peak_tflops"]
        tf_b, tf_c = fl / tb / 1e12, fl / tc / 1e12
        frac = tf_b / peak if peak > 0 else None
        print(f"| linear bf16, prefill m {'/'.join(sorted({str(r['m']) for r in shp}, key=int))} × 1B shapes "
              f"(all shapes' FLOPs / time) | ours {tf_b:.0f} TFLOP/s, cuBLAS {tf_c:.0f} TFLOP/s; "
              f"peak assumed {peak:.0f} ({dev['name'] if dev else '?'}) | "
              f"{'%.2f of peak' % frac if frac is not None else 'no peak known'}; {tf_b / tf_c:.2f} of cuBLAS "
              f"| ≥ 0.50 of peak | {met(frac, 0.5, dry)} |")
    elif skip:
        print(f"| linear bf16 vs cuBLAS vs peak | skipped: {skip[0]['skipped'][:100]} | | ≥ 0.50 of peak | "
              f"{'(dry run)' if dry else '**NO**'} |")
    else:
        print(f"| linear bf16 vs cuBLAS vs peak | **no result** ({steps.get('bench_linear', {}).get('note', '')}) "
              f"| | ≥ 0.50 of peak | **NO** |")

    # b. capture
    cap = {r["impl"]: r for r in res if r.get("bench") == "capture"}
    ours = cap.get("capture_ours_gpu")
    hf = next((v for k, v in cap.items() if k.startswith("capture_hf")), None)
    cpu = cap.get("capture_ours_cpu")

    def rps(r):
        return r.get("rows_per_s") if r and "skipped" not in r else None

    parts = []
    for label, r in (("ours GPU", ours), ("ours CPU", cpu), ("HF " + (hf or {}).get("impl", "")[11:], hf)):
        if r is None:
            parts.append(f"{label}: no result")
        elif "skipped" in r:
            parts.append(f"{label}: skipped ({r['skipped'][:60]})")
        else:
            parts.append(f"{label}: {r['rows_per_s']:.0f} rows/s ({r['rows']} rows, {r['wall_s']:.1f} s)")
    if hf is None and "capture_hf" in steps:
        parts.append(f"HF: {steps['capture_hf']['note'][:80]}")
    num = rps(ours) if not dry else rps(cpu)
    ratio = num / rps(hf) if num and rps(hf) else None
    rl = "ours GPU / HF GPU" if not dry else "ours CPU / HF CPU (dry)"
    print(f"| capture (phase 2), {a.capture_label} | {'; '.join(parts)} | "
          f"{'%.2f (%s)' % (ratio, rl) if ratio else 'n/a'}"
          f"{'; GPU/CPU %.2f' % (rps(ours) / rps(cpu)) if rps(ours) and rps(cpu) else ''} | ≥ 3× HF | "
          f"{met(ratio, 3.0, dry, rps(ours) is not None)} |")

    # c. SAE
    sae = {r.get("impl"): r for r in res if r.get("bench") == "sae"}
    so = sae.get("sae_ours_gpu")
    sc = sae.get("sae_ours_cpu")
    sl = next((v for k, v in sae.items() if k and k.startswith("sae_saelens")), None)
    parts = []
    for label, r in (("ours GPU", so), ("ours CPU", sc), ("SAELens", sl)):
        if r is None:
            continue
        if "skipped" in r:
            parts.append(f"{label}: skipped ({r['skipped'][:70]})")
        else:
            parts.append(f"{label}: {r['rows_per_s']:.0f} rows/s (step {1000 * r['step_s_median']:.1f} ms)")
    num = rps(so) if not dry else rps(sc)
    ratio = num / rps(sl) if num and rps(sl) else None
    shape = next((f"d {r['d']}, F {r['F']}, k {r['k']}, batch {r['batch']}" for r in (so, sc, sl)
                  if r and "d" in r), "")
    print(f"| SAE TopK training {shape} | {'; '.join(parts) or 'no result'} | "
          f"{'%.2f' % ratio if ratio else 'n/a'} | ≥ 2× SAELens | {met(ratio, 2.0, dry, rps(so) is not None)} |")

    print()
    print("Steps:")
    print()
    for s in steps.values():
        print(f"- {s['step']}: {s['status']} ({s['seconds']} s) {s['note'][:160]}")
    if shp:
        print()
        print("Linear, per shape (W [n, k] bf16, X [m, k] f32; ours = backend linear incl. X→bf16):")
        print()
        print("| m | n×k | ours TFLOP/s | cuBLAS TFLOP/s | ours/cuBLAS | ours/peak | max rel diff |")
        print("|---:|---|---:|---:|---:|---:|---:|")
        for r in shp:
            print(f"| {r['m']} | {r['n']}×{r['k']} | {r['linear_tflops']:.0f} | {r['cublas_tflops']:.0f} | "
                  f"{r['linear_vs_cublas']:.2f} | {r['linear_frac_peak']:.2f} | {r['max_diff_rel']:.1e} |")


if __name__ == "__main__":
    main()
