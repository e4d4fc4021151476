#!/usr/bin/env python3
"""C forward vs PyTorch, pass by pass, for a machine shared with other work.

    /opt/transpolmo-ref/bin/python tools/bench/forward_paired.py --bench build/bench_forward \
        --torch-model DIR_F32 --c DIR_F32:per_matrix --c DIR_BF16:per_matrix \
        --seq 512 --threads 2 --reps 9

Loads the PyTorch model (forward_hf.setup: transformers f32, sdpa, one resid_post
capture hook) and starts one `bench_forward --serve` per --c (same capture, same
thread count). Each round runs one PyTorch pass, one pass of each C model and one
GEMM-only pass (the sgemm ceiling, in the first C process), in an order that rotates
from round to round, one at a time. Since the passes of a round run within seconds of
each other, a slow spell of the machine (other people's jobs) affects the whole round
rather than one side, and the per-round ratios are steadier than ratios of separate
runs. Prints medians of the times and of the per-round ratios as `key=value` lines.
"""

import os

os.environ["CUDA_VISIBLE_DEVICES"] = ""

import argparse  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from forward_hf import forward_flops, setup  # noqa: E402


class CServer:
    def __init__(self, bench, model, conversion, seq, threads):
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads))
        self.name = f"{os.path.basename(model.rstrip('/'))}:{conversion}"
        self.p = subprocess.Popen(
            [bench, "--model", model, "--conversion", conversion, "--seq", str(seq),
             "--threads", str(threads), "--serve"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.info = {}
        while True:
            line = self.p.stdout.readline()
            if not line:
                sys.exit(f"forward_paired: {self.name}: bench_forward exited during setup")
            line = line.strip()
            if line == "ready":
                break
            for kv in line.split():
                if "=" in kv:
                    k, v = kv.split("=", 1)
                    self.info[k] = v

    def ask(self, cmd, key):
        self.p.stdin.write(cmd + "\n")
        self.p.stdin.flush()
        while True:
            line = self.p.stdout.readline()
            if not line:
                sys.exit(f"forward_paired: {self.name}: bench_forward exited")
            k, _, v = line.strip().partition("=")
            if k == key:
                return float(v)
            self.info[k] = v

    def close(self):
        self.p.stdin.write("quit\n")
        self.p.stdin.flush()
        self.p.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bench", required=True)
    ap.add_argument("--torch-model", required=True)
    ap.add_argument("--c", action="append", required=True, metavar="DIR:CONVERSION")
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=9)
    args = ap.parse_args()

    model, _ids, _cap, L, run_torch = setup(args.torch_model, args.seq, args.threads)
    fl = forward_flops(model.config, 1, args.seq)
    servers = []
    for spec in args.c:
        d, _, conv = spec.rpartition(":")
        servers.append(CServer(args.bench, d, conv, args.seq, args.threads))
    run_torch()  # warm-up (the C servers warmed up before "ready")
    servers[0].ask("ceil", "ceiling_s")  # allocates and warms the ceiling buffers
    ceil_fl = float(servers[0].info["ceiling_gflop"]) * 1e9

    def timed_torch():
        t0 = time.perf_counter()
        run_torch()
        return time.perf_counter() - t0

    jobs = [("torch", timed_torch)]
    for i, s in enumerate(servers):
        jobs.append((f"c{i}", lambda s=s: s.ask("run", "forward_s")))
    jobs.append(("ceiling", lambda: servers[0].ask("ceil", "ceiling_s")))

    t = {name: [] for name, _ in jobs}
    for rep in range(args.reps):
        k = rep % len(jobs)
        for name, fn in jobs[k:] + jobs[:k]:
            t[name].append(fn())

    med = {k: statistics.median(v) for k, v in t.items()}
    print(f"layers={model.config.num_hidden_layers} seq={args.seq} threads={args.threads} "
          f"reps={args.reps} capture_layer={L} gflop={fl / 1e9:.2f}")
    print(f"torch: median_s={med['torch']:.4f} tokens_per_s={args.seq / med['torch']:.1f} "
          f"gflops={fl / med['torch'] / 1e9:.1f}")
    for i, s in enumerate(servers):
        n = f"c{i}"
        vs_torch = statistics.median(a / b for a, b in zip(t["torch"], t[n]))
        vs_ceil = statistics.median((fl / a) / (ceil_fl / b) for a, b in zip(t[n], t["ceiling"]))
        print(f"{n}={s.name}: median_s={med[n]:.4f} tokens_per_s={args.seq / med[n]:.1f} "
              f"gflops={fl / med[n] / 1e9:.1f} vs_torch={vs_torch:.3f} vs_ceiling={vs_ceil:.3f} "
              f"peak_rss_mb={s.info.get('peak_rss_mb', '?')}")
    print(f"ceiling: median_s={med['ceiling']:.4f} gflops={ceil_fl / med['ceiling'] / 1e9:.1f}")
    spread = {k: (min(v), max(v)) for k, v in t.items()}
    print("spread_s " + " ".join(f"{k}={a:.3f}..{b:.3f}" for k, (a, b) in spread.items()))
    for s in servers:
        s.close()


if __name__ == "__main__":
    main()
