"""Train a `TokenDecoder` on a frozen target encoder's tokens: resumable, exact, atomic.

Each step decodes every image twice: all of its tokens (whole-image reconstruction) and,
one block at a time, the target blocks the run's own mask collator draws (what the explorer
decodes). Batches, masks and order come from seeded generators keyed by step, so a resumed
run replays exactly the steps an uninterrupted one takes.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console
from torch.utils.data import DataLoader, Dataset, Subset

from ijepa.atomic import atomic_save, remove_stale_temps, unwritable
from ijepa.data.loader import worker_errors
from ijepa.decoder.diffusion import GEN, DiffusionDecoder, diffusion_loss, roles
from ijepa.decoder.model import DecoderSpec, TokenDecoder, check_spec, layer_normed, save_payload
from ijepa.masks import MultiBlockMaskCollator, apply_masks
from ijepa.models.mae import patchify
from ijepa.models.vit import VisionTransformer
from ijepa.progress import progress_bar
from ijepa.rundir import RunError, RunLock
from ijepa.schedule import peak_held, warmup_cosine
from ijepa.training.data import EpochSampler
from ijepa.typedconfig import COUNT, NON_NEGATIVE, POSITIVE, checked


@dataclass
class DecoderTrainConfig:
    """Defaults sized for the Fashion-MNIST recipe on 2 CPU cores: 64k images (1.3 epochs),
    a step a third to a half of a pretraining step's time, the frozen encoder's forward most of it."""

    steps: int = checked(1000, COUNT)
    batch_size: int = checked(64, COUNT)
    width: int = checked(128, COUNT)
    depth: int = checked(2, COUNT)
    lr: float = checked(1e-3, POSITIVE)  # AdamW, linear warmup then cosine to 0
    warmup_steps: int = checked(100, NON_NEGATIVE)
    weight_decay: float = checked(0.05, NON_NEGATIVE)
    train_images: int = checked(0, NON_NEGATIVE)  # first N train images only (0: all)
    checkpoint_every: int = checked(250, COUNT)
    seed: int = 0
    num_workers: int = checked(0, NON_NEGATIVE)

    def check_resume(self, stored: dict, path: Path) -> None:
        """Only `steps`, `checkpoint_every` and `num_workers` may change on resume."""
        for f in fields(self):
            if f.name not in ("steps", "checkpoint_every", "num_workers") and stored.get(f.name) != getattr(self, f.name):
                raise RunError(f"{path}: {f.name} differs from the stored decoder run (given {getattr(self, f.name)!r}, "
                               f"stored {stored.get(f.name)!r}); only steps may change on --resume")


def lr_at(step: int, tc: DecoderTrainConfig) -> float:
    """Linear warm-up from 0 to tc.lr, then cosine to 0 at tc.steps (the eval heads' shape)."""
    return warmup_cosine(peak_held(step, tc.warmup_steps), total=tc.steps, warmup=tc.warmup_steps, ref=tc.lr)


def decoder_loss(decoder: TokenDecoder, tokens: torch.Tensor, imgs: torch.Tensor, masks: list[torch.Tensor]) -> torch.Tensor:
    """Mean of the whole-image and the per-block pixel MSE (normalised pixels)."""
    pix = patchify(imgs, decoder.spec.patch_size)
    full = torch.arange(tokens.size(1), device=tokens.device).expand(len(tokens), -1)
    whole = F.mse_loss(decoder(tokens, full), pix)
    blocks = F.mse_loss(decoder(apply_masks(tokens, masks), torch.cat(masks)), apply_masks(pix, masks))
    return (whole + blocks) / 2


class DecoderTrainer:
    """One decoder run in `out_dir` (`checkpoint.pt`), locked against a second writer."""

    def __init__(self, encoder: VisionTransformer, spec: DecoderSpec, dataset: Dataset, collator: MultiBlockMaskCollator,
                 out_dir: Path, tc: DecoderTrainConfig, *, device: torch.device, resume: bool = False) -> None:
        self.encoder, self.tc, self.device, self.out_dir = encoder.to(device).eval(), tc, device, Path(out_dir)
        self.ckpt_path = self.out_dir / "checkpoint.pt"
        if self.ckpt_path.exists() and not resume:
            raise FileExistsError(f"{self.ckpt_path}: a decoder run already exists here; pass --resume (or remove the folder to retrain)")
        self.lock = RunLock(self.out_dir).acquire()
        try:
            self._setup(dataset, collator, spec)
        except BaseException:
            self.lock.release()
            raise

    def _setup(self, dataset: Dataset, collator: MultiBlockMaskCollator, spec: DecoderSpec) -> None:
        tc = self.tc
        remove_stale_temps(self.out_dir)
        if tc.train_images:
            dataset = Subset(dataset, range(min(tc.train_images, len(dataset))))
        self.dataset, self.collator = dataset, collator
        self.sampler = EpochSampler(len(dataset), batch_size=tc.batch_size, rank=0, world_size=1, seed=tc.seed)
        self.ipe = self.sampler.per_rank // tc.batch_size
        torch.manual_seed(tc.seed)
        self.decoder = self.build_decoder(spec).to(self.device)
        params = [p for p in self.decoder.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(params, lr=tc.lr, betas=(0.9, 0.95), weight_decay=tc.weight_decay)
        self.step, self.losses, self.saved = 0, [], None  # saved: the step of the checkpoint on disk
        if self.ckpt_path.exists():
            self._load(spec)

    def _load(self, spec: DecoderSpec) -> None:
        s = torch.load(self.ckpt_path, map_location="cpu", weights_only=True)
        check_spec(DecoderSpec.from_dict(s["spec"]), spec, self.ckpt_path)
        self.tc.check_resume(s["train_config"], self.ckpt_path)
        self.decoder.load_state_dict(s["decoder"])
        self.opt.load_state_dict(s["opt"])
        self.step, self.losses = s["step"], [tuple(r) for r in s["losses"]]
        self.saved = self.step

    def save(self) -> None:
        """Write checkpoint.pt atomically: a full disk or a read-only folder is one line, and the
        last checkpoint written stays whole."""
        state = {**save_payload(self.decoder), "opt": self.opt.state_dict(), "step": self.step,
                 "losses": self.losses, "train_config": asdict(self.tc)}
        try:
            atomic_save(state, self.ckpt_path)
        except OSError as e:
            kept = "no checkpoint was written" if self.saved is None else f"last good checkpoint: step {self.saved} ({self.ckpt_path})"
            raise RunError(f"{unwritable(self.ckpt_path, 'the decoder checkpoint', e)}; {kept}") from None
        self.saved = self.step

    def _batches(self):
        """(imgs, context masks, target masks) from the current step on, across epochs."""
        while True:
            epoch, offset = divmod(self.step, self.ipe)
            self.sampler.set_epoch(epoch, offset)
            self.collator.set_epoch(epoch, offset)
            loader = DataLoader(self.dataset, batch_size=self.tc.batch_size, sampler=self.sampler, collate_fn=self.collator,
                                num_workers=self.tc.num_workers, drop_last=True)
            for (imgs, _), masks_enc, masks_pred in worker_errors(loader):
                yield imgs.to(self.device), [m.to(self.device) for m in masks_enc], [m.to(self.device) for m in masks_pred]

    def fit(self, console: Console | None = None, *, description: str = "decoder") -> TokenDecoder:
        """Train to `tc.steps` (checkpointing on the way) and release the directory."""
        try:
            bar = progress_bar(console or Console(stderr=True), console is not None)
            task = bar.add_task(description, total=self.tc.steps, completed=self.step, info="")
            t0, seen = time.perf_counter(), 0
            with bar:
                for imgs, masks_enc, masks in self._batches() if self.step < self.tc.steps else ():
                    loss = self._train_step(imgs, masks_enc, masks)
                    self.step, seen = self.step + 1, seen + len(imgs)
                    if self.step % 10 == 0 or self.step == self.tc.steps:
                        self.losses.append((self.step, loss))
                        bar.update(task, completed=self.step, info=f"loss {loss:.4f} {seen / (time.perf_counter() - t0):.0f} img/s")
                    if self.step % self.tc.checkpoint_every == 0 or self.step >= self.tc.steps:
                        self.save()
                    if self.step >= self.tc.steps:
                        break
        finally:
            self.lock.release()
        return self.decoder.eval()

    def build_decoder(self, spec: DecoderSpec) -> TokenDecoder:
        return TokenDecoder(spec, width=self.tc.width, depth=self.tc.depth)

    def loss(self, tokens: torch.Tensor, imgs: torch.Tensor, masks_enc: list[torch.Tensor], masks: list[torch.Tensor]) -> torch.Tensor:
        return decoder_loss(self.decoder, tokens, imgs, masks)

    def _train_step(self, imgs: torch.Tensor, masks_enc: list[torch.Tensor], masks: list[torch.Tensor]) -> float:
        for g in self.opt.param_groups:
            g["lr"] = lr_at(self.step, self.tc)
        with torch.no_grad():
            tokens = layer_normed(self.encoder(imgs))
        self.decoder.train()
        loss = self.loss(tokens, imgs, masks_enc, masks)
        if not torch.isfinite(loss):
            raise RunError(f"decoder loss is not finite at step {self.step}; last checkpoint: {self.ckpt_path}")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return float(loss.detach())


@dataclass
class DiffusionTrainConfig(DecoderTrainConfig):
    """The diffusion decoder's defaults: the same budget (1000 steps of 64 images), twice the
    depth (one 64-patch sequence per image instead of the whole image plus each target block)."""

    depth: int = checked(4, COUNT)
    whole_image: float = 0.25  # fraction of images that generate every patch from all tokens; the rest, one target block

    def __post_init__(self) -> None:
        if not 0.0 <= self.whole_image <= 1.0:
            raise ValueError(f"whole_image={self.whole_image}: expected a fraction in [0, 1]")


class DiffusionTrainer(DecoderTrainer):
    """A `DiffusionDecoder` trained by `DecoderTrainer`'s loop; its noise is seeded by step, so
    a resumed run replays exactly the steps an uninterrupted one takes."""

    def build_decoder(self, spec: DecoderSpec) -> DiffusionDecoder:
        return DiffusionDecoder(spec, width=self.tc.width, depth=self.tc.depth)

    def loss(self, tokens: torch.Tensor, imgs: torch.Tensor, masks_enc: list[torch.Tensor], masks: list[torch.Tensor]) -> torch.Tensor:
        g = torch.Generator(self.device).manual_seed(self.tc.seed * 1_000_003 + self.step)
        pix = patchify(imgs, self.decoder.spec.patch_size)
        return diffusion_loss(self.decoder, tokens, pix, training_roles(tokens.size(1), masks_enc[0], masks, self.tc.whole_image, g), g)


def training_roles(n: int, context: torch.Tensor, masks: list[torch.Tensor], whole: float, g: torch.Generator) -> torch.Tensor:
    """[B, N] roles per image: everything generated (a `whole` fraction), else one of its target
    blocks generated from its tokens with the context patches known, as the explorer decodes."""
    b, dev = len(context), context.device
    pick = torch.randint(len(masks), (b,), generator=g, device=dev)
    block = torch.stack(masks)[pick, torch.arange(b, device=dev)]  # [B, K]
    role = roles(n, block, context)
    all_gen = torch.rand(b, generator=g, device=dev) < whole
    return torch.where(all_gen[:, None], torch.full_like(role, GEN), role)
