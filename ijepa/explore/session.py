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

from ijepa.decoder.diffusion import DiffusionDecoder, diffusion_dir, load_diffusion_decoder
from ijepa.decoder.model import TokenDecoder, decoder_dir, load_decoder, spec_for
from ijepa.devices import resolve_device
from ijepa.explore import render
from ijepa.explore.analysis import (
    Analysis,
    MaskSettings,
    analyse,
    context_explanation,
    nearest,
    pca_rgb,
    pooled_features,
    sample_masks,
)
from ijepa.explore.decoded import (
    MAERun,
    context_image,
    decoded_images,
    load_mae,
    mae_image,
    sampled_images,
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
from ijepa.explore.model import load_explore_model
from ijepa.training.config import load_config
from ijepa.training.networks import Networks, random_networks

THUMB_PX = 64
SMALL_GALLERY = 500  # below this many images the page says its neighbours mean little
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


@dataclass
class Extras:
    """Optional parts of a session: a pixel decoder (or why there is none), an MAE run, and
    a neighbour gallery larger than the page's own images."""

    decoder: TokenDecoder | None = None
    decoder_note: str = "No decoder: `ijepa decoder train RUN` trains one for a run, and `ijepa explore RUN` then finds it."
    diffusion: DiffusionDecoder | None = None  # draws samples of the predictions beside the mean decoder's
    diffusion_note: str = ""  # why the run's diffusion decoder is not shown, where it has one
    mae: MAERun | None = None
    gallery: list[ImageItem] | None = None
    gallery_name: str = "the page's images"


class Explorer:
    def __init__(self, model: Networks, items: list[ImageItem], *, device: torch.device,
                 notes: list[str] = (), k: int = 5, extras: Extras | None = None) -> None:
        if not items:
            raise ValueError("no images to explore (Fashion-MNIST, package photos and --images all empty)")
        self.extras = extras = extras or Extras()
        modules = [model.encoder, model.predictor, model.target_encoder, extras.decoder, extras.diffusion,
                   extras.mae.model if extras.mae else None]
        for m in modules:
            if m is not None:
                m.to(device)
        self.model, self.device, self.notes, self.k = model, device, list(notes), k
        gallery = extras.gallery or items
        self.items = {it.id: it for it in [*gallery, *items]}
        self.page_ids = [it.id for it in items]
        self.gallery_ids = [it.id for it in gallery]
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
            "images": [{"id": i, "name": self.items[i].name, "source": self.items[i].source} for i in self.page_ids],
            "legend": render.legend_colours(), "notes": self.notes, "k": self.k,
            "default_image": self.page_ids[0], "context_why": context_explanation(self.defaults, m),
            "encoder_only": m.encoder_only,
            "decoder": self.extras.decoder is not None, "decoder_note": self.extras.decoder_note,
            "diffusion": self.extras.diffusion is not None, "diffusion_note": self.extras.diffusion_note,
            "mae": self.extras.mae.label if self.extras.mae else None,
            "gallery": {"size": len(self.gallery_ids), "name": self.extras.gallery_name,
                        "small": len(self.gallery_ids) < SMALL_GALLERY},
        }

    def add_upload(self, data: bytes, name: str) -> ImageItem:
        """Keep the upload; past `MAX_UPLOADS` the oldest upload is forgotten, so a long
        session (or a loop of uploads) holds bounded memory."""
        item = ImageItem(f"upload-{self._uploads}", name, "upload", decode_image(data, name))
        self._uploads += 1
        self.items[item.id] = item
        self.page_ids.append(item.id)
        uploads = [k for k, it in self.items.items() if it.source == "upload"]
        for k in uploads[: max(0, len(uploads) - MAX_UPLOADS)]:
            del self.items[k]
            self.page_ids.remove(k)
        return item

    def _input(self, items: list[ImageItem], mean_std=None) -> torch.Tensor:
        mean, std = mean_std or self.model.mean_std
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
        """Masks drawn with `seed`, the three networks' answers (the one encoder's, encoder-only),
        and the pictures of them."""
        item = self.item(image_id)
        context, targets = sample_masks(settings, self.model, seed)
        x = self._input([item])
        a = analyse(self.model, x, context, targets)
        display = self.display(image_id)
        cell = display.shape[0] // a.grid[0]
        decoded, errors = self._decoded(item, x, a, display.shape[0], seed)
        pngs = {
            "image": render.png_bytes(display),
            "mask": render.png_bytes(render.mask_image(display, a.grid, a.context, a.targets)),
            "pca": render.png_bytes(render.pca_image(pca_rgb(a.features, a.grid), cell)),
            **decoded,
        }
        data = {
            "image": image_id, "name": item.name, "seed": seed, "settings": dataclasses.asdict(settings),
            "grid": list(a.grid), "n_context": len(a.context), "context_fraction": a.context_fraction, "overlap": a.overlap,
            "target_fraction": a.target_fraction,
            "targets": [{"colour": render.css(render.target_colour(k)), "size": len(t), **(errors[k] if errors else {})}
                        for k, t in enumerate(a.targets)],
            "neighbours": self.neighbours(image_id, a.features.mean(0)),
        }
        if a.cos is not None:  # an encoder-only model predicts nothing
            self._scored(a, display, pngs, data)
        return Sample(data, pngs)

    @staticmethod
    def _scored(a: Analysis, display: np.ndarray, pngs: dict[str, bytes], data: dict) -> None:
        """Add the prediction-vs-target cosines (heat-maps, per block) and the loss."""
        heat = a.heatmap()
        lo, hi = float(a.cos.min()), float(a.cos.max())
        pngs["heat"] = render.png_bytes(render.heat_image(display, heat, a.targets))
        # the same, colours stretched over this draw's range: differences in a trained model
        pngs["heat_stretched"] = render.png_bytes(render.heat_image(display, heat, a.targets, lo=lo, hi=hi))
        data.update(loss=a.loss, mean_cos=float(a.cos.mean()), cos_range=[lo, hi],
                    heat=[[None if np.isnan(v) else round(float(v), 4) for v in row] for row in heat.tolist()])
        for t, cs in zip(data["targets"], a.cos, strict=True):
            t["mean_cos"] = float(cs.mean())

    def _decoded(self, item: ImageItem, x: torch.Tensor, a, size: int, seed: int) -> tuple[dict[str, bytes], list[dict] | None]:
        """PNGs of what the context encoder saw and, where possible, of what was predicted;
        per target block the decoded pixel errors (None without a decoder)."""
        pngs, errors = {"context": render.png_bytes(context_image(self.model, x, a, size))}, None
        if self.extras.decoder is not None:
            images, errors = decoded_images(self.model, self.extras.decoder, x, a, size)
            pngs.update({k: render.png_bytes(v) for k, v in images.items()})
        if self.extras.diffusion is not None and self.model.predictor is not None:
            pngs["sampled_pred"] = render.png_bytes(sampled_images(self.model, self.extras.diffusion, x, a, size, seed))
        if self.extras.mae is not None:
            x_mae = self._input([item], self.extras.mae.mean_std)
            pngs["mae"] = render.png_bytes(mae_image(self.extras.mae, x_mae, a, size))
        return pngs, errors


