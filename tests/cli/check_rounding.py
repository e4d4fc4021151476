"""A 16-bit store holds exactly the f32 store's values rounded to nearest even.

usage: python3 check_rounding.py F32.h5 HALF.h5 f16|bf16
Reads both with h5py (the 16-bit one through HDF5's own conversion to float32) and
compares every capture point bit for bit with NumPy's rounding of the f32 rows.
"""
import sys

import h5py
import numpy as np

a, b, kind = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r"), sys.argv[3]
assert np.array_equal(a["tokens"][:], b["tokens"][:])
for name in a["acts"]:
    x = a["acts"][name][:]
    y = b["acts"][name].astype("f4")[:]
    if kind == "f16":
        want = x.astype(np.float16).astype(np.float32)          # IEEE round-to-nearest-even
    else:
        u = x.view(np.uint32).astype(np.uint64)
        want = (((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16).astype(np.uint32).view(np.float32)
    assert np.array_equal(y, want), name
print(f"{kind}: {len(a['acts'])} capture points exactly rounded")
