#!/usr/bin/env bash
# `transpolmo plan`: its error handling, its JSON, the calibration round trip, and
# the plans printed in configs/olmo2-*.yaml (tools/update-config-plans.sh --check), and
# its memory predictions against measured runs: predicted peak RSS of capture,
# geometry and sae within 20 % of /usr/bin/time's, on the bundled model at np 1 and 2
# (tools/bench/plan_check.sh --assert-mem 0.2). Time is never asserted. The
# 1B-shaped case of plan_check.sh takes minutes (a 1.2 GB random checkpoint): it is
# run only with TP_PLAN_1B=1.
. "$(dirname "$0")/lib.sh"
SRC=${TP_SOURCE_DIR:?}
cd "$SRC"
CAL=$TMP/cal.json
export TP_CALIBRATION=$CAL

expect_fail "no --ranks" "--ranks N is required" rc=2 -- "$BIN" plan configs/default.yaml
expect_fail "bad --ranks" "--ranks 'two'|integer" rc=2 -- "$BIN" plan configs/default.yaml --ranks two
expect_fail "zero --ranks" "--ranks '0'" rc=2 -- "$BIN" plan configs/default.yaml --ranks 0
expect_fail "more nodes than ranks" "--nodes 4 > --ranks 2" rc=2 -- "$BIN" plan configs/default.yaml --ranks 2 --nodes 4
expect_fail "missing config" "nope.yaml" rc=2 -- "$BIN" plan "$TMP/nope.yaml" --ranks 1
expect_fail "bad --mem-per-rank" "--mem-per-rank '-3'" rc=2 -- "$BIN" plan configs/default.yaml --ranks 1 --mem-per-rank -3
expect_fail "unknown shape" "no such file|known: 1b" rc=2 -- "$BIN" plan configs/default.yaml --ranks 1 --model-config 70b
expect_fail "unknown option" "--rank" rc=2 -- "$BIN" plan configs/default.yaml --rank 1
printf 'not json' > "$TMP/bad.json"
expect_fail "bad calibration file" "bad.json|not JSON" -- "$BIN" plan configs/default.yaml --ranks 1 --calibration "$TMP/bad.json"

expect_ok "configs/olmo2-*.yaml headers are the planner's output (built-in rates)" -- \
  bash tools/update-config-plans.sh --check "$BIN"
expect_ok "uncalibrated plan says so" -- sh -c "'$BIN' plan configs/default.yaml --ranks 1 | grep -q 'built-in defaults'"
expect_ok "calibrate" -- "$BIN" plan --calibrate --out "$CAL"
expect_ok "calibrated plan says so" -- sh -c "'$BIN' plan configs/default.yaml --ranks 1 | grep -q 'calibrated on'"
expect_ok "json" -- sh -c "'$BIN' plan configs/default.yaml --ranks 2 --json | /usr/bin/python3 -c 'import json,sys; j=json.load(sys.stdin); assert [p[\"phase\"] for p in j[\"phases\"]][:4] == [\"inspect\",\"capture\",\"geometry\",\"sae\"]; assert j[\"phases\"][1][\"disk_bytes\"] > 0'"
expect_ok "on a GPU, capture's host peak counts two pinned sets" -- sh -c \
  "'$BIN' plan configs/default.yaml --ranks 1 --gpus-per-rank 1 | grep -q 'capture bufs (2 pinned sets)' &&
   ! '$BIN' plan configs/default.yaml --ranks 1 | grep -q 'pinned sets'"
expect_ok "built-in 32B shape from a config alone" -- sh -c "'$BIN' plan configs/default.yaml --ranks 8 --model-config 32b --rows 100000 | grep -q 'd 5120, 64 layers'"
expect_ok "a rank that does not fit is warned about, with what to change" -- sh -c \
  "'$BIN' plan configs/default.yaml --ranks 1 --mem-per-rank 0.1 2>&1 | grep -q 'does not fit.*sae.window_chunks'"

BUNDLED_ARGS="--config configs/default.yaml --set sae.num_epochs=1 --set geometry.id.sample=1000 --set geometry.local.sample=200" \
  TP_BINARY=$BIN expect_ok "bundled np 1, 2: predicted peak RSS within 20 % of measured" -- \
  bash tools/bench/plan_check.sh --cases bundled --np "1 2" --assert-mem 0.2
if [ "${TP_PLAN_1B:-0}" = 1 ]; then
  TP_BINARY=$BIN expect_ok "1B-shaped np 1, 2: predicted peak RSS within 20 %" -- \
    bash tools/bench/plan_check.sh --cases 1b --np "1 2" --assert-mem 0.2
fi
finish
