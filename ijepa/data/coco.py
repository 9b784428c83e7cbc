"""COCO-format instance data: `annotations/instances_{split}2017.json` + `{split}2017/` images.

Any dataset in this layout works. Category ids need not be contiguous: they map to labels
1..K (0 is background, as torchvision's detectors expect) and back for scoring. Polygons and
RLE (compressed or not) become masks through pycocotools, so they match what COCOeval scores.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms.functional import pil_to_tensor

from ijepa.data.files import check_fields, open_image, read_json
from ijepa.extras import missing_extra

try:
    from pycocotools import mask as mask_util
    from pycocotools.coco import COCO
except ImportError:
    raise missing_extra("pycocotools", "ijepa.data.coco (the detection and counting evals)") from None

SPLITS = ("train", "val")
Target = dict[str, torch.Tensor]


def annotation_file(root: Path, split: str) -> Path:
    if split not in SPLITS:
        raise ValueError(f"unknown COCO split {split!r}; expected one of {', '.join(SPLITS)}")
    path = Path(root) / "annotations" / f"instances_{split}2017.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: COCO annotation file not found (expected <root>/annotations/instances_{{train,val}}2017.json)")
    return path


def _check_segmentation(path: Path, where: str, seg: Any) -> None:
    if isinstance(seg, dict):
        if "counts" not in seg or "size" not in seg:
            raise ValueError(f"{path}: {where} RLE segmentation needs 'counts' and 'size'")
    elif not isinstance(seg, list) or not seg or any(
        not isinstance(p, list) or len(p) < 6 or len(p) % 2 for p in seg
    ):
        raise ValueError(f"{path}: {where} segmentation must be RLE or a non-empty list of polygons [x1, y1, x2, y2, x3, y3, ...]")


def _check_box(path: Path, where: str, box: Any, size: tuple[Any, Any], slack: float = 1.0) -> None:
    """4 finite numbers inside the image (`slack` pixels of rounding allowed): a NaN box
    would read as a diverged loss, a box off the image as a degenerate one after clipping."""
    if not isinstance(box, list) or len(box) != 4 or not all(isinstance(v, Real) and math.isfinite(v) for v in box):
        raise ValueError(f"{path}: {where} bbox must be 4 numbers [x, y, width, height], all finite, got {box!r}")
    x, y, w, h = box
    W, H = size
    if x < -slack or y < -slack or x + w > W + slack or y + h > H + slack:
        raise ValueError(f"{path}: {where} bbox {box!r} lies outside its {W}x{H} image")


def validate(data: Any, path: Path) -> None:
    """Fail on the first malformed entry, naming it: pycocotools would raise a bare KeyError."""
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object with 'images', 'annotations' and 'categories'")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise ValueError(f"{path}: key {key!r} missing or not a list")
    for i, img in enumerate(data["images"]):
        check_fields(path, f"images[{i}]", img, ("id", "file_name", "height", "width"))
    for i, cat in enumerate(data["categories"]):
        check_fields(path, f"categories[{i}]", cat, ("id", "name"))
    sizes = {img["id"]: (img["width"], img["height"]) for img in data["images"]}
    cat_ids = {cat["id"] for cat in data["categories"]}
    for i, ann in enumerate(data["annotations"]):
        where = f"annotations[{i}]"
        check_fields(path, where, ann, ("id", "image_id", "category_id", "bbox", "area", "iscrowd", "segmentation"))
        if ann["image_id"] not in sizes:
            raise ValueError(f"{path}: {where} refers to image_id {ann['image_id']!r}, which is not in 'images'")
        if ann["category_id"] not in cat_ids:
            raise ValueError(f"{path}: {where} refers to category_id {ann['category_id']!r}, which is not in 'categories'")
        _check_box(path, where, ann["bbox"], sizes[ann["image_id"]])
        _check_segmentation(path, where, ann["segmentation"])


def quiet_coco(data: dict[str, Any]) -> COCO:
    """A pycocotools COCO index built without its prints (stdout may carry a --json line)."""
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def load_coco(path: Path) -> COCO:
    """Read and validate one COCO annotation file."""
    data = read_json(path)
    validate(data, Path(path))
    return quiet_coco(data)


class CocoInstances(Dataset):
    """(image [C, H, W] float in [0, 1], target) pairs in torchvision's detection format.

    target: `boxes` [N, 4] xyxy pixels, `labels` [N] in 1..K, `masks` [N, H, W] uint8,
    `image_id`. Crowd regions and degenerate boxes are left out of the targets (COCOeval
    still sees them in the annotation file); `skip_empty` drops images with no instance,
    as the Detectron2/torchvision training recipes do.
    """

    def __init__(self, root: Path, split: str, *, in_chans: int = 3, flip: bool = False, skip_empty: bool = False) -> None:
        self.root = Path(root)
        self.ann_file = annotation_file(self.root, split)
        self.img_dir = self.root / f"{split}2017"
        if not self.img_dir.is_dir():
            raise FileNotFoundError(f"{self.img_dir}: COCO image folder not found (expected <root>/{split}2017/ next to annotations/)")
        if in_chans not in (1, 3):
            raise ValueError(f"in_chans must be 1 or 3 for COCO images, got {in_chans}")
        self.coco = load_coco(self.ann_file)
        self.in_chans, self.flip = in_chans, flip
        self.cat_ids = sorted(self.coco.getCatIds())
        self.label_of = {cid: i + 1 for i, cid in enumerate(self.cat_ids)}
        self.ids = sorted(self.coco.imgs)
        if skip_empty:
            self.ids = [i for i in self.ids if self._instances(i)]

    @property
    def num_classes(self) -> int:
        """Foreground categories + background."""
        return len(self.cat_ids) + 1

    @property
    def category_names(self) -> list[str]:
        return [self.coco.cats[c]["name"] for c in self.cat_ids]

    def _instances(self, image_id: int) -> list[dict[str, Any]]:
        anns = self.coco.imgToAnns.get(image_id, [])
        return [a for a in anns if not a["iscrowd"] and a["bbox"][2] > 0 and a["bbox"][3] > 0]

    def __len__(self) -> int:
        return len(self.ids)

    def load_image(self, image_id: int) -> Image.Image:
        info = self.coco.imgs[image_id]
        path = self.img_dir / info["file_name"]
        if not path.is_file():
            raise FileNotFoundError(f"{path}: image listed in {self.ann_file} not found")
        img = open_image(path, "RGB" if self.in_chans == 3 else "L")
        if img.size != (info["width"], info["height"]):
            raise ValueError(f"{path}: size {img.size[0]}x{img.size[1]} differs from {info['width']}x{info['height']} in {self.ann_file}")
        return img

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Target]:
        image_id = self.ids[index]
        image = pil_to_tensor(self.load_image(image_id)).float() / 255.0
        anns = self._instances(image_id)
        h, w = image.shape[-2:]
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        boxes[:, 0::2].clamp_(0, w)
        boxes[:, 1::2].clamp_(0, h)
        masks = decode([self.coco.annToRLE(a) for a in anns], h, w)
        target = {
            "boxes": boxes,
            "labels": torch.tensor([self.label_of[a["category_id"]] for a in anns], dtype=torch.int64),
            "masks": torch.from_numpy(masks),
            "image_id": torch.tensor(image_id),
        }
        if self.flip and torch.rand(()) < 0.5:
            image, target = hflip(image, target)
        return image, target


def decode(rles: list[dict], h: int, w: int) -> np.ndarray:
    """RLEs -> [N, h, w] uint8 masks (pycocotools' numpy-2 DeprecationWarning silenced)."""
    if not rles:
        return np.zeros((0, h, w), np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return np.ascontiguousarray(mask_util.decode(rles).transpose(2, 0, 1))


def hflip(image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
    """Mirror an image and its boxes and masks left-right."""
    w = image.shape[-1]
    boxes = target["boxes"].clone()
    boxes[:, [0, 2]] = w - target["boxes"][:, [2, 0]]
    return image.flip(-1), {**target, "boxes": boxes, "masks": target["masks"].flip(-1)}


def collate(batch: list[tuple[torch.Tensor, Target]]) -> dict[str, list]:
    """{"images": [...], "targets": [...]}: lists, since images differ in size."""
    images, targets = zip(*batch, strict=True)
    return {"images": list(images), "targets": list(targets)}
