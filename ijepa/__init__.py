"""I-JEPA pretraining, evaluation and benchmarks.

`load_encoder` is exported lazily (PEP 562): importing `ijepa` (and so `ijepa --help`)
does not pay for torch, timm and torchvision until an encoder is loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ijepa.models.checkpoint import load_encoder

__all__ = ["load_encoder"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "load_encoder":
        from ijepa.models.checkpoint import load_encoder

        return load_encoder
    raise AttributeError(f"module 'ijepa' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
