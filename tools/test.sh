#!/usr/bin/env bash
# The test command of the README: installs what is missing, builds with warnings as
# errors, and runs the whole test suite (unit, MPI with 2 and 4 ranks, CLI).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/tools/install-deps.sh"
TP_BUILD_DIR=${TP_BUILD_DIR:-$root/build} "$root/tools/build.sh" -DTP_WERROR=ON
cd "${TP_BUILD_DIR:-$root/build}"
ctest --output-on-failure -j"$(nproc)" "$@"
