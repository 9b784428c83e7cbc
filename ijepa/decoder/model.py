"""A pixel decoder for I-JEPA tokens, and the identity that ties it to one encoder.

It reads layer-normed target-encoder tokens (the space the predictor is trained to hit) at
any set of patches and paints those patches only; attention runs among the given tokens, so
decoding a target block sees that block's tokens and nothing else. Trained on the frozen
target encoder alone, it never sees a predictor output: decoding a prediction shows what
the prediction holds, not what a decoder was taught to paint for predictions.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ijepa.masks.apply import apply_masks
from ijepa.models.checkpoint import locate
from ijepa.models.pos_embed import sincos_2d
from ijepa.models.vit import VisionTransformer, init_weights, make_blocks


@dataclass(frozen=True)
class DecoderSpec:
    """What a decoder was trained for; another encoder, grid or width is refused."""

    run: str  # the run (or checkpoint) whose target encoder made the tokens
    encoder_sha256: str  # of the target encoder's weights: a resumed run is another encoder
    grid: tuple[int, int]
    patch_size: int
    in_chans: int
    embed_dim: int
    mean: tuple[float, ...]  # pixel normalisation the targets (and the encoder) use
    std: tuple[float, ...]

    def describe(self) -> str:
        return (f"grid {self.grid[0]}x{self.grid[1]}, patch {self.patch_size}, width {self.embed_dim}, "
                f"target encoder {self.encoder_sha256[:12]}")

    @classmethod
    def from_dict(cls, d: dict) -> DecoderSpec:
        return cls(**{**d, "grid": tuple(d["grid"]), "mean": tuple(d["mean"]), "std": tuple(d["std"])})


def encoder_sha256(encoder: nn.Module) -> str:
    """Hash of the weights (names, shapes, float32 bytes): the same weights, the same hash."""
    h = hashlib.sha256()
    for name, t in sorted(encoder.state_dict().items()):
        h.update(f"{name}:{tuple(t.shape)}".encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def spec_for(encoder: VisionTransformer, run: str, mean: tuple[float, ...], std: tuple[float, ...]) -> DecoderSpec:
    """The identity of `encoder`; statistics averaged to its channels, as `to_model_input` does."""
    if len(mean) != encoder.in_chans:
        mean, std = (sum(mean) / len(mean),) * encoder.in_chans, (sum(std) / len(std),) * encoder.in_chans
    return DecoderSpec(run=str(run), encoder_sha256=encoder_sha256(encoder), grid=tuple(encoder.grid),
                       patch_size=encoder.patch_size, in_chans=encoder.in_chans, embed_dim=encoder.embed_dim,
                       mean=tuple(mean), std=tuple(std))


def check_spec(stored: DecoderSpec, wanted: DecoderSpec, path: str | Path) -> None:
    """One-line ValueError when a decoder was trained for another encoder, grid or width."""
    if stored.encoder_sha256 != wanted.encoder_sha256 or stored.grid != wanted.grid or stored.embed_dim != wanted.embed_dim:
        raise ValueError(f"{path}: decoder trained for {stored.run} ({stored.describe()}), not for {wanted.run} "
                         f"({wanted.describe()}); train one with `ijepa decoder train {wanted.run}`")


def layer_normed(tokens: torch.Tensor) -> torch.Tensor:
    """The training target's normalisation (no affine), which the predictor's outputs imitate."""
    return F.layer_norm(tokens, (tokens.size(-1),))


def attention_heads(width: int, depth: int, num_heads: int | None, *, what: str) -> int:
    """A decoder's heads (width / 64 unless given), refused in one line for a shape its ViT
    blocks and 2-d sin-cos positions cannot take."""
    heads = num_heads or max(1, width // 64)
    if width % heads or width % 4 or depth < 1:
        raise ValueError(f"{what} width {width}, depth {depth}: expected a width divisible by 4 and {heads} heads, depth >= 1")
    return heads


class TokenDecoder(nn.Module):
    """Tokens [B, K, D] at patches idx [B, K] -> those patches' normalised pixels [B, K, p*p*C]."""

    kind = "mean"  # the mean of what the tokens leave open (see `ijepa.decoder.diffusion` for samples)

    def __init__(self, spec: DecoderSpec, *, width: int = 128, depth: int = 2, num_heads: int | None = None,
                 mlp_ratio: float = 4.0) -> None:
        super().__init__()
        heads = attention_heads(width, depth, num_heads, what="decoder")
        self.spec, self.width, self.depth, self.num_heads = spec, width, depth, heads
        p, c = spec.patch_size, spec.in_chans
        self.embed = nn.Linear(spec.embed_dim, width)
        self.pos_embed = nn.Parameter(sincos_2d(width, *spec.grid).unsqueeze(0), requires_grad=False)
        self.blocks = make_blocks(width, depth, heads, mlp_ratio, 0.0)
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.head = nn.Linear(width, p * p * c)
        for m in (self.embed, self.blocks, self.norm, self.head):
            m.apply(init_weights)

    def forward(self, tokens: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        pos = apply_masks(self.pos_embed.expand(len(tokens), -1, -1), [idx])
        x = self.embed(tokens) + pos
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x))

    def hparams(self) -> dict:
        return {"width": self.width, "depth": self.depth, "num_heads": self.num_heads}


