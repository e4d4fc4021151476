#!/usr/bin/env bash
# `transpolmo report` on a small run of the bundled model (capture, sae, geometry,
# circuits, a trace, a hand-written verification.json and transparency score): the
# page is self-contained (no http(s) src/href, every <img> a data: URI, no external
# script or style), has every section with its figures, escapes what it quotes; with
# nothing run every section says "not run"; np=2 writes it from rank 0 alone. Then a
# real headless Chromium loads it: no console message at all, the inline script ran,
# its self-test (sort + filter of every table) passes, and a screenshot is kept in
# the run directory (docs/findings/report.png) and, with the page, in
# $TP_REPORT_ARTIFACTS (default: the test's working directory, cli_test_report/).
. "$(dirname "$0")/lib.sh"
MPIRUN=${MPIEXEC:-mpiexec}
SRC=${TP_SOURCE_DIR:?}
M=${TP_BUNDLED_MODEL:-$SRC/models/olmo2-tiny}
PY=/usr/bin/python3
R=$TMP/run
HTML=$R/docs/findings/report.html
check() {
  local name=$1; shift
  if "$@"; then passes=$((passes + 1)); echo "ok   $name"; else failures=$((failures + 1)); echo "FAIL $name"; fi
}
common=(--model "$M" --set data.corpus="$SRC/data/corpus/heldout.jsonl" --num-samples 24 --set data.seq_len=64
        --set forward.batch_size=4 --set capture.hooks=hook_resid_post --layers 1,2 --set sae.num_epochs=2
        --set sae.batch_size=256 --set sae.chunk_rows=128 --set sae.window_chunks=4 --set sae.hidden_dim=256
        --set sae.k=16 --set sae.aux_k=32 --set sae.eval.num_samples=2 --set circuits.heads.corpus_docs=4
        --set circuits.heads.synthetic=4 --set circuits.library.dir="$SRC/configs/circuits")

# nothing run yet: every section says so
mkdir -p "$TMP/empty"
expect_ok "report of an empty run" -- "$BIN" report --out "$TMP/empty"
check "empty run: 8 sections, each 'not run'" test "$(grep -c 'class="notrun">not run' "$TMP/empty/docs/findings/report.html")" = 8
expect_fail "report of a missing run directory" "no run directory" -- "$BIN" report --out "$TMP/nowhere"

for phase in inspect capture sae geometry circuits; do
  expect_ok "$phase" -- "$BIN" $phase "${common[@]}" --out "$R"
done
expect_ok "circuits trace" -- "$BIN" circuits trace "${common[@]}" --prompt "The cat sat on the mat. The cat <sat>" --out "$R"
mkdir -p "$R/docs/findings"
cat > "$R/results/verification.json" <<'JSON'
{"features": [{"hook": "blocks.1.hook_resid_post", "items": [{"feature": 0, "verified": true,
  "description": {"rule": "fires on <tags> & \"quotes\"", "detection": {"f1": 0.81}, "simulation": {"corr": 0.62}},
  "ablation": {"delta_ce": {"mean": 0.012, "ci95_low": 0.004, "ci95_high": 0.02, "n": 16}}, "steering": null}]}],
 "heads": [{"layer": 1, "head": 3, "class": "previous_token", "verified": true,
  "effect": {"mean": 0.21, "ci95_low": 0.12, "ci95_high": 0.3, "n": 32}}],
 "circuits": [{"task": "brackets", "verified": true, "faithfulness": 0.93, "completeness": 0.81}],
 "summary": {"claims": 3, "verified": 3}}
JSON
echo '{"transparency": {"score": 0.6180, "profile": {"features": 0.7, "heads": 0.55, "circuits": 0.6}}}' \
  > "$R/docs/findings/summary.json"
expect_ok "report (2 ranks)" -- timeout -s KILL 120 "$MPIRUN" -np 2 "$BIN" report --out "$R"
cp "$HTML" "$TMP/np2.html"
expect_ok "report" -- "$BIN" report --out "$R" --html "$TMP/other.html"
check "--html PATH writes there" test -s "$TMP/other.html"
check "np=2 and np=1 write the same page (but the time stamp)" \
  cmp -s <(sed 's/written [0-9-]* [0-9:]* UTC//' "$TMP/np2.html") <(sed 's/written [0-9-]* [0-9:]* UTC//' "$TMP/other.html")
