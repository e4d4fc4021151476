# Shared helpers of the CLI tests: run the binary, expect failure with a one-line
# message containing given words.
set -u
BIN=${TP_BINARY:?TP_BINARY not set}
DATA=${TP_TEST_DATA:?TP_TEST_DATA not set}
TMP=$(mktemp -d /tmp/tp_cli_XXXXXX)
trap 'rm -rf "$TMP"' EXIT
failures=0
passes=0

# expect_fail NAME "word1|word2..." [rc=N] -- command...
# The command must exit non-zero (N when given) and print exactly one error line on
# stderr (other lines are progress/info logs) that contains every '|'-separated word.
expect_fail() {
  local name=$1 words=$2 want=
  shift 2
  case $1 in rc=*) want=${1#rc=}; shift ;; esac
  shift   # --
  local out rc
  out=$("$@" 2>&1 >/dev/null)
  rc=$?
  out=$(printf '%s\n' "$out" | grep 'error:')
  local lines
  lines=$(printf '%s' "$out" | grep -c '' || true)
  local ok=1
  if [ "$rc" -eq 0 ]; then ok=0; echo "FAIL $name: exit code 0"; fi
  if [ -n "$want" ] && [ "$rc" -ne "$want" ]; then ok=0; echo "FAIL $name: exit code $rc, not $want"; fi
  if [ "$lines" -ne 1 ]; then ok=0; echo "FAIL $name: $lines error lines on stderr:"; printf '%s\n' "$out"; fi
  local IFS='|'
  for w in $words; do
    if ! printf '%s' "$out" | grep -qF -- "$w"; then ok=0; echo "FAIL $name: message lacks '$w': $out"; fi
  done
  if [ $ok -eq 1 ]; then passes=$((passes + 1)); echo "ok   $name (exit $rc): $out"; else failures=$((failures + 1)); fi
}

# expect_ok NAME -- command...
expect_ok() {
  local name=$1
  shift 2
  local out rc
  out=$("$@" 2>&1)
  rc=$?
  if [ $rc -eq 0 ]; then passes=$((passes + 1)); echo "ok   $name"
  else failures=$((failures + 1)); echo "FAIL $name: exit $rc"; printf '%s\n' "$out"; fi
}

finish() {
  echo "$passes passed, $failures failed"
  [ "$failures" -eq 0 ]
}
