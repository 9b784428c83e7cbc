#!/usr/bin/env bash
# Optional OpenMMLab backend for `evals/mmdet_*.py` / `evals/mmseg_*.py`: mmengine, mmcv 2.1
# (built from source, patched), mmdet 3.3, mmsegmentation 1.2. NOT needed for
# `ijepa eval detection` / `ijepa eval segmentation`, and not run by CI.
#
# Why a patched source build: mmdet 3.3 requires mmcv < 2.2, and there are no mmcv 2.1 wheels
# for current torch. Building it on torch 2.14 fails unless mmcv's setup.py asks for
# -std=c++20 instead of -std=c++17 (torch's headers need C++20); it needs setuptools < 81
# (pkg_resources) and --no-build-isolation (it compiles against the installed torch). About
# 20 minutes on 2 cores (MAX_JOBS below). mmseg also imports ftfy and regex at run time, and
# mmengine loads checkpoints with torch.load, which on torch >= 2.6 needs
# TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 (export it before training/testing).
#
# Usage: scripts/install_mm.sh [VENV]   (default .venv); afterwards `pytest tests/test_mm.py`
# runs the tests that otherwise skip.
set -euo pipefail

VENV=${1:-.venv}
PIP="$VENV/bin/python -m pip"
MMCV_VERSION=2.1.0
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

$PIP install "setuptools<81" wheel ninja
$PIP install "mmengine>=0.10,<1"

# mmcv 2.1.0 from its source distribution, C++ standard switched to C++20 (its setup.py asks
# for C++17, cxx and nvcc alike, on recent torch; torch 2.14's headers need C++20).
# (pip prepares sdist metadata with the installed torch + setuptools<81, hence no isolation)
$PIP download --no-deps --no-build-isolation --no-binary :all: "mmcv==$MMCV_VERSION" -d "$WORK"
tar -xzf "$WORK/mmcv-$MMCV_VERSION.tar.gz" -C "$WORK"
SRC="$WORK/mmcv-$MMCV_VERSION"
grep -q -- '-std=c++17' "$SRC/setup.py" || { echo "mmcv setup.py has no -std=c++17 to patch" >&2; exit 1; }
sed -i 's/-std=c++17/-std=c++20/g' "$SRC/setup.py"
MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-2} $PIP install --no-build-isolation -v "$SRC"

$PIP install "mmdet==3.3.0" "mmsegmentation==1.2.2" ftfy regex

TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 "$VENV/bin/python" - <<'PY'
import mmcv, mmdet, mmseg
from mmcv.ops import RoIAlign  # the compiled ops load
from ijepa.evals.mm.backbone import register
print("mmcv", mmcv.__version__, "mmdet", mmdet.__version__, "mmseg", mmseg.__version__, "registered in", register())
PY
echo "done: export TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 before using mmengine checkpoints"
