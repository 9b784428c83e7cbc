"""I-JEPA pretraining, evaluation and benchmarks.

`load_encoder` is exported lazily (PEP 562): importing `ijepa` (and so `ijepa --help`)
does not pay for torch, timm and torchvision until an encoder is loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ijepa.models.load import load_encoder

__all__ = ["load_encoder"]
__version__ = "0.1.0"


def _head_commit() -> str | None:
    """The commit of the checkout this package runs from, read once at import (about 4 ms):
    records name the code that ran, not a commit made while a long run went on. None outside
    a git checkout (an installed wheel: records then give `__version__`)."""
    import subprocess
    from pathlib import Path

    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


COMMIT_AT_START = _head_commit()


def __getattr__(name: str) -> Any:
    if name == "load_encoder":
        from ijepa.models.load import load_encoder

        return load_encoder
    raise AttributeError(f"module 'ijepa' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
