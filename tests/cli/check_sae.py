"""Reads SAE exports (cfg.json + sae_weights.safetensors, SAELens layout) with NumPy.

usage: python3 check_sae.py --same DIR_A DIR_B RTOL   same weights up to RTOL (relative Frobenius)
       python3 check_sae.py --layout DIR STORE.h5       keys SAELens reads; SAELens' inference
                                                         rule in NumPy on the store's rows
                                                         reconstructs them (FVU < 0.9); the model
                                                         named by its name, not a path; sparsity
       python3 check_sae.py --catalog DIR STORE.h5 CATALOG  NumPy's fire count of every latent over
                                                         every unmasked row equals the catalog's
"""
import json
import struct
import sys

import numpy as np


def load(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in head.items():
        if k == "__metadata__":
            continue
        assert v["dtype"] == "F32", k
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(data[a:b], dtype="<f4").reshape(v["shape"])
    return out


def activations(cfg, w, x):
    xin = x - w["b_dec"] if cfg["apply_b_dec_to_input"] else x
    pre = xin @ w["W_enc"] + w["b_enc"]
    if cfg["architecture"] == "topk":
        k = cfg["k"]
        idx = np.argpartition(-pre, k - 1, axis=1)[:, :k]
        act = np.zeros_like(pre)
        np.put_along_axis(act, idx, np.take_along_axis(pre, idx, 1), 1)
        act = np.maximum(act, 0)
        assert (np.count_nonzero(act, axis=1) <= k).all()
    elif cfg["architecture"] == "jumprelu":
        act = np.where(pre > w["threshold"], pre, 0)
    else:
        act = np.maximum(pre, 0)
    return act


def main():
    if sys.argv[1] == "--same":
        a, b, tol = load(sys.argv[2] + "/sae_weights.safetensors"), load(sys.argv[3] + "/sae_weights.safetensors"), float(sys.argv[4])
        assert a.keys() == b.keys()
        for k in a:
            err = np.linalg.norm(a[k].astype(np.float64) - b[k]) / max(np.linalg.norm(a[k].astype(np.float64)), 1e-30)
            if err > tol:
                sys.exit("%s: relative difference %.3g > %g" % (k, err, tol))
        print("same weights")
        return
    d = sys.argv[2]
    cfg = json.load(open(d + "/cfg.json"))
    for k in ("architecture", "d_in", "d_sae", "dtype", "apply_b_dec_to_input", "normalize_activations"):
        assert k in cfg, k
    assert "hook_name" in cfg["metadata"] and "model_name" in cfg["metadata"]
    w = load(d + "/sae_weights.safetensors")
    D, F = cfg["d_in"], cfg["d_sae"]
    assert w["W_enc"].shape == (D, F) and w["W_dec"].shape == (F, D) and w["b_enc"].shape == (F,) and w["b_dec"].shape == (D,)
    import h5py
    f = h5py.File(sys.argv[3], "r")
    x = f["acts"][cfg["metadata"]["hook_name"]][:][f["mask"][:].astype(bool)].astype(np.float64)
    act = activations(cfg, w, x)
    if sys.argv[1] == "--catalog":
        layer = next(l for l in json.load(open(sys.argv[4]))["saes"] if l["hook"] == cfg["metadata"]["hook_name"])
        ours = np.array([feat["fires"] for feat in layer["features"]])
        numpy_fires = np.count_nonzero(act > 0, axis=0)
        # f64 here, f32 in C: a few activations right at the threshold may flip.
        off = np.abs(ours - numpy_fires).sum()
        assert layer["rows"] == x.shape[0], (layer["rows"], x.shape[0])
        assert off <= 1e-3 * numpy_fires.sum() + 2, "fire counts differ by %d of %d" % (off, numpy_fires.sum())
        print("catalog fire counts = NumPy's over %d rows (%d of %d differ at the threshold)"
              % (x.shape[0], off, numpy_fires.sum()))
        return
    sp = load(d + "/sparsity.safetensors")["sparsity"]
    assert sp.shape == (F,) and np.all(sp <= 0), "sparsity: log10 of a density"
    mn = cfg["metadata"]["model_name"]
    assert mn and not mn.startswith(("/", ".")) and "models/" not in mn, "model_name is a name, not a path: " + mn
    rec = act @ w["W_dec"] + w["b_dec"]
    fvu = ((x - rec) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
    assert fvu < 0.9, "FVU %.3f: the export does not reconstruct the rows" % fvu
    print("layout ok; NumPy FVU on all unmasked rows %.3f, L0 %.1f" % (fvu, np.count_nonzero(act, axis=1).mean()))


main()