cp "$TMP/other.html" "$HTML"

check "self-contained: sections, data: images, nothing fetched, escaped" $PY - "$HTML" <<'PY'
import re, sys
s = open(sys.argv[1], encoding="utf-8").read()
for sec in ("score", "geometry", "sae", "features", "heads", "attention", "circuits", "verification"):
    assert f'<section id="{sec}">' in s, sec
assert "not run" not in s, re.findall(r".{80}not run.{80}", s)[:3]
assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", s, re.I), "a network reference"
assert not re.search(r"<script[^>]+src", s, re.I) and not re.search(r"<link[^>]+stylesheet", s, re.I)
imgs = re.findall(r"<img[^>]*>", s)
assert len(imgs) >= 20, len(imgs)
for i in imgs:
    assert re.search(r'src="data:image/png;base64,[A-Za-z0-9+/]+=*"', i), i[:120]
for words in ("PCA spectrum", "intrinsic dimension per layer", "CE-loss recovered", "activation histogram",
              "top and bottom logits", "head-table", "feature-table", "Head-class grid", "layer 1: attention",
              "faithfulness curves", "circuit: brackets", "<svg", "0.618", "previous_token"):
    assert words in s, words
assert "fires on &lt;tags&gt; &amp; &quot;quotes&quot;" in s
assert "&quot; &lt;&quot;" in s and "<sat>" not in s   # the traced prompt's tokens (" <", "s", "at", ">") escaped
assert s.count("<mark>") >= 20                    # the activating token of each context
assert s.count('class="card"') >= 6
PY

# a real browser: Chromium, headless
CHROME=""
for c in chromium chromium-browser google-chrome; do command -v "$c" >/dev/null 2>&1 && { CHROME=$c; break; }; done
if [ -z "$CHROME" ] && [ "$(id -u)" = 0 ] && [ -x "$SRC/tools/install-deps.sh" ]; then
  "$SRC/tools/install-deps.sh" >/dev/null 2>&1 || true
  command -v chromium >/dev/null 2>&1 && CHROME=chromium
fi
if [ -z "$CHROME" ]; then
  echo "skipped: no chromium (tools/install-deps.sh installs Debian's chromium; it could not be installed here)"
else
  PNG=$R/docs/findings/report.png
  chrome() { timeout -s KILL 90 "$CHROME" --headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run \
               --user-data-dir="$TMP/chrome" --enable-logging=stderr --v=0 "$@"; }
  chrome --window-size=1400,9000 --screenshot="$PNG" "file://$HTML" >"$TMP/shot.out" 2>"$TMP/shot.err"
  check "chromium: screenshot written and not empty" test -s "$PNG"
  check "chromium: screenshot is a PNG of 1400 px width" $PY -c "
import struct, sys
b = open(sys.argv[1], 'rb').read(24)
assert b[:8] == b'\x89PNG\r\n\x1a\n' and struct.unpack('>I', b[16:20])[0] == 1400, b[:24]" "$PNG"
  chrome --dump-dom "file://$HTML#selftest" >"$TMP/dom.html" 2>"$TMP/dom.err"
  if grep -h ':CONSOLE' "$TMP/shot.err" "$TMP/dom.err"; then
    failures=$((failures + 1)); echo "FAIL chromium: console messages (above)"
  else passes=$((passes + 1)); echo "ok   chromium: no console message"; fi
  check "chromium: the inline script ran, no error recorded" \
    bash -c "grep -q 'data-script=\"done\"' '$TMP/dom.html' && ! grep -q 'data-errors=' '$TMP/dom.html'"
  check "chromium: sorting and filtering of every table (#selftest)" grep -q 'data-selftest="ok"' "$TMP/dom.html"
  grep -o 'data-selftest="[^"]*"' "$TMP/dom.html" | head -1
  keep=${TP_REPORT_ARTIFACTS:-$PWD/cli_test_report}
  mkdir -p "$keep" && cp "$HTML" "$PNG" "$keep/" && echo "page and screenshot kept in $keep"
fi
finish
