#!/usr/bin/env python3
"""PyTorch / transformers baseline for `transpolmo capture` (tools/bench/capture.sh).

    /opt/transpolmo-ref/bin/python tools/bench/capture_hf.py --model DIR \
        --corpus data/corpus/train.jsonl --num-samples 256 --seed 1234 --seq-len 256 \
        --batch 8 --threads 2 --hooks hook_resid_post,hook_mlp_out --out /tmp/x/hf.h5 \
        [--compare RUN/activations.h5] [--json out.json] [--device cpu|cuda] [--dtype f32|bf16]

The same work as phase 2 with `data.packing: split`, written the way a competent
PyTorch user would:

  * the same documents: the corpus is indexed like src/io/corpus.c (files sorted,
    one JSON object per non-blank line, `.txt` = one document) and sampled with the
    same seeded Floyd/splitmix64 draw (corpus_sample()), in corpus order;
  * each document tokenized by the model's tokenizer.json (`tokenizers`,
    encode_batch, no special tokens added) and cut into pieces of at most seq_len
    tokens; a piece never spans two documents;
  * units of `batch` consecutive pieces, right-padded (EOS id) to the longest piece
    of the unit; causal attention makes the real positions independent of the
    padding, so no attention mask is needed (the C side computes no padding rows:
    it packs a unit's pieces into one unpadded batch, forward_run_varlen; doing that
    here would need a block-diagonal 4-D mask over the whole packed length, as
    transformers' padding-free path needs flash-attention, i.e. CUDA);
  * the base model only (Olmo2Model: no LM head), float32,
    torch.inference_mode, torch.set_num_threads(threads), sdpa attention;
  * forward hooks (hook_resid_post = output of model.layers[L], hook_mlp_out =
    output of model.layers[L].post_feedforward_layernorm, hook_attn_out = output of
    post_attention_layernorm) that gather the unpadded rows with one index_select
    into preallocated numpy buffers;
  * one h5py write per capture point per unit (write_direct of the whole unit) into
    [N, d] float32 datasets `acts/blocks.L.<hook>` chunked like the C store (about
    1 MiB of whole rows per chunk), plus /tokens and /positions.

Timing (time.perf_counter): `wall_s` runs from before the model load to after the
file is closed (the span the C summary's wall_s covers: model, corpus, tokenizer,
store, forward, writes; the Python and transformers imports, like the C process
start, are outside it); `loop_s` = forward (hooks included) + h5py writes of the
activations. Prints `key=value` lines; --json writes them as a JSON object.

--device cuda (tools/bench/gpu.sh): the model on the GPU (model.to('cuda')), the ids
and row indices uploaded per unit, each hook's index_select on the GPU then one
non_blocking copy into a pinned f32 host tensor (bf16 widened on the GPU first), and
torch.cuda.synchronize() before the unit's h5py writes (inside forward_s). --dtype bf16
loads the model in bfloat16 (activations bf16 too, as a GPU user would run it; the C
side keeps f32 activations with bf16 weights); default f32 (on the GPU without TF32,
torch's default for matmul). Without CUDA: one line skipped=... and exit 0.

--compare C_STORE checks, after the timed part, that /tokens are identical and that
every activation dataset matches the C store (tools/bench/capture_compare.py: relative
Frobenius error <= 1e-4; the worst row's relative error is printed too).
"""

import os

import sys  # noqa: E402

# CPU runs hide the GPUs (as before); --device cuda keeps them (checked before torch loads).
if not any(a in ("--device=cuda",) or (a == "--device" and sys.argv[i + 1:i + 2] == ["cuda"])
           for i, a in enumerate(sys.argv)):
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402
from transformers import Olmo2Model  # noqa: E402  (imported before the clock starts)
from transformers.utils import logging as hf_logging  # noqa: E402

from capture_compare import compare  # noqa: E402  (tools/bench/capture_compare.py)

M64 = (1 << 64) - 1
CHUNK_BYTES = 1 << 20          # src/io/store.c


# ---------------------------------------------------------------- corpus + sample
def corpus_files(spec):
    if os.path.isdir(spec):
        names = [n for n in os.listdir(spec) if not n.startswith(".") and n.endswith((".jsonl", ".txt"))]
        files = [os.path.join(spec, n) for n in names]
    else:
        files = [spec]
    return sorted(files, key=lambda p: p.encode())


