"""A conditional diffusion decoder (RCDM-like): several pixel samples for one set of tokens.

The deterministic `TokenDecoder` paints the average of what the tokens leave open; this one
draws from it. A small transformer over the whole patch grid denoises the patches to
generate, given per patch its noisy pixels, its layer-normed target-encoder token, its
position and the time; the context patches enter as known clean pixels without a token
(inpainting by conditioning), every other patch as empty. Trained, like the deterministic
decoder, on the frozen target encoder's tokens only: v-prediction (Salimans & Ho 2022) under
the continuous cosine schedule alpha = cos(pi t / 2), sigma = sin(pi t / 2); sampled with
DDIM (eta 0) in a few steps, so the seed of the starting noise fixes a sample.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ijepa.decoder.model import DecoderSpec, attention_heads, decoder_dir, read_decoder_checkpoint
from ijepa.models.pos_embed import sincos_2d
from ijepa.models.vit import init_weights, make_blocks

GEN, KNOWN, EMPTY = 0, 1, 2  # a patch's role: to generate (token given), known pixels, nothing


def alpha_sigma(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Signal and noise scales at time t in [0, 1] (cosine schedule, alpha^2 + sigma^2 = 1)."""
    return torch.cos(0.5 * math.pi * t), torch.sin(0.5 * math.pi * t)


def time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """[B] times in [0, 1] -> [B, dim] sinusoids (of 1000 t, as DDPM's integer steps)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = 1000.0 * t.float()[:, None] * freqs[None]
    return torch.cat([args.sin(), args.cos()], dim=-1)


class DiffusionDecoder(nn.Module):
    """(x_in [B, N, P], tokens [B, N, D], role [B, N], t [B]) -> predicted v [B, N, P]."""

    kind = "diffusion"

    def __init__(self, spec: DecoderSpec, *, width: int = 128, depth: int = 4, num_heads: int | None = None,
                 mlp_ratio: float = 4.0) -> None:
        super().__init__()
        heads = attention_heads(width, depth, num_heads, what="diffusion decoder")
        self.spec, self.width, self.depth, self.num_heads = spec, width, depth, heads
        p = spec.patch_size ** 2 * spec.in_chans
        self.pix = nn.Linear(p, width)
        self.tok = nn.Linear(spec.embed_dim, width)
        self.role = nn.Embedding(3, width)
        self.time = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, width))
        self.pos_embed = nn.Parameter(sincos_2d(width, *spec.grid).unsqueeze(0), requires_grad=False)
        self.blocks = make_blocks(width, depth, heads, mlp_ratio, 0.0)
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.head = nn.Linear(width, p)
        for m in (self.pix, self.tok, self.time, self.blocks, self.norm, self.head):
            m.apply(init_weights)
        nn.init.normal_(self.role.weight, std=0.02)

    def forward(self, x_in: torch.Tensor, tokens: torch.Tensor, role: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        gen = (role == GEN).unsqueeze(-1).to(x_in.dtype)
        x = self.pix(x_in) + gen * self.tok(tokens) + self.role(role) + self.pos_embed
        x = x + self.time(time_embedding(t, self.width)).unsqueeze(1)
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x))

    def hparams(self) -> dict:
        return {"width": self.width, "depth": self.depth, "num_heads": self.num_heads}


def diffusion_dir(run: str | Path) -> Path:
    """`RUN/decoder/diffusion/`, beside the deterministic decoder."""
    return decoder_dir(run) / "diffusion"


def pixel_range(spec: DecoderSpec, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised values of pixel 0 and 1 per patch value [P] (patchify order: channel last)."""
    mean, std = torch.tensor(spec.mean, device=device), torch.tensor(spec.std, device=device)
    reps = spec.patch_size ** 2
    return ((0 - mean) / std).repeat(reps), ((1 - mean) / std).repeat(reps)


def roles(n: int, gen_idx: torch.Tensor, known_idx: torch.Tensor | None) -> torch.Tensor:
    """[B, N] roles: GEN at gen_idx [B, K], KNOWN at known_idx [B, Kc] (unless also GEN), else EMPTY."""
    role = torch.full((len(gen_idx), n), EMPTY, dtype=torch.long, device=gen_idx.device)
    if known_idx is not None:
        role.scatter_(1, known_idx, KNOWN)
    return role.scatter_(1, gen_idx, GEN)


def _inputs(x_t: torch.Tensor, x0_known: torch.Tensor, role: torch.Tensor) -> torch.Tensor:
    """Noisy pixels where generated, clean pixels where known, zeros elsewhere."""
    r = role.unsqueeze(-1)
    return torch.where(r == GEN, x_t, torch.where(r == KNOWN, x0_known, torch.zeros_like(x_t)))