def save_payload(decoder: nn.Module) -> dict:
    """A decoder's weights and what rebuilds it (`kind`: "mean", or "diffusion")."""
    return {"decoder": decoder.state_dict(), "spec": asdict(decoder.spec), "hparams": decoder.hparams(), "kind": decoder.kind}


def decoder_dir(run: str | Path) -> Path:
    """`RUN/decoder/` for a run directory; `NAME-decoder/` beside any other checkpoint file."""
    file = locate(run)[0]
    return file.parent / ("decoder" if file.name == "checkpoint.pt" else f"{file.stem}-decoder")


def read_decoder_checkpoint(path: Path, wanted: DecoderSpec | None, *, kind: str, how: str) -> tuple[dict, DecoderSpec]:
    """(checkpoint, spec) of a decoder file of `kind`; one-line errors for a missing, foreign,
    other-kind or other-encoder file."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: decoder not found (train one with {how})")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        spec = DecoderSpec.from_dict(ckpt["spec"])
        ckpt["hparams"]  # noqa: B018 (present in every decoder checkpoint)
    except Exception as e:  # a foreign or truncated file: many error types
        raise ValueError(f"{path}: not a decoder checkpoint ({e.__class__.__name__}: {e})") from None
    if ckpt.get("kind", "mean") != kind:
        raise ValueError(f"{path}: a {ckpt.get('kind', 'mean')} decoder, not a {kind} one")
    if wanted is not None:
        check_spec(spec, wanted, path)
    return ckpt, spec


def load_decoder(path: str | Path, wanted: DecoderSpec | None = None) -> TokenDecoder:
    """A trained decoder (run dir's `decoder/checkpoint.pt`, or the file); refused if not for `wanted`."""
    path = Path(path)
    if path.is_dir():
        path = path / "decoder" / "checkpoint.pt" if (path / "decoder").is_dir() else path / "checkpoint.pt"
    ckpt, spec = read_decoder_checkpoint(path, wanted, kind=TokenDecoder.kind, how="`ijepa decoder train RUN`")
    dec = TokenDecoder(spec, **ckpt["hparams"])
    dec.load_state_dict(ckpt["decoder"])
    return dec.eval().requires_grad_(False)


def to_unit_pixels(x: torch.Tensor, spec: DecoderSpec) -> torch.Tensor:
    """Normalised pixels [B, C, H, W] -> [0, 1], as the page and SSIM see them."""
    mean = torch.tensor(spec.mean, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, device=x.device).view(1, -1, 1, 1)
    return (x * std + mean).clamp(0, 1)
