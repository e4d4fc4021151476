#!/usr/bin/env bash
# Regenerates the plan printed in the header comment of each configs/olmo2-*.yaml: runs
# the `transpolmo plan ...` line of that header with the built-in rates (no
# calibration file) and writes its phases, total and verdict in place of the old ones.
# With --check it changes nothing and fails when a header differs from what the
# planner now says (tests/cli/test_plan.sh), so a change to the planner or to a config
# must come with its header.
#   usage: tools/update-config-plans.sh [--check] [BINARY]     (default build/transpolmo)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
check=0
if [ "${1:-}" = --check ]; then check=1; shift; fi
bin=${1:-$root/build/transpolmo}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A calibration file that does not exist: the built-in rates, whatever this machine
# has calibrated.
export TP_CALIBRATION=$work/no-calibration.json
cd "$root"
status=0
for cfg in configs/olmo2-*.yaml; do
  cmd=$(sed -n 's/^#   transpolmo plan /plan /p' "$cfg" | head -n 1)
  if [ -z "$cmd" ]; then
    echo "update-config-plans: $cfg: no '#   transpolmo plan ...' line in its header" >&2
    exit 1
  fi
  if ! grep -q '^#   inspect ' "$cfg"; then
    echo "update-config-plans: $cfg: no '#   inspect ...' line to replace in its header" >&2
    exit 1
  fi
  # shellcheck disable=SC2086  # the header's arguments, word-split as a shell would
  if ! "$bin" $cmd > "$work/plan.txt" 2> "$work/plan.err"; then
    echo "update-config-plans: $cfg: \`transpolmo $cmd\` failed: $(head -n 1 "$work/plan.err")" >&2
    exit 1
  fi
  # The table's rows (phase, time, peak RSS, of it mmap'd, disk; "0" has no unit) as
  # "#   phase  time  peak X/rank (Y of it the shared weights)  disk Z", then every
  # line after the table (total, fits or the warnings) as "#   line".
  awk '
    /^phase / { table = 1; next }
    table && NF == 0 { table = 0; after = 1; next }
    table {
      i = 2
      t = $i " " $(i + 1); i += 2
      peak = $i " " $(i + 1); i += 2
      if ($i == "0") { mm = "0"; i++ } else { mm = $i " " $(i + 1); i += 2 }
      if ($i == "0") { disk = "0" } else { disk = $i " " $(i + 1) }
      printf "#   %-10s %9s  peak %9s/rank (%s of it the shared weights)  disk %s\n", $1, t, peak, mm, disk
      next
    }
    after && NF > 0 { print "#   " $0 }' "$work/plan.txt" > "$work/block"
  if [ ! -s "$work/block" ]; then
    echo "update-config-plans: $cfg: no plan table in the output of \`transpolmo $cmd\`" >&2
    exit 1
  fi
  # The block runs from the first "#   inspect" line to the end of the header (the
  # first line that is not a comment).
  awk -v block="$work/block" '
    !done && /^#   inspect / { while ((getline line < block) > 0) print line; skip = 1; done = 1; next }
    skip && /^#/ { next }
    { skip = 0; print }' "$cfg" > "$work/new.yaml"
  if [ "$check" = 1 ]; then
    if ! diff -u "$cfg" "$work/new.yaml" > "$work/diff"; then
      echo "update-config-plans: $cfg: its header is not what \`transpolmo $cmd\` says now (run tools/update-config-plans.sh):" >&2
      cat "$work/diff" >&2
      status=1
    fi
  else
    if cmp -s "$cfg" "$work/new.yaml"; then
      echo "update-config-plans: $cfg unchanged"
    else
      cp "$work/new.yaml" "$cfg"
      echo "update-config-plans: $cfg updated"
    fi
  fi
done
exit $status