def corpus_index(spec):
    """[(path, line bytes or None for .txt)] in corpus order (src/io/corpus.c)."""
    docs = []
    for path in corpus_files(spec):
        with open(path, "rb") as fh:
            data = fh.read()
        if path.endswith(".txt"):
            if data:
                docs.append((path, None))
            continue
        for line in data.split(b"\n"):
            line = line.rstrip(b"\r\n")
            if not line.strip(b" \t"):
                continue
            docs.append((path, line))
    return docs


def splitmix64(s):
    s = (s + 0x9E3779B97F4A7C15) & M64
    z = s
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return s, z ^ (z >> 31)


def corpus_sample(D, n, seed):
    """corpus_sample() in src/io/corpus.c: Floyd's n distinct draws, sorted."""
    if n >= D:
        return list(range(D))
    s = (seed ^ 0x7472616E73706F6C) & M64
    picked = set()
    for j in range(D - n, D):
        s, r = splitmix64(s)
        t = r % (j + 1)
        picked.add(t if t not in picked else j)
    return sorted(picked)


def doc_text(doc):
    path, line = doc
    if line is None:
        with open(path, "rb") as fh:
            return fh.read().decode("utf-8")
    return json.loads(line)["text"]


# ---------------------------------------------------------------- capture points
def hook_module(layer, hook):
    if hook == "hook_resid_post":
        return layer
    if hook == "hook_mlp_out":
        return layer.post_feedforward_layernorm
    if hook == "hook_attn_out":
        return layer.post_attention_layernorm
    if hook in ("mlp.hook_out",):
        return layer.mlp.down_proj
    raise SystemExit(f"capture_hf.py: capture point {hook!r} is not mapped (use hook_resid_post, "
                     "hook_mlp_out, hook_attn_out, mlp.hook_out)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--num-samples", type=int, required=True)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--hooks", default="hook_resid_post,hook_mlp_out")
    ap.add_argument("--out", required=True, help="the HDF5 file to write (replaced)")
    ap.add_argument("--compare", help="a C activations.h5 to compare the rows with (untimed)")
    ap.add_argument("--json", help="also write the key=value results here as JSON")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16"])
    args = ap.parse_args()
    dev = torch.device(args.device)
    gpu = args.device == "cuda"
    if gpu and not torch.cuda.is_available():
        print(f"skipped=no GPU: torch {torch.__version__} sees no CUDA device")
        if args.json:
            with open(args.json, "w") as fh:
                json.dump({"skipped": f"no GPU: torch {torch.__version__} sees no CUDA device"}, fh)
        return
    sync = torch.cuda.synchronize if gpu else (lambda: None)

    torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    res = {}
    t_start = time.perf_counter()

    # Model (base model only: the capture never needs the LM head).
    tdt = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    model = Olmo2Model.from_pretrained(args.model, dtype=tdt).eval().to(dev)
    sync()
    cfg = model.config
    res["load_s"] = time.perf_counter() - t_start

    # Documents -> split-packed sequences.
    t0 = time.perf_counter()
    docs = corpus_index(args.corpus)
    sel = corpus_sample(len(docs), args.num_samples, args.seed)
    texts = [doc_text(docs[i]) for i in sel]
    tok = Tokenizer.from_file(os.path.join(args.model, "tokenizer.json"))
    enc = tok.encode_batch(texts, add_special_tokens=False)
    seqs = []
    for e in enc:
        ids = e.ids
        for off in range(0, len(ids), args.seq_len):
            seqs.append(np.asarray(ids[off:off + args.seq_len], dtype=np.int64))
    lens = np.array([len(s) for s in seqs], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lens)])
    N = int(starts[-1])
    res["tokenize_s"] = time.perf_counter() - t0

    # Capture points in the C store's order: for each hook, every layer.
    hooks = [h for h in args.hooks.split(",") if h]
    layers = model.layers
    d = cfg.hidden_size
    max_rows = args.batch * args.seq_len
    points = []
    for h in hooks:
        for L in range(len(layers)):
            if gpu:
                buf_t = torch.empty((max_rows, d), dtype=torch.float32, pin_memory=True)
                buf = buf_t.numpy()
            else:
                buf = np.empty((max_rows, d), dtype=np.float32)
                buf_t = torch.from_numpy(buf)
            points.append({"name": f"blocks.{L}.{h}", "module": hook_module(layers[L], h),
                           "buf": buf, "buf_t": buf_t})
    state = {"idx": None, "n": 0}

    def make_hook(p):
        buf_t = p["buf_t"]

        def hook(_mod, _inp, out):
            x = out[0] if isinstance(out, tuple) else out
            if gpu:
                sel = torch.index_select(x.reshape(-1, x.shape[-1]), 0, state["idx"]).float()
                buf_t[:state["n"]].copy_(sel, non_blocking=True)
            else:
                torch.index_select(x.reshape(-1, x.shape[-1]), 0, state["idx"], out=buf_t[:state["n"]])
        return hook

    handles = [p["module"].register_forward_hook(make_hook(p)) for p in points]

    # The store.
    t0 = time.perf_counter()
    if os.path.exists(args.out):
        os.remove(args.out)
    f = h5py.File(args.out, "w")
    chunk_rows = max(1, min(CHUNK_BYTES // (d * 4), N))
    g = f.create_group("acts")
    for p in points:
        p["ds"] = g.create_dataset(p["name"], shape=(N, d), maxshape=(None, d), dtype="f4",
                                   chunks=(chunk_rows, d))
    create_s = time.perf_counter() - t0

    pad = cfg.eos_token_id if cfg.eos_token_id is not None else 0
    ids_buf = np.full((args.batch, args.seq_len), pad, dtype=np.int64)
    fwd_s = write_s = 0.0
    n_units = (len(seqs) + args.batch - 1) // args.batch
    with torch.inference_mode():
        for u in range(n_units):
            t0 = time.perf_counter()
            s0, s1 = u * args.batch, min(len(seqs), (u + 1) * args.batch)
            B, T = s1 - s0, int(lens[s0:s1].max())
            ids = ids_buf[:B, :T]
            ids.fill(pad)
            for b in range(B):                    # one slice copy per sequence
                ids[b, :lens[s0 + b]] = seqs[s0 + b]
            valid = np.arange(T)[None, :] < lens[s0:s1, None]          # [B, T]
            state["idx"] = torch.from_numpy(np.flatnonzero(valid)).to(dev)
            n = state["n"] = int(lens[s0:s1].sum())
            model(input_ids=torch.from_numpy(np.ascontiguousarray(ids)).to(dev), use_cache=False)
            sync()
            t1 = time.perf_counter()
            r0 = int(starts[s0])
            for p in points:
                p["ds"].write_direct(p["buf"], source_sel=np.s_[0:n], dest_sel=np.s_[r0:r0 + n])
            t2 = time.perf_counter()
            fwd_s += t1 - t0
            write_s += t2 - t1

    t0 = time.perf_counter()
    all_tokens = np.concatenate(seqs).astype(np.int32)
    positions = np.concatenate([np.arange(k, dtype=np.int32) for k in lens])
    f.create_dataset("tokens", data=all_tokens)
    f.create_dataset("positions", data=positions)
    f.close()
    write_s += time.perf_counter() - t0 + create_s
    wall = time.perf_counter() - t_start
    for h in handles:
        h.remove()

    loop = fwd_s + write_s
    bytes_written = N * d * 4 * len(points)
    res.update({
        "impl": f"torch {torch.__version__} transformers {args.dtype} {args.device} attn={cfg._attn_implementation}",
        "torch_threads": torch.get_num_threads(),
        "documents": len(sel), "sequences": len(seqs), "units": n_units, "rows": N,
        "points": len(points), "bytes_written": bytes_written,
        "forward_s": fwd_s, "write_s": write_s, "loop_s": loop, "wall_s": wall,
        "rows_per_s": N / wall, "loop_rows_per_s": N / loop,
        "write_share": write_s / loop, "write_mib_per_s": bytes_written / write_s / (1 << 20),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    })

    if args.compare:
        tok_eq, fro, row, mx, _ = compare(args.compare, args.out)
        res.update({"tokens_equal": int(tok_eq), "compare_rel_fro": fro, "compare_rel_row_max": row,
                    "compare_max_abs": mx, "compare_ok": int(tok_eq and fro <= 1e-4)})

    for k, v in res.items():
        print(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=1)
    if args.compare and not res["compare_ok"]:
        raise SystemExit("capture_hf.py: the rows differ from the C store")


if __name__ == "__main__":
    main()
