"""I-JEPA pretraining, evaluation and benchmarks."""

from ijepa.models.checkpoint import load_encoder

__all__ = ["load_encoder"]
__version__ = "0.1.0"
