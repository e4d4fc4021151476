#!/usr/bin/env bash
# Rebuild data/corpus/ (train.jsonl, heldout.jsonl, STATS.md, SOURCES.md) from
# Debian 12 packages: KJV Bible, fortunes, WordNet, the Python docs, the Linux
# man-pages and the Python standard library.  Deterministic: the same installed
# package versions give byte-identical output.
#
#   tools/corpus/build.sh [--no-install] [--out DIR] [--jobs N]
#
# Installs missing packages with apt-get (needs root, or sudo).  Uses Debian's
# /usr/bin/python3 with the standard library only.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$root/data/corpus"
install=1
jobs=2

while [ $# -gt 0 ]; do
  case "$1" in
    --no-install) install=0 ;;
    --out) out="$2"; shift ;;
    --jobs) jobs="$2"; shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

PY=/usr/bin/python3
if [ ! -x "$PY" ]; then
  echo "need Debian's $PY (apt-get install python3)" >&2; exit 1
fi
pyver="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"

packages=(
  bible-kjv bible-kjv-text            # scripture
  fortunes fortunes-min               # quotations
  wordnet-base                        # dictionary
  python3-doc "python${pyver}-doc"    # technical_docs
  man-db groff-base manpages manpages-dev   # manpages
  "libpython${pyver}-stdlib" "libpython${pyver}-minimal"  # code
)

missing=()
for p in "${packages[@]}"; do
  if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)" != "installed" ]; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$install" -eq 0 ]; then
    echo "missing packages: ${missing[*]} (run without --no-install)" >&2; exit 1
  fi
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "[corpus] installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  if ! $sudo apt-get install -y --no-install-recommends "${missing[@]}"; then
    $sudo apt-get update
    $sudo apt-get install -y --no-install-recommends "${missing[@]}"
  fi
fi

# Minimal container images often tell dpkg not to unpack docs and man pages.
for f in /usr/share/man/man2/open.2.gz \
         "/usr/share/doc/python${pyver}/html/library/json.html" \
         /usr/share/doc/wordnet-base/copyright; do
  if [ ! -e "$f" ]; then
    echo "missing $f although its package is installed: check /etc/dpkg/dpkg.cfg.d/ for" \
         "path-exclude rules, remove them and 'apt-get install --reinstall' the packages" >&2
    exit 1
  fi
done

mkdir -p "$out"
cd "$root"
exec env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 TZ=UTC PYTHONHASHSEED=0 \
  PYTHONDONTWRITEBYTECODE=1 \
  nice -n 10 "$PY" "$here/build_corpus.py" --out "$out" --jobs "$jobs"
