"""Reads an activation store with h5py (as users' tools would) and checks its layout
against DESIGN.md and a few rows against forward-pass dumps made by the C binary.

usage: python3 check_store.py STORE.h5 DUMP_DIR HOOK [HOOK...]
DUMP_DIR holds <hook>.npy from `transpolmo forward --ids-file first_seq.npy --dump ...`
for the store's first sequence, and first_seq.npy itself.
"""
import sys

import h5py
import numpy as np

path, dump, hooks = sys.argv[1], sys.argv[2], sys.argv[3:]
f = h5py.File(path, "r")
n = f["tokens"].shape[0]
assert f["tokens"].dtype == np.int32 and f["positions"].shape == (n,) and f["mask"].shape == (n,)
D = f["doc_index"].shape[0]
off = f["doc_offsets"][:]
assert off.shape == (D + 1,) and off[0] == 0 and off[-1] == n and np.all(np.diff(off) >= 0)
for k in ["tokens", "positions", "mask", "row_doc", "doc_offsets", "doc_index", "doc_domain", "domain_names",
          "vocab_offsets", "vocab_bytes", "units_complete"]:
    assert f[k].attrs["complete"] == 1, k
# A row maps to its document, the document to its corpus index and domain, a token
# id to its text, without rejoining anything by hand.
row_doc = f["row_doc"][:]
want = np.searchsorted(off, np.arange(n), side="right") - 1
assert np.array_equal(row_doc, want), "row_doc is the document whose rows hold the row"
names = [x.tobytes().rstrip(b"\0").decode() for x in f["domain_names"][:]]
dom = f["doc_domain"][:]
assert dom.shape == (D,) and dom.min() >= 0 and dom.max() < len(names) and all(names), "doc_domain"
vo, vb = f["vocab_offsets"][:], f["vocab_bytes"][:]
assert vo[0] == 0 and vo[-1] == vb.shape[0] and np.all(np.diff(vo) >= 0), "vocab_offsets"
toks = f["tokens"][:]
assert toks.max() < vo.shape[0] - 1 and all(vo[t + 1] > vo[t] for t in set(toks[:200].tolist())), "tokens have text"
assert f.attrs["store_format"] == 2
for a in ["sampling_seed", "num_samples", "seq_len", "unit_sequences"]:
    assert np.issubdtype(np.asarray(f.attrs[a]).dtype, np.integer), a + " is a number"
assert f["units_complete"][:].all()
for a in ["model_path", "corpus_hash", "tokenizer_hash", "model_config_hash", "hooks", "dtype", "sampling_seed"]:
    assert a in f.attrs, a
pos = f["positions"][:]
first_len = int(np.argmax(pos[1:] == 0)) + 1 if (pos[1:] == 0).any() else n
ids = np.load(dump + "/first_seq.npy")
assert np.array_equal(ids.ravel(), f["tokens"][:first_len]), "first sequence tokens"
assert np.array_equal(f["mask"][:first_len] == 0, pos[:first_len] == 0), "mask marks the first position"
for h in hooks:
    ds = f["acts"][h]
    assert ds.shape[0] == n and ds.attrs["complete"] == 1, h
    assert ds.attrs["hook"].decode() == h and ds.attrs["d"] == ds.shape[1], h
    assert ds.attrs["layer"] == (int(h.split(".")[1]) if h.startswith("blocks.") else -1), h
    assert ds.attrs["dtype"].decode() in ("f32", "f16", "bf16") and ds.attrs["units"], h
    assert ds.chunks[1] == ds.shape[1], "chunks hold whole rows"
    rows = ds[:first_len].astype(np.float32)
    ref = np.load(dump + "/" + h + ".npy").reshape(first_len, -1)
    err = np.abs(rows - ref).max() / np.abs(ref).max()
    # f32: the store's batch is padded to its longest sequence, the dump runs the
    # sequence alone, so GEMM shapes (and summation blocking) differ: ~1e-7 relative.
    # f16: half-precision rounding, 2^-11 relative per value, well inside 2^-8 of the max.
    tol = 1e-5 if ds.dtype == np.float32 else 2 ** -8
    assert err <= tol, (h, err)
print(f"h5py: {n} rows, {D} documents, {len(hooks)} capture points checked")
