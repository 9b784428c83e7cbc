"""One exploring session: a model, its images, and the answers the page asks for.

The server and the static export both call `Explorer`; only how they deliver the PNGs
differs (data URIs vs files).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ijepa.explore import render
from ijepa.explore.analysis import (
    MaskSettings,
    analyse,
    nearest,
    pca_rgb,
    pooled_features,
    sample_masks,
)
from ijepa.explore.images import (
    ImageItem,
    decode_image,
    fashion_mnist_items,
    folder_items,
    sample_photo_items,
    square_crop,
    to_model_input,
    to_rgb,
)
from ijepa.explore.model import ExploreModel, load_explore_model, random_explore_model
from ijepa.training.config import load_config

THUMB_PX = 64
# Query-string names of the settings (the page's form uses the same names).
PAIR_KEYS = {"enc_scale": "enc_mask_scale", "pred_scale": "pred_mask_scale", "aspect": "aspect_ratio"}


def settings_from_query(query: dict[str, str], defaults: MaskSettings) -> MaskSettings:
    """`enc_scale=0.85,1&pred_scale=..&aspect=..&npred=4&min_keep=4&overlap=0` over defaults."""
    changes: dict = {}
    for key, field in PAIR_KEYS.items():
        if key in query:
            try:
                lo, hi = (float(v) for v in query[key].split(","))
            except ValueError:
                raise ValueError(f"{key}: expected two numbers 'min,max', got {query[key]!r}") from None
            changes[field] = (lo, hi)
    for key, field in (("npred", "npred"), ("min_keep", "min_keep")):
        if key in query:
            try:
                changes[field] = int(query[key])
            except ValueError:
                raise ValueError(f"{key}: expected an integer, got {query[key]!r}") from None
    if "overlap" in query:
        changes["allow_overlap"] = query["overlap"] in ("1", "true", "on")
    return dataclasses.replace(defaults, **changes).validate()


MAX_UPLOADS = 16  # uploads kept per session (each up to images.MAX_PIXELS decoded)


@dataclass
class Sample:
    data: dict  # JSON-able numbers for the page
    pngs: dict[str, bytes]  # image, mask, heat, pca


class Explorer:
    def __init__(self, model: ExploreModel, items: list[ImageItem], *, device: torch.device,
                 notes: list[str] = (), k: int = 5) -> None:
        if not items:
            raise ValueError("no images to explore (Fashion-MNIST, package photos and --images all empty)")
        for m in (model.encoder, model.predictor, model.target_encoder):
            m.to(device)
        self.model, self.device, self.notes, self.k = model, device, list(notes), k
        self.items = {it.id: it for it in items}
        self.gallery_ids = [it.id for it in items]
        self._gallery: torch.Tensor | None = None
        self.defaults = MaskSettings.from_config(model.cfg.mask)
        self._uploads = 0

    def item(self, image_id: str) -> ImageItem:
        if image_id not in self.items:
            raise KeyError(f"image {image_id!r}: not found")
        return self.items[image_id]

    def info(self) -> dict:
        m = self.model
        return {
            "label": m.label, "random_init": m.random_init, "grid": list(m.grid),
            "img_size": m.img_size[0], "patch_size": m.encoder.patch_size, "in_chans": m.in_chans,
            "loss_name": m.cfg.meta.loss, "defaults": dataclasses.asdict(self.defaults),
            "images": [{"id": it.id, "name": it.name, "source": it.source} for it in self.items.values()],
            "legend": render.legend_colours(), "notes": self.notes, "k": self.k,
            "default_image": self.gallery_ids[0],
        }

    def add_upload(self, data: bytes, name: str) -> ImageItem:
        """Keep the upload; past `MAX_UPLOADS` the oldest upload is forgotten, so a long
        session (or a loop of uploads) holds bounded memory."""
        item = ImageItem(f"upload-{self._uploads}", name, "upload", decode_image(data, name))
        self._uploads += 1
        self.items[item.id] = item
        uploads = [k for k, it in self.items.items() if it.source == "upload"]
        for k in uploads[: max(0, len(uploads) - MAX_UPLOADS)]:
            del self.items[k]
        return item

    def _input(self, items: list[ImageItem]) -> torch.Tensor:
        mean, std = self.model.mean_std
        size = self.model.img_size[0]
        xs = [to_model_input(square_crop(it.image, size), in_chans=self.model.in_chans, mean=mean, std=std) for it in items]
        return torch.stack(xs).to(self.device)

    def display(self, image_id: str) -> np.ndarray:
        """The model's crop at page resolution, RGB [S, S, 3] uint8 with S a multiple of the grid."""
        px = render.cell_px(self.model.grid) * self.model.grid[0]
        return square_crop(to_rgb(self.item(image_id).image), px).permute(1, 2, 0).numpy()

    def thumbnail(self, image_id: str) -> bytes:
        return render.png_bytes(square_crop(to_rgb(self.item(image_id).image), THUMB_PX).permute(1, 2, 0).numpy())

    def neighbours(self, image_id: str, query: torch.Tensor | None = None) -> list[dict]:
        """The k gallery images closest by pooled target-encoder feature (itself excluded)."""
        if self._gallery is None:
            self._gallery = pooled_features(self.model, self._input([self.items[i] for i in self.gallery_ids]))
        if query is None:
            query = pooled_features(self.model, self._input([self.item(image_id)]))[0]
        # Centred on the gallery mean: the component every image shares (mostly position
        # embeddings in a weak model) would otherwise put every cosine at 0.999.
        mean = self._gallery.mean(0)
        self_row = self.gallery_ids.index(image_id) if image_id in self.gallery_ids else None
        return [{"id": self.gallery_ids[r], "name": self.items[self.gallery_ids[r]].name, "sim": round(s, 4)}
                for r, s in nearest(query - mean, self._gallery - mean, self.k, exclude=self_row)]

    def sample(self, image_id: str, settings: MaskSettings, seed: int) -> Sample:
        """Masks drawn with `seed`, the three networks' answers, and the pictures of them."""
        item = self.item(image_id)
        context, targets = sample_masks(settings, self.model, seed)
        a = analyse(self.model, self._input([item]), context, targets)
        heat = a.heatmap()
        lo, hi = float(a.cos.min()), float(a.cos.max())
        display = self.display(image_id)
        cell = display.shape[0] // a.grid[0]
        pngs = {
            "image": render.png_bytes(display),
            "mask": render.png_bytes(render.mask_image(display, a.grid, a.context, a.targets)),
            "heat": render.png_bytes(render.heat_image(display, heat, a.targets)),
            # the same, colours stretched over this draw's range: differences in a trained model
            "heat_stretched": render.png_bytes(render.heat_image(display, heat, a.targets, lo=lo, hi=hi)),
            "pca": render.png_bytes(render.pca_image(pca_rgb(a.features, a.grid), cell)),
        }
        data = {
            "image": image_id, "name": item.name, "seed": seed, "settings": dataclasses.asdict(settings),
            "grid": list(a.grid), "n_context": len(a.context), "context_fraction": a.context_fraction, "overlap": a.overlap,
            "target_fraction": a.target_fraction, "loss": a.loss, "mean_cos": float(a.cos.mean()), "cos_range": [lo, hi],
            "targets": [{"colour": render.css(render.target_colour(k)), "size": len(t), "mean_cos": float(cs.mean())}
                        for k, (t, cs) in enumerate(zip(a.targets, a.cos, strict=True))],
            "heat": [[None if np.isnan(v) else round(float(v), 4) for v in row] for row in heat.tolist()],
            "neighbours": self.neighbours(image_id, a.features.mean(0)),
        }
        return Sample(data, pngs)


def open_explorer(
    checkpoint: str | Path | None = None, *, images: str | Path | None = None, config: str | Path | None = None,
    overrides: list[str] = (), device: str = "cpu", fashion_mnist: int = 48,
) -> Explorer:
    """A checkpoint's networks (or a random init of the `config` recipe) with every image source.

    Sources in page order: `images` (a folder), then the model's own domain first
    (Fashion-MNIST or the photos that ship with installed packages), then the other.
    """
    if checkpoint is not None and (config is not None or overrides):
        raise ValueError("--config/--set describe a random init: give them without a CHECKPOINT")
    model = load_explore_model(checkpoint) if checkpoint is not None else random_explore_model(load_config(config, list(overrides)))
    notes = []
    fmnist: list[ImageItem] = []
    if fashion_mnist > 0:
        try:
            fmnist = fashion_mnist_items(fashion_mnist)
        except FileNotFoundError as e:
            notes.append(f"Fashion-MNIST not shown ({e}).")
    photos = sample_photo_items()
    own, other = (fmnist, photos) if model.cfg.data.dataset == "fashion-mnist" else (photos, fmnist)
    folder = folder_items(images) if images is not None else []
    return Explorer(model, folder + own + other, device=torch.device(device), notes=notes)