def open_explorer(
    checkpoint: str | Path | None = None, *, images: str | Path | None = None, config: str | Path | None = None,
    overrides: list[str] = (), device: str = "cpu", fashion_mnist: int = 48, decoder: str | Path | None = None,
    mae: str | Path | None = None, gallery: int = 2000, num_heads: int | None = None,
) -> Explorer:
    """A checkpoint's networks (or a random init of the `config` recipe) with every image source.

    Sources in page order: `images` (a folder), then the model's own domain first
    (Fashion-MNIST or the photos that ship with installed packages), then the other. A
    Fashion-MNIST model finds neighbours among the first `gallery` val images; `decoder`
    (default: the run's `decoder/` if trained) and `mae` (an MAE run) add the decoded panels.
    A file with one encoder and no predictor (Hugging Face, timm, a state dict) opens encoder-only;
    `num_heads` only where no config gives them and the width is not a standard one.
    """
    if checkpoint is not None and (config is not None or overrides):
        raise ValueError("--config/--set describe a random init: give them without a CHECKPOINT")
    model = load_explore_model(checkpoint, num_heads=num_heads) if checkpoint is not None else random_networks(load_config(config, list(overrides)))
    extras = Extras(mae=load_mae(mae, model) if mae is not None else None)
    extras.decoder, extras.decoder_note = find_decoder(model, checkpoint, decoder)
    extras.diffusion, extras.diffusion_note = find_diffusion(model, checkpoint)
    notes = []
    fmnist: list[ImageItem] = []
    n_fmnist = max(fashion_mnist, gallery if model.cfg.data.dataset == "fashion-mnist" and fashion_mnist > 0 else 0)
    if n_fmnist > 0:
        try:
            fmnist = fashion_mnist_items(n_fmnist)
        except FileNotFoundError as e:
            notes.append(f"Fashion-MNIST not shown ({e}).")
    if len(fmnist) > fashion_mnist:  # the ids are shared: a page image is excluded from its own neighbours
        extras.gallery, extras.gallery_name = fmnist, "Fashion-MNIST val"
        fmnist = fmnist[:fashion_mnist]
    photos = sample_photo_items()
    own, other = (fmnist, photos) if model.cfg.data.dataset == "fashion-mnist" else (photos, fmnist)
    folder = folder_items(images) if images is not None else []
    return Explorer(model, folder + own + other, device=resolve_device(device), notes=notes, extras=extras)


def find_decoder(model: Networks, checkpoint: str | Path | None, decoder: str | Path | None) -> tuple[TokenDecoder | None, str]:
    """(decoder, note for the page): an explicit one that does not fit is an error; the run's
    own `decoder/` that does not fit (the run trained on after it) is a note."""
    name = str(checkpoint) if checkpoint is not None else "this random init"
    if model.predictor is None:
        if decoder is not None:
            raise ValueError(f"--decoder: {name} holds one encoder and no predictor, so there are no predictions to decode")
        return None, "No decoded panels: this model holds one encoder and no predictor."
    wanted = spec_for(model.target_encoder, name, *model.mean_std)
    if decoder is not None:
        return load_decoder(decoder, wanted), ""
    if checkpoint is None:
        return None, ("No decoder: a random init has none of its own; `ijepa explore --decoder RUN/decoder/random_init` "
                      "shows the baseline decoder of a run started from this recipe.")
    found = decoder_dir(checkpoint) / "checkpoint.pt"
    if not found.is_file():
        return None, f"No decoder for this run yet: `ijepa decoder train {checkpoint}` trains one; `ijepa explore` run again shows it."
    try:
        return load_decoder(found, wanted), ""
    except ValueError as e:
        return None, f"{e}."


def find_diffusion(model: Networks, checkpoint: str | Path | None) -> tuple[DiffusionDecoder | None, str]:
    """(the run's `decoder/diffusion/` if trained for this target encoder, else None; a note for
    the page where one exists but does not fit). Without it the deterministic decoder shows alone."""
    if checkpoint is None or model.predictor is None or not (diffusion_dir(checkpoint) / "checkpoint.pt").is_file():
        return None, ""
    try:
        return load_diffusion_decoder(diffusion_dir(checkpoint), spec_for(model.target_encoder, str(checkpoint), *model.mean_std)), ""
    except ValueError as e:
        return None, f"Diffusion samples not shown: {e}."
