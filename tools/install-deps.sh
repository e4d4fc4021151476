#!/usr/bin/env bash
# Installs every Debian package that the build, the tests and the main job need on a
# fresh Debian 12 machine. Idempotent: installs only what is missing.
#   usage: tools/install-deps.sh        (as root, or with sudo available)
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libopenmpi-dev openmpi-bin
  libhdf5-openmpi-dev
  libscalapack-openmpi-dev
  libopenblas-dev liblapacke-dev
  libyaml-dev libjansson-dev libpcre2-dev
  check
  clang libclang-rt-14-dev    # the fuzz targets (tools/fuzz.sh): clang 14 and its libFuzzer runtime (libclang_rt.fuzzer)
  libgraphviz-dev             # circuit graphs rendered to SVG (libgvc, dot layout)
  libcairo2-dev fonts-dejavu-core   # the HTML report's figures (PNG) and their labels
  chromium                    # tests: the report loaded in a headless browser (no console error, a screenshot)
  python3-h5py python3-numpy   # tests read the activation store as users' tools do
  python3-jsonschema          # test_document validates the documentation against its JSON Schema
  slurm-wlm munge             # tests: job chains submitted to a one-node Slurm on this machine (tools/slurm-local.sh)
  valgrind                    # valgrind.test_forward: memcheck on the forward test (docs/sanitizers.md; pulls in libc6-dbg)
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-deps: done"
