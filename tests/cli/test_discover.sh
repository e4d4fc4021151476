#!/usr/bin/env bash
# `circuits discover` and the circuit library on the bundled model: discover writes the
# graph json/dot/svg with the curve (f(0) = 0, f(100 %) = 1, CPR/CMD = trapezoids of f),
# the verification table, the corruption and the target it chose; np=1 and np=2 write the
# same JSON. The phase writes library.json (every task of configs/circuits, with its keys,
# none dropped) and a graph per task, the same for np=1 and np=2. Bad input (a task file
# with an unknown key, a pair of different token lengths, an unknown corruption mode) is
# one error line naming the file or option, exit code 2.
. "$(dirname "$0")/lib.sh"
MPIRUN=${MPIEXEC:-mpiexec}
SRC=${TP_SOURCE_DIR:?}
M=${TP_BUNDLED_MODEL:-$SRC/models/olmo2-tiny}
PY=/usr/bin/python3
common=(--model "$M" --set data.corpus="$SRC/data/corpus/heldout.jsonl" --num-samples 8 --set data.seq_len=32
        --set circuits.heads.corpus_docs=4 --set circuits.heads.synthetic=2 --set circuits.heads.synthetic_len=8
        --set circuits.weights.baseline_samples=1 --set circuits.library.dir="$SRC/configs/circuits")
circ() { "$BIN" circuits "${common[@]}" "$@"; }
circ_np() { local np=$1; shift; timeout -s KILL 240 "$MPIRUN" -np "$np" "$BIN" circuits "${common[@]}" "$@"; }
check() {
  local name=$1; shift
  if "$@"; then passes=$((passes + 1)); echo "ok   $name"; else failures=$((failures + 1)); echo "FAIL $name"; fi
}

out=$("$BIN" circuits --help 2>&1)
check "circuits --help lists discover" test -n "$(printf '%s' "$out" | grep -E '^  discover ')"

expect_ok "discover (1 rank)" -- circ discover --prompt "The capital of France is" --name fr --out "$TMP/d1"
expect_ok "discover (2 ranks)" -- circ_np 2 discover --prompt "The capital of France is" --name fr --out "$TMP/d2"
R=$TMP/d1/results/circuits
check "discover: graph json/dot/svg" test -s "$R/fr.json" -a -s "$R/fr.dot" -a -s "$R/fr.svg"
check "discover: np=1 and np=2 write the same JSON" cmp -s "$R/fr.json" "$TMP/d2/results/circuits/fr.json"
check "discover JSON: target, corruption, curve, CPR/CMD, verification" $PY - "$R/fr.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for k in ("model", "settings", "method", "corruption", "prompts", "target", "metric", "faithfulness", "verification",
          "definitions", "nodes", "edges"):
    assert k in d, k
assert d["target"]["source"].startswith("the model's top next token")
c = d["corruption"]
assert c["mode"] == "resample" and "default" in c["chosen_by"] and c["document"].startswith("corpus ")
assert c["corrupt_top_token"] != d["target"]["id"]
assert d["prompts"]["clean"]["tokens"] == d["prompts"]["corrupt"]["tokens"]
f = d["faithfulness"]
assert f["k_percent"] == [0, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100]
assert f["f"][0] == 0 and f["f"][-1] == 1 and "node-level" in f["evaluation"]
x = [k / 100 for k in f["k_percent"]]
cpr = sum((x[i + 1] - x[i]) * (f["f"][i] + f["f"][i + 1]) / 2 for i in range(len(x) - 1))
cmd = sum((x[i + 1] - x[i]) * (abs(1 - f["f"][i]) + abs(1 - f["f"][i + 1])) / 2 for i in range(len(x) - 1))
assert abs(cpr - f["cpr"]) < 1e-6 and abs(cmd - f["cmd"]) < 1e-6, (cpr, f["cpr"], cmd, f["cmd"])
i = f["k_percent"].index(f["kept_k_percent"])
assert (f["reached"] and f["f"][i] >= f["threshold"]) or (not f["reached"] and f["kept_k_percent"] == 100)
assert len(d["verification"]) == 10 and all({"node", "eap", "exact"} <= set(v) for v in d["verification"])
assert 1 <= len(d["edges"]) <= f["kept_edges"]
PY
expect_ok "discover --corruption mean" -- circ discover --prompt "The capital of France is" --corruption mean \
  --name frm --out "$TMP/d1"
