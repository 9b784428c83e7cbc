"""Render I-JEPA tokens as pixels: a decoder trained on the frozen target encoder only.

`ijepa decoder train RUN` trains it (and the same decoder on a random-init encoder's tokens,
the baseline), `ijepa decoder measure RUN` scores decoded predictions; `ijepa explore RUN`
then draws what the predictor predicts for each target block. `--kind diffusion` trains the
generative option, `DiffusionDecoder`, which draws several samples per prediction.
"""

from ijepa.decoder.diffusion import DiffusionDecoder, load_diffusion_decoder, sample
from ijepa.decoder.model import DecoderSpec, TokenDecoder, check_spec, load_decoder, spec_for
from ijepa.decoder.train import (
           DecoderTrainConfig,
           DecoderTrainer,
           DiffusionTrainConfig,
           DiffusionTrainer,
)

__all__ = ["DecoderSpec", "DecoderTrainConfig", "DecoderTrainer", "DiffusionDecoder", "DiffusionTrainConfig", "DiffusionTrainer",
           "TokenDecoder", "check_spec", "load_decoder", "load_diffusion_decoder", "sample", "spec_for"]
