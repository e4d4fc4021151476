#!/usr/bin/env bash
# `transpolmo ablate` end to end on the bundled model: the JSON's keys and intervals,
# np 2 equal to np 1 (mean ablation: statistics reduced over ranks, prompts gathered in
# order), corpus prompts by default, and bad input: one line, nothing written.
. "$(dirname "$0")/lib.sh"
B=${TP_BUNDLED_MODEL:-$TP_SOURCE_DIR/models/olmo2-tiny}
C=$TP_SOURCE_DIR/data/corpus/heldout.jsonl
MPI=(${MPIEXEC:-mpirun} --oversubscribe --bind-to none)
printf 'The cat sat on the mat and the cat sat on the mat\nIn the beginning God created the heaven and the earth.\n\n{"not": "jsonl"}\nfor i in range(10):\n    print(i)\n' > "$TMP/p.txt"
printf '{"text": "The cat sat on the mat and the cat"}\n{"prompt": "and it was so. And the evening"}\n' > "$TMP/p.jsonl"
common=(--model "$B" --set data.corpus="$C" --set data.num_samples=8)

expect_ok "np1 mean ablation of two heads" -- "$BIN" ablate "${common[@]}" --heads 1.3,2.0 --mode mean --stat-docs 6 \
  --prompts "$TMP/p.txt" --tokens " cat| the" --out "$TMP/r1" --name h
expect_ok "np2 the same" -- "${MPI[@]}" -np 2 "$BIN" ablate "${common[@]}" --heads 1.3,2.0 --mode mean --stat-docs 6 \
  --prompts "$TMP/p.txt" --tokens " cat| the" --out "$TMP/r2" --name h
expect_ok "the JSON: keys, intervals around the means, np2 = np1" -- python3 - "$TMP/r1/results/ablations/h.json" \
  "$TMP/r2/results/ablations/h.json" <<'PY'
import json, math, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
assert a["prompts"]["count"] == 5, a["prompts"]   # blank lines skipped
m = a["metrics"]
for k in ("ce_clean", "ce_intervened", "delta_ce", "kl_clean_intervened"):
    x = m[k]
    assert x["n"] == 5 and x["ci95_low"] <= x["mean"] <= x["ci95_high"], (k, x)
assert m["kl_clean_intervened"]["mean"] > 0
assert abs(m["delta_ce"]["mean"] - (m["ce_intervened"]["mean"] - m["ce_clean"]["mean"])) < 1e-7   # 9 digits in the JSON
assert [t["text"] for t in m["chosen_tokens"]] == [" cat", " the"], m["chosen_tokens"]
iv = a["intervention"]
assert iv["mode"] == "mean" and [(t["layer"], t["head"]) for t in iv["targets"]] == [(1, 3), (2, 0)], iv
assert iv["statistics"]["rows"] > 0 and iv["statistics"]["sequences"] > 0, iv
assert len(a["per_prompt"]) == 5
def same(x, y, path=""):
    if isinstance(x, dict):
        assert x.keys() == y.keys(), path
        for k in x: same(x[k], y[k], path + "." + k)
    elif isinstance(x, list):
        assert len(x) == len(y), path
        for i, (u, v) in enumerate(zip(x, y)): same(u, v, "%s[%d]" % (path, i))
    elif isinstance(x, float):
        # the statistics' sequences are batched differently on 2 ranks (f32 forward
        # passes agree to ~1e-7 relative), so the mean moves by an ulp: 1e-6 nats
        assert math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-6), (path, x, y)
    else:
        assert x == y, (path, x, y)
same(a, b)
PY
expect_ok "zero ablation of an MLP and neurons, jsonl prompts" -- "$BIN" ablate --model "$B" --mlp 1 --neurons 2:5,3:7 \
  --prompts "$TMP/p.jsonl" --out "$TMP/r1" --name m
expect_ok "steering and resample, corpus prompts by default" -- "$BIN" ablate "${common[@]}" --heads 0.1 --steer 2 \
  --max-prompts 3 --out "$TMP/r1" --name s
expect_ok "resample" -- "$BIN" ablate "${common[@]}" --heads 0.1 --mode resample --max-prompts 3 --stat-docs 4 \
  --out "$TMP/r1" --name rs
expect_ok "the outputs parse" -- python3 -c "
import json
for n in ('m', 's', 'rs'):
    d = json.load(open('$TMP/r1/results/ablations/%s.json' % n))
    assert d['metrics']['kl_clean_intervened']['mean'] > 0, n
assert json.load(open('$TMP/r1/results/ablations/s.json'))['prompts']['count'] == 3
"

before=$(md5sum "$TMP/r1/results/ablations/h.json")
expect_fail "head out of range" "--heads|'1.8'|out of range" -- "$BIN" ablate --model "$B" --heads 1.8 --prompts "$TMP/p.txt" --out "$TMP/r1" --name h
expect_fail "layer out of range" "--mlp|'9'|out of range" -- "$BIN" ablate --model "$B" --mlp 9 --prompts "$TMP/p.txt" --out "$TMP/r1" --name h
expect_fail "no target" "no intervention given" -- "$BIN" ablate --model "$B" --prompts "$TMP/p.txt" --out "$TMP/r1" --name h
expect_fail "bad mode" "--mode|'average'" -- "$BIN" ablate --model "$B" --heads 1.1 --mode average --prompts "$TMP/p.txt" --out "$TMP/r1"
expect_fail "mode and steer" "--mode or --steer" -- "$BIN" ablate --model "$B" --heads 1.1 --mode mean --steer 2 --out "$TMP/r1"
expect_fail "missing prompts file" "$TMP/none.txt" -- "$BIN" ablate --model "$B" --heads 1.1 --prompts "$TMP/none.txt" --out "$TMP/r1" --name h
printf '{"text": 3}\n' > "$TMP/bad.jsonl"
expect_fail "jsonl without text" "bad.jsonl:1|\"text\"" -- "$BIN" ablate --model "$B" --heads 1.1 --prompts "$TMP/bad.jsonl" --out "$TMP/r1" --name h
expect_fail "token not one token" "--tokens|not one" -- "$BIN" ablate --model "$B" --heads 1.1 --prompts "$TMP/p.txt" --tokens " catastrophically" --out "$TMP/r1" --name h
expect_fail "feature without an SAE" "no SAE for blocks.2.hook_resid_post" -- "$BIN" ablate --model "$B" --features blocks.2.hook_resid_post:3 --prompts "$TMP/p.txt" --out "$TMP/r1" --name h
expect_fail "unknown option" "--head" -- "$BIN" ablate --model "$B" --head 1.1 --out "$TMP/r1"
after=$(md5sum "$TMP/r1/results/ablations/h.json")
if [ "$before" = "$after" ]; then passes=$((passes+1)); echo "ok   failed runs left the earlier result intact"
else failures=$((failures+1)); echo "FAIL an earlier result changed"; fi
finish
