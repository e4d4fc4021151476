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
for k in ["tokens", "positions", "mask", "doc_offsets", "doc_index", "units_complete"]:
    assert f[k].attrs["complete"] == 1, k
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
