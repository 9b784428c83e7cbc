"""Where a loaded encoder came from (`VisionTransformer.source`), as timm models carry their
`pretrained_cfg`: a plain value, imported by the model and by the loader that fills it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class EncoderSource:
    """Where `load_encoder` read an encoder: the weights file, its format ("torch", "hf" or
    "timm"), the checkpoint key read ("target_encoder" or "encoder") and `weights_digest` of the
    weights as loaded."""

    file: Path
    format: str
    which: str
    digest: str

    @property
    def key(self) -> str:
        """`DIGEST16-which`, the records' `encoder_key` of these weights (an eval appends its tags)."""
        return f"{self.digest[:16]}-{self.which}"
