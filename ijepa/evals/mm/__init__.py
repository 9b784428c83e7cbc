"""Optional OpenMMLab backend (mmdet 3.3 / mmsegmentation 1.2): our encoder + pyramid as a
registered backbone, for the configs in `evals/mmdet_*.py` and `evals/mmseg_*.py`.

Nothing here imports mm* at import time. The configs' `custom_imports` name
`ijepa.evals.mm.plugin`, whose import registers the backbone; `scripts/install_mm.sh`
documents the patched mmcv 2.1 build these packages need on torch >= 2.6.
"""

from __future__ import annotations

import importlib.util


def available() -> list[str]:
    """The OpenMMLab packages importable here (of mmengine, mmdet, mmseg)."""
    return [p for p in ("mmengine", "mmdet", "mmseg") if importlib.util.find_spec(p) is not None]
