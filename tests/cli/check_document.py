#!/usr/bin/env python3
"""Checks a run's documentation (tests/cli/test_document.sh):
  check_document.py SCHEMA RUN_DIR [--verified]
- model_documentation.json validates against the JSON Schema (Draft 7);
- every evidence {file, pointer} resolves (RFC 6901) in the run's file;
- the head classes are results/circuits/head_scores.json's, the tasks library.json's,
  the geometry labels geometric_analysis.json's;
- summary.json's counts and score equal the documentation's;
- the score is the weighted mean of its dimensions, each the mean of its components;
- without --verified: no verification, every verified flag null; with it: the flags of
  tests/data/document/verification.json (a format fixture)."""
import json, os, sys
import jsonschema

schema_path, run = sys.argv[1], sys.argv[2]
verified_run = "--verified" in sys.argv
load = lambda rel: json.load(open(os.path.join(run, rel)))
doc = load("docs/findings/model_documentation.json")
summ = load("docs/findings/summary.json")
jsonschema.Draft7Validator(json.load(open(schema_path))).validate(doc)

cache = {}
def resolve(ev):
    f = ev["file"]
    if f not in cache:
        cache[f] = load(f)
    node = cache[f]
    if ev["pointer"] == "":
        return node
    for tok in ev["pointer"].split("/")[1:]:
        tok = tok.replace("~1", "/").replace("~0", "~")
        node = node[int(tok)] if isinstance(node, list) else node[tok]
    return node

n_ev = 0
def walk(x):
    global n_ev
    if isinstance(x, dict):
        if set(x) == {"file", "pointer"}:
            resolve(x); n_ev += 1
        for v in x.values(): walk(v)
    elif isinstance(x, list):
        for v in x: walk(v)
walk(doc)
assert n_ev > 50, n_ev

# every claim has evidence, ids in order
for i, c in enumerate(doc["claims"]):
    assert c["id"] == "C%d" % (i + 1) and c["evidence"], c

hs = load("results/circuits/head_scores.json")
got = [(c["layer"], c["head"], c["class"], round(c["score"], 6)) for c in doc["heads"]["classes"]]
want = [(c["layer"], c["head"], c["class"], round(c["score"], 6)) for c in hs["classes"]]
assert got == want, (got, want)
for c, e in zip(doc["heads"]["classes"], hs["classes"]):
    assert resolve(c["evidence"][0]) == e
classified = {(c["layer"], c["head"]) for c in hs["classes"]}
assert doc["heads"]["n_classified"] == len(classified)
assert len(doc["heads"]["unclassified"]) == hs["n_layers"] * hs["n_heads"] - len(classified)
lib = load("results/circuits/library.json")
assert [t["task"] for t in doc["circuits"]["tasks"]] == [t["name"] for t in lib["tasks"]]
geo = load("results/geometric_analysis.json")
assert [l["label"] for l in doc["geometry"]["layers"]] == [l["geometry_type"]["label"] for l in geo["layers"]]
cat = load("results/features_catalog.json")
for s, c in zip(doc["features"]["saes"], cat["saes"]):
    assert s["hook"] == c["hook"] and s["n_live"] == sum(1 for f in c["features"] if f["fires"] > 0)
    assert s["n_dead"] == c["n_dead"]
    for f in s["features"]:
        assert resolve(f["evidence"][0])["id"] == f["id"]

# summary == documentation
k, t = summ["counts"], doc["transparency"]
assert summ["transparency"]["score"] == t["score"]
assert summ["transparency"]["profile"] == {n: d["value"] for n, d in t["dimensions"].items()}
assert k["head_classes"] == len(doc["heads"]["classes"])
assert k["heads_by_class"] == {c: len(v) for c, v in doc["heads"]["by_class"].items()}
assert k["heads_classified"] == doc["heads"]["n_classified"]
assert k["saes"] == len(doc["features"]["saes"])
assert k["features_live"] == sum(s["n_live"] for s in doc["features"]["saes"])
assert k["features_documented"] == sum(len(s["features"]) for s in doc["features"]["saes"])
assert k["features_verified"] == sum(s["coverage"]["n_verified"] for s in doc["features"]["saes"])
assert k["circuit_tasks"] == len(doc["circuits"]["tasks"])
assert k["claims"] == len(doc["claims"])
assert k["claims_verified"] == sum(1 for c in doc["claims"] if c["verified"] is True)
assert summ["verification_present"] == doc["verification"]["present"] == verified_run

# the score's arithmetic as docs/transparency.md states it
dims = t["dimensions"]
score = sum(d["weight"] * d["value"] for d in dims.values())
assert abs(score - t["score"]) < 1e-6, (score, t["score"])
for name in ("feature_coverage", "circuit_coverage"):
    comps = dims[name]["components"]
    assert abs(sum(c["value"] for c in comps) / len(comps) - dims[name]["value"]) < 1e-6
layers = dims["layer_understanding"]["components"][0]["inputs"]["layers"]
assert abs(sum(l["value"] for l in layers) / len(layers) - dims["layer_understanding"]["value"]) < 1e-6
L, H = doc["architecture"]["config"]["num_layers"], doc["architecture"]["config"]["num_attention_heads"]
hc = dims["circuit_coverage"]["components"][0]
assert hc["inputs"]["total"] == L * H and abs(hc["value"] - hc["inputs"]["covered"] / (L * H)) < 1e-9

def flags():
    for c in doc["claims"]: yield c["verified"]
    for c in doc["heads"]["classes"]: yield c["verified"]
    for c in doc["circuits"]["tasks"]: yield c["verified"]
    for s in doc["features"]["saes"]:
        for f in s["features"]: yield f["verified"]
if not verified_run:
    assert all(v is None for v in flags())
    assert "nothing was verified by intervention" in doc["verification"]["note"]
    assert dims["feature_coverage"]["value"] == 0 and dims["circuit_coverage"]["value"] == 0
    # only the geometry is known: every labelled layer counts 1/3
    assert abs(t["score"] - sum(1 for l in layers if l["geometry"] == 1) / len(layers) / 9) < 1e-9
else:
    heads = {(c["name"], c["class"]): c["verified"] for c in doc["heads"]["classes"]}
    assert heads[("L1H3", "previous_token")] is True and heads[("L0H1", "self")] is False, heads
    tasks = {c["task"]: c for c in doc["circuits"]["tasks"]}
    assert tasks["brackets"]["verified"] is True and tasks["induction"]["verified"] is False
    assert tasks["corpus_next"]["verified"] is None
    assert tasks["brackets"]["heads"] == ["L0H7", "L1H6", "L2H1"]
    s1 = [s for s in doc["features"]["saes"] if s["hook"] == "blocks.1.hook_resid_post"][0]
    assert s1["coverage"]["n_tested"] == 3 and s1["coverage"]["n_verified"] == 2 and s1["coverage"]["n_described"] == 2
    f = {x["id"]: x for x in s1["features"]}
    assert f[0]["description"]["source"] == "verification" and f[0]["description"]["above_bar"] is True
    assert f[1]["description"]["above_bar"] is False and f[2]["verified"] is False
    assert dims["circuit_coverage"]["components"][0]["inputs"]["heads"] == ["L0H7", "L1H3", "L1H6", "L2H1"]
    assert k["features_verified"] == 2 and k["circuits_verified"] == 1 and k["heads_verified"] == 1
print("ok: %d evidence pointers resolve, score %.4f" % (n_ev, t["score"]))
