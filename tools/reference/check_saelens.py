#!/usr/bin/env python3
"""check_saelens.py — our SAELens-layout export (src/analysis/sae/sae_export.c), loaded by
SAELens itself (PyPI sae-lens, pinned in requirements.txt), gives our reconstruction.
A script a developer runs, not a CI test (CI has no sae-lens).

    /opt/transpolmo-ref/bin/python tools/reference/check_saelens.py [--build build]
        [--archs relu,topk,batchtopk] [--rows 8192] [--dim 256] [--d-sae 2048] [--k 32]
        [--steps 20] [--check-rows 256] [--work /tmp/tp-bench/sae-check] [--tol 1e-5]

For each architecture: tools/bench/make_sae_rows.py writes ROWS × DIM f32 rows (once);
`<build>/bench_sae --export DIR` trains one of our SAEs on them for --steps steps
(sae_train_step, batch 1024, one process), exports it with sae_export_saelens() and
writes, for the first --check-rows rows: rows.npy, recon_ours.npy (sae_reconstruct),
codes_ours.npy (sae_encode) and recon_reader.npy (our C reader saelens_reconstruct).
Then `sae_lens.SAE.load_from_disk(DIR)` (the inference class of cfg.json's
architecture: StandardSAE for relu, TopKSAE for topk, JumpReLUSAE for batchtopk, which
exports as jumprelu with every threshold = θ) runs `encode` and `decode` on rows.npy,
and we compare:
    recon   ‖x̂_saelens − x̂_ours‖_F / ‖x̂_ours‖_F  ≤ --tol (1e-5)
    codes   ‖f_saelens − f_ours‖_F / ‖f_ours‖_F    ≤ --tol, and the same active set
            (rows whose set of non-zero latents differs are counted and printed)
    reader  the same for our C reader's reconstruction.
Prints one line per architecture and exits 1 if any comparison fails.
"""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def rel(a, b):
    import numpy as np
    den = float(np.linalg.norm(b.astype(np.float64)))
    return float(np.linalg.norm(a.astype(np.float64) - b.astype(np.float64))) / (den if den > 0 else 1.0)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.environ.get("TP_BUILD_DIR", str(ROOT / "build")))
    ap.add_argument("--archs", default="relu,topk,batchtopk")
    ap.add_argument("--rows", type=int, default=8192)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--d-sae", type=int, default=2048)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--check-rows", type=int, default=256)
    ap.add_argument("--work", default=os.path.join(os.environ.get("TP_BENCH_DIR", "/tmp/tp-bench"), "sae-check"))
    ap.add_argument("--tol", type=float, default=1e-5)
    a = ap.parse_args()

    import numpy as np
    import torch
    import sae_lens
    from sae_lens import SAE

    torch.set_num_threads(2)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = work / f"rows-{a.rows}x{a.dim}.npy"
    subprocess.run([sys.executable, str(ROOT / "tools/bench/make_sae_rows.py"), "--rows", str(a.rows), "--dim",
                    str(a.dim), "--out", str(rows)], check=True, stdout=subprocess.DEVNULL)
    bench = Path(a.build) / "bench_sae"
    if not bench.exists():
        print(f"check_saelens: {bench} is missing (cmake --build {a.build} --target bench_sae)", file=sys.stderr)
        return 2
    print(f"sae_lens {sae_lens.__version__}, torch {torch.__version__}; rows {a.rows} x {a.dim}, d_sae {a.d_sae}, "
          f"k {a.k}, {a.steps} training steps, {a.check_rows} rows compared, tolerance {a.tol:g}")
    ok = True
    env = dict(os.environ, OPENBLAS_NUM_THREADS=os.environ.get("OPENBLAS_NUM_THREADS", "2"))
    for arch in a.archs.split(","):
        out = work / f"export-{arch}"
        r = subprocess.run([str(bench), "--npy", str(rows), "--arch", arch, "--d-sae", str(a.d_sae), "--k", str(a.k),
                            "--batch", str(a.batch), "--steps", str(a.steps), "--check-rows", str(a.check_rows),
                            "--export", str(out)], env=env, capture_output=True, text=True)
        if r.returncode != 0:
            print(f"{arch}: bench_sae --export failed:\n{r.stderr}", file=sys.stderr)
            return 1
        info = json.loads([l for l in r.stdout.splitlines() if l.startswith("{")][-1])
        x = np.load(out / "rows.npy")
        recon_ours, codes_ours = np.load(out / "recon_ours.npy"), np.load(out / "codes_ours.npy")
        recon_reader = np.load(out / "recon_reader.npy")
        sae = SAE.load_from_disk(str(out), device="cpu")
        with torch.no_grad():
            xt = torch.from_numpy(x)
            codes = sae.encode(xt)
            recon = sae.decode(codes)
            fwd = sae(xt)
        codes, recon, fwd = codes.numpy(), recon.numpy(), fwd.numpy()
        e_recon, e_codes, e_fwd = rel(recon, recon_ours), rel(codes, codes_ours), rel(fwd, recon_ours)
        e_reader = rel(recon_reader, recon_ours)
        set_diff = int(((codes != 0) != (codes_ours != 0)).any(axis=1).sum())
        l0 = float((codes != 0).sum(1).mean())
        good = max(e_recon, e_codes, e_fwd, e_reader) <= a.tol and set_diff == 0
        ok &= good
        cfg = json.loads((out / "cfg.json").read_text())
        extra = f", threshold {info['threshold']:.6g}" if arch == "batchtopk" else ""
        print(f"{arch:<9} -> {type(sae).__name__:<12} (cfg architecture {cfg['architecture']}{extra}): "
              f"recon rel err {e_recon:.2e}, forward() {e_fwd:.2e}, codes {e_codes:.2e}, "
              f"active-set mismatches {set_diff}/{len(x)} rows, L0 {l0:.1f}; our C reader {e_reader:.2e}; "
              f"trained {info['steps']} steps (FVU {info['fvu_last']:.3f}) -> {'ok' if good else 'FAIL'}")
    print("all ok" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
