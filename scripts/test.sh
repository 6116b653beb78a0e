#!/usr/bin/env bash
# The whole test suite: installs and builds (scripts/setup.sh), then runs ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cd build
ctest --output-on-failure -j "${UPDP_TEST_JOBS:-2}" "$@"