check "mean ablation says so" $PY -c "
import json, sys; d = json.load(open(sys.argv[1])); c = d['corruption']
assert c['mode'] == 'mean' and c['chosen_by'] == '--corruption mean' and c['rows'] > 0 and d['prompts']['corrupt'] is None
assert d['faithfulness']['f'][0] == 0 and d['faithfulness']['f'][-1] == 1" "$R/frm.json"
expect_fail "an unknown corruption mode" "--corruption 'zero'|resample|mean" -- \
  circ discover --prompt "The capital of France is" --corruption zero --out "$TMP/bad"

out=$(circ --out "$TMP/p1" 2>&1)
check "phase with the library (1 rank); its headline counts the tasks done" \
  test -n "$(printf '%s' "$out" | grep -E 'library: [0-9]+/[0-9]+ tasks done by the model')"
expect_ok "phase with the library (2 ranks)" -- circ_np 2 --out "$TMP/p2"
L=$TMP/p1/results/circuits/library.json
check "library.json: the same for np=1 and np=2" cmp -s "$L" "$TMP/p2/results/circuits/library.json"
check "library.json: every task with its keys" $PY - "$L" "$SRC/configs/circuits" <<'PY'
import json, os, sys
d = json.load(open(sys.argv[1]))
files = sorted(f for f in os.listdir(sys.argv[2]) if f.endswith(".yaml"))
assert [t["file"] for t in d["tasks"]] == files, ([t["file"] for t in d["tasks"]], files)
assert len(files) >= 3
for t in d["tasks"]:
    for k in ("name", "description", "prompts", "pairs", "ld_clean", "ld_corr", "can_do", "why", "margin", "graph",
              "faithfulness", "verification", "top_heads", "top_edges"):
        assert k in t, (t["name"], k)
    assert t["prompts"] == len(t["pairs"]) >= 1
    assert t["can_do"] == (t["ld_clean"] - t["ld_corr"] >= t["margin"])
    assert (t["why"] is None) == t["can_do"]
    assert t["faithfulness"]["f"][0] == 0 and t["faithfulness"]["f"][-1] == 1
    g = os.path.join(os.path.dirname(sys.argv[1]), t["graph"])
    assert all(os.path.getsize(g + e) > 0 for e in (".json", ".dot", ".svg")), g
PY
check "library.json: the bundled model does the induction task; its induction head a3.h0 is a top head" \
  $PY - "$L" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
t = [t for t in d["tasks"] if t["name"] == "induction"]
assert t and t[0]["can_do"], t   # the stage-1 model (no induction head) could not: LD 0.41 / 1.23
assert "a3.h0" in [h["node"] for h in t[0]["top_heads"]], t[0]["top_heads"]
PY

B=$TMP/badlib; mkdir -p "$B"
printf 'name: x\ngenerator: repeat_random\nlength: 4\ncolour: red\n' > "$B/x.yaml"
expect_fail "a task file with an unknown key" "$B/x.yaml:4|unknown key 'colour'" -- \
  circ --set circuits.library.dir="$B" --out "$TMP/bad"
check "... exit code 2" test "$(circ --set circuits.library.dir="$B" --out "$TMP/bad" >/dev/null 2>&1; echo $?)" -eq 2
printf 'name: y\npairs:\n  - {clean: "The cat sat on the mat", corrupt: "The dog", target: " mat"}\n' > "$B/x.yaml"
expect_fail "a pair of different token lengths" "$B/x.yaml: pair 1|same length" -- \
  circ --set circuits.library.dir="$B" --out "$TMP/bad"
finish
