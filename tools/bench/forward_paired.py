#!/usr/bin/env python3
"""C forward vs PyTorch, pass by pass, for a machine shared with other work.

    /opt/transpolmo-ref/bin/python tools/bench/forward_paired.py --bench build/bench_forward \
        --torch-model DIR_F32 --c DIR_F32:per_matrix --c DIR_BF16:per_matrix \
        [--c DIR_F32:per_matrix:openblas] --seq 512 --threads 2 --reps 9

A --c spec is DIR:CONVERSION[:GEMM], GEMM being bench_forward's --gemm (auto, the
default: backend/linear's kernel; openblas: OpenBLAS sgemm, the earlier path).

Loads the PyTorch model (forward_hf.setup: transformers f32, sdpa, one resid_post
capture hook) and starts one `bench_forward --serve` per --c (same capture, same
thread count). Each round runs one PyTorch pass, one pass of each C model and one
GEMM-only pass (the sgemm ceiling, in the first C process), in an order that rotates
from round to round, one at a time. Since the passes of a round run within seconds of
each other, a slow spell of the machine (other people's jobs) affects the whole round
rather than one side, and the per-round ratios are steadier than ratios of separate
runs. Contention is not neutral, though: PyTorch's OpenMP threads lose more than
OpenBLAS's when other processes take CPU, which flatters C. So each pass also records
the share of the CPUs that other processes used during it (/proc/stat busy time minus
the pass's own process CPU time, over ncpu x wall); before each round the driver
waits (up to --quiet-wait s) for the machine to go quiet, and the results are given
both over all rounds and over the quiet rounds only (every pass < --quiet share).
Prints medians of the times and of the per-round ratios as `key=value` lines.
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


HZ = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count()


def busy_s():
    """CPU seconds spent busy, all CPUs, all processes (user nice system irq softirq steal)."""
    with open("/proc/stat") as fh:
        f = [int(x) for x in fh.readline().split()[1:9]]
    return (f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) / HZ


def proc_cpu_s(pid):
    with open(f"/proc/{pid}/stat") as fh:
        f = fh.read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / HZ   # utime, stime (fields 14, 15)


def self_cpu_s():
    t = os.times()
    return t.user + t.system


def wait_quiet(limit_s, share):
    t0 = time.time()
    while True:
        b0 = busy_s()
        time.sleep(2)
        if (busy_s() - b0) / (2 * NCPU) < share or time.time() - t0 > limit_s:
            return


class CServer:
    def __init__(self, bench, model, conversion, gemm, seq, threads):
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads))
        self.name = f"{os.path.basename(model.rstrip('/'))}:{conversion}:{gemm}"
        self.p = subprocess.Popen(
            [bench, "--model", model, "--conversion", conversion, "--gemm", gemm, "--seq", str(seq),
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
    ap.add_argument("--c", action="append", required=True, metavar="DIR:CONVERSION[:GEMM]")
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--quiet", type=float, default=0.10, help="share of CPUs others may use in a quiet pass")
    ap.add_argument("--quiet-wait", type=float, default=120, help="s to wait for quiet before a round")
    args = ap.parse_args()

    model, _ids, _cap, L, run_torch = setup(args.torch_model, args.seq, args.threads)
    fl = forward_flops(model.config, 1, args.seq)
    servers = []
    for spec in args.c:
        d, _, conv = spec.rpartition(":")
        gemm = "auto"
        if conv in ("auto", "openblas"):
            gemm = conv
            d, _, conv = d.rpartition(":")
        servers.append(CServer(args.bench, d, conv, gemm, args.seq, args.threads))
    run_torch()  # warm-up (the C servers warmed up before "ready")
    servers[0].ask("ceil", "ceiling_s")  # allocates and warms the ceiling buffers
    ceil_fl = float(servers[0].info["ceiling_gflop"]) * 1e9

    def measured(fn, own):
        """Seconds of fn() and the share of the CPUs other processes used meanwhile."""
        b0, o0, t0 = busy_s(), own(), time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        others = (busy_s() - b0 - (own() - o0)) / (NCPU * dt)
        return dt, max(others, 0.0)

    c_own = lambda s: (lambda: proc_cpu_s(s.p.pid))  # noqa: E731
    jobs = [("torch", run_torch, self_cpu_s)]
    for i, s in enumerate(servers):
        jobs.append((f"c{i}", lambda s=s: s.ask("run", "forward_s"), c_own(s)))
    jobs.append(("ceiling", lambda: servers[0].ask("ceil", "ceiling_s"), c_own(servers[0])))

    rounds = []
    for rep in range(args.reps):
        wait_quiet(args.quiet_wait, args.quiet)
        k = rep % len(jobs)
        r = {}
        for name, fn, own in jobs[k:] + jobs[:k]:
            r[name] = measured(fn, own)
        rounds.append(r)
        print(f"round {rep}: " + " ".join(f"{n}={dt:.3f}s/{o:.2f}" for n, (dt, o) in r.items()),
              file=sys.stderr, flush=True)

    print(f"layers={model.config.num_hidden_layers} seq={args.seq} threads={args.threads} "
          f"reps={args.reps} capture_layer={L} gflop={fl / 1e9:.2f} quiet_share={args.quiet}")
    quiet = [r for r in rounds if max(o for _, o in r.values()) < args.quiet]
    for label, sel in (("all", rounds), ("quiet", quiet)):
        print(f"[{label}] rounds={len(sel)} max_others="
              f"{max((max(o for _, o in r.values()) for r in sel), default=0):.2f}")
        if not sel:
            continue
        t = {name: [r[name][0] for r in sel] for name, _, _ in jobs}
        report(label, t, servers, fl, ceil_fl, args.seq)
    for s in servers:
        s.close()


def report(label, t, servers, fl, ceil_fl, seq):
    med = {k: statistics.median(v) for k, v in t.items()}
    print(f"[{label}] torch: median_s={med['torch']:.4f} tokens_per_s={seq / med['torch']:.1f} "
          f"gflops={fl / med['torch'] / 1e9:.1f}")
    for i, s in enumerate(servers):
        n = f"c{i}"
        vs_torch = statistics.median(a / b for a, b in zip(t["torch"], t[n]))
        vs_ceil = statistics.median((fl / a) / (ceil_fl / b) for a, b in zip(t[n], t["ceiling"]))
        print(f"[{label}] {n}={s.name}: median_s={med[n]:.4f} tokens_per_s={seq / med[n]:.1f} "
              f"gflops={fl / med[n] / 1e9:.1f} vs_torch={vs_torch:.3f} vs_ceiling={vs_ceil:.3f} "
              f"peak_rss_mb={s.info.get('peak_rss_mb', '?')}")
    print(f"[{label}] ceiling: median_s={med['ceiling']:.4f} gflops={ceil_fl / med['ceiling'] / 1e9:.1f}")
    print(f"[{label}] spread_s " + " ".join(f"{k}={min(v):.3f}..{max(v):.3f}" for k, v in t.items()))

if __name__ == "__main__":
    main()
