#!/usr/bin/env bash
# The main job end to end at np 2 on a small configuration: `transpolmo run` goes through
# every phase `transpolmo phases` lists; every output each phase declares exists and
# parses; numbers agree across files (catalog = SAEs, verification = documentation =
# summary, the report self-contained); the documentation validates against its JSON
# Schema; and a run stopped three times in each phase in turn (SIGKILL and SIGTERM
# inside it, SIGKILL after its outputs before its marker: TP_FAULT), rerun each time,
# ends with the same results as the uninterrupted run (timings, run statistics and the
# run folder's path aside).
. "$(dirname "$0")/lib.sh"
MPIRUN=${MPIEXEC:-mpiexec}
SRC=${TP_SOURCE_DIR:?}
M=${TP_BUNDLED_MODEL:-$SRC/models/olmo2-tiny}
PY=/usr/bin/python3
small=(--model "$M" --set data.corpus="$SRC/data/corpus/heldout.jsonl" --num-samples 24 --set data.seq_len=64
       --set forward.batch_size=4 --set capture.hooks=hook_resid_post --layers 1,2 --set sae.num_epochs=2
       --set sae.batch_size=256 --set sae.chunk_rows=128 --set sae.window_chunks=4 --set sae.hidden_dim=256
       --set sae.k=16 --set sae.aux_k=32 --set sae.eval.num_samples=2 --set sae.checkpoint_every=5
       --set circuits.library.dir="$SRC/configs/circuits")
run2() { local out=$1; shift; env "$@" timeout -s KILL 600 "$MPIRUN" -np 2 "$BIN" run "${small[@]}" --out "$out"; }
check() {
  local name=$1; shift
  if "$@"; then passes=$((passes + 1)); echo "ok   $name"; else failures=$((failures + 1)); echo "FAIL $name"; fi
}

mapfile -t phases < <("$BIN" phases)
"$BIN" phases --json > "$TMP/phases.json"

expect_ok "run, np 2, uninterrupted" -- run2 "$TMP/a"
for p in "${phases[@]}"; do
  check "phase $p marked complete" test -s "$TMP/a/.phases/$p.done"
done
check "every declared output exists and every JSON parses" $PY - "$TMP/phases.json" "$TMP/a" <<'PY'
import json, os, sys
phases, run = json.load(open(sys.argv[1])), sys.argv[2]
for p in phases:
    for o in p["outputs"]:
        path = os.path.join(run, o)
        assert os.path.exists(path) and os.path.getsize(path) > 0, path
        if path.endswith(".json"):
            json.load(open(path))
for root, _, files in os.walk(os.path.join(run, "results")):
    for f in files:
        if f.endswith(".json"):
            json.load(open(os.path.join(root, f)))
PY
check "numbers agree across files" $PY - "$TMP/a" <<'PY'
import json, os, re, sys
run = sys.argv[1]
J = lambda p: json.load(open(os.path.join(run, p)))
arch, cap, geo = J("results/architecture.json"), J("results/capture_summary.json"), J("results/geometric_analysis.json")
sae, cat, heads = J("results/sae_summary.json"), J("results/features_catalog.json"), J("results/circuits/head_scores.json")
lib = J("results/circuits/library.json")
hooks = [s["hook"] for s in sae["saes"]]
assert hooks == ["blocks.1.hook_resid_post", "blocks.2.hook_resid_post"], hooks
assert [s["hook"] for s in cat["saes"]] == hooks
for s, c in zip(sae["saes"], cat["saes"]):
    assert len(c["features"]) == s["d_sae"]
    cfg = json.load(open(os.path.join(s["dir"], "cfg.json")))
    assert cfg["d_sae"] == s["d_sae"] and cfg["metadata"]["hook_name"] == s["hook"]
n_layers = heads["n_layers"]
assert len(heads["scores"]["induction"]) == n_layers and heads["n_heads"] == len(heads["scores"]["induction"][0])
for t in lib["tasks"]:
    g = json.load(open(os.path.join(run, "results/circuits", t["graph"] + ".json")))
    assert any(n["id"] == "logits" for n in g["nodes"])
# verification -> documentation -> summary
ver, doc, summ = J("results/verification.json"), J("docs/findings/model_documentation.json"), J("docs/findings/summary.json")
v, k = ver["summary"], summ["counts"]
assert [f["hook"] for f in ver["features"]] == hooks
assert k["features_verified"] == v["features_verified"] and k["features_described"] == v["features_described"], (k, v)
assert k["heads_verified"] == v["heads_verified"] and k["circuits_verified"] == v["circuits_verified"], (k, v)
assert doc["verification"]["summary"] == v and summ["transparency"]["score"] == doc["transparency"]["score"]
assert 0 <= summ["transparency"]["score"] <= 1
listed = {(c["layer"], c["head"], c["class"]) for c in doc["heads"]["classes"]}
assert all((h["layer"], h["head"], h["class"]) in listed for h in ver["heads"]), ver["heads"]
assert {(c["layer"], c["head"], c["class"]) for c in heads["classes"]} <= listed
html = open(os.path.join(run, "docs/findings/report.html"), encoding="utf-8").read()
assert "<html" in html and not re.search(r'(src|href)="https?://', html)
trace = J("results/circuits/trace/phase.json")   # the phase's trace: the report's attention heat maps
assert trace["id"] == "phase" and len(trace["layers"]) == heads["n_layers"]
assert "not run: no results/circuits/trace" not in html
PY
check "the documentation validates against its JSON Schema" $PY -c "
import json, jsonschema, sys
jsonschema.validate(json.load(open('$TMP/a/docs/findings/model_documentation.json')),
                    json.load(open('$SRC/docs/schema/model_documentation.schema.json')))"

# Stopped in each phase in turn, rerun each time (TP_FAULT, docs/reliability.md): a
# SIGKILL at the phase's first own point (rank 1 where every rank works), a SIGTERM
# at its last (the line a terminated rank prints), a SIGKILL once its outputs are
# written but before its marker.
b=$TMP/b
for p in "${phases[@]}"; do
  mapfile -t pts < <($PY -c "import json,sys; [print(f) for q in json.load(open(sys.argv[1])) if q['name']==sys.argv[2] for f in q['faults']]" "$TMP/phases.json" "$p")
  first=${pts[1]} last=${pts[-2]}   # pts: start, the phase's own points, outputs
  case $p in inspect|capture|geometry|sae) r=1 ;; *) r=0 ;; esac
  for f in "$p.$first:$r" "$p.$last/term" "$p.outputs"; do
    log=$TMP/kill_${f//\//_}.log
    run2 "$b" TP_FAULT="$f" > "$log" 2>&1
    rc=$?
    check "TP_FAULT=$f (exit $rc != 0), marker not written" test $rc -ne 0 -a ! -e "$b/.phases/$p.done"
    case $f in */term) check "TP_FAULT=$f: the terminated rank says so" grep -q "error: terminated by SIGTERM in phase $p" "$log" ;; esac
  done
done
expect_ok "rerun completes" -- run2 "$b"
check "the resumed run ends with the uninterrupted run's results" $PY "$SRC/tests/cli/same_results.py" "$TMP/a" "$b"
finish