def diffusion_loss(decoder: DiffusionDecoder, tokens: torch.Tensor, pix: torch.Tensor, role: torch.Tensor,
                   generator: torch.Generator) -> torch.Tensor:
    """v-prediction MSE on the GEN patches (tokens [B, N, D], true patches pix [B, N, P])."""
    b, dev = len(pix), pix.device
    t = torch.rand(b, generator=generator, device=dev)
    eps = torch.randn(pix.shape, generator=generator, device=dev)
    a, s = (v.view(b, 1, 1) for v in alpha_sigma(t))
    v_pred = decoder(_inputs(a * pix + s * eps, pix, role), tokens, role, t)
    gen = (role == GEN).unsqueeze(-1).to(pix.dtype)
    return ((v_pred - (a * eps - s * pix)).pow(2) * gen).sum() / (gen.sum() * pix.size(-1))


def _repeat(x: torch.Tensor | None, n: int) -> torch.Tensor | None:
    """n copies along the batch, sample-major (row s * B + b is sample s of item b)."""
    return None if x is None else x.repeat(n, *([1] * (x.dim() - 1)))


@torch.no_grad()
def sample(decoder: DiffusionDecoder, tokens: torch.Tensor, idx: torch.Tensor, *, n_samples: int = 4, steps: int = 25,
           known_pix: torch.Tensor | None = None, known_idx: torch.Tensor | None = None,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """`n_samples` pixel samples [S, B, K, P] of the patches idx [B, K] from tokens [B, K, D].

    Context patches known_idx [B, Kc] with their true pixels known_pix [B, N, P] (normalised,
    the whole grid; only the known ones are read) condition every step. DDIM, eta 0: the
    starting noise, drawn from `generator`, fixes each sample.
    """
    if steps < 1 or n_samples < 1:
        raise ValueError(f"steps={steps}, n_samples={n_samples}: expected both >= 1")
    spec, dev = decoder.spec, tokens.device
    n, p, b = spec.grid[0] * spec.grid[1], spec.patch_size ** 2 * spec.in_chans, len(tokens)
    idx_r, known_idx_r = _repeat(idx, n_samples), _repeat(known_idx, n_samples)
    role = roles(n, idx_r, known_idx_r)
    full_tok = torch.zeros(b * n_samples, n, tokens.size(-1), device=dev, dtype=tokens.dtype)
    full_tok.scatter_(1, idx_r.unsqueeze(-1).expand(-1, -1, tokens.size(-1)), _repeat(tokens, n_samples))
    x0_known = _repeat(known_pix, n_samples) if known_pix is not None else torch.zeros(b * n_samples, n, p, device=dev)
    lo, hi = pixel_range(spec, dev)
    x = torch.randn(b * n_samples, n, p, generator=generator, device=dev)
    times = torch.linspace(1.0, 0.0, steps + 1, device=dev)
    for t, s in zip(times[:-1], times[1:], strict=True):
        a_t, s_t = alpha_sigma(t)
        v = decoder(_inputs(x, x0_known, role), full_tok, role, t.expand(len(x)))
        x0 = torch.maximum(torch.minimum(a_t * x - s_t * v, hi), lo)
        eps = (x - a_t * x0) / s_t if s_t > 0 else torch.zeros_like(x)
        a_s, s_s = alpha_sigma(s)
        x = a_s * x0 + s_s * eps
    out = torch.gather(x, 1, idx_r.unsqueeze(-1).expand(-1, -1, p))
    return out.view(n_samples, b, idx.size(1), p)


def load_diffusion_decoder(path: str | Path, wanted: DecoderSpec | None = None) -> DiffusionDecoder:
    """A trained diffusion decoder (run dir, its `decoder/diffusion/`, or the file); refused if not for `wanted`."""
    path = Path(path)
    if path.is_dir():
        for cand in (path / "decoder" / "diffusion", path / "diffusion", path):
            if (cand / "checkpoint.pt").is_file():
                path = cand / "checkpoint.pt"
                break
    ckpt, spec = read_decoder_checkpoint(path, wanted, kind=DiffusionDecoder.kind,
                                         how="`ijepa decoder train RUN --kind diffusion`")
    dec = DiffusionDecoder(spec, **ckpt["hparams"])
    dec.load_state_dict(ckpt["decoder"])
    return dec.eval().requires_grad_(False)


def mse_per_block(samples: torch.Tensor, pix: torch.Tensor) -> torch.Tensor:
    """[S, M] pixel MSE of each sample of each block vs the truth pix [M, K, P]."""
    return F.mse_loss(samples, pix.expand_as(samples), reduction="none").mean((2, 3))
