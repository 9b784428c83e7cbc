"""The feature cache keys on the data's content: rewriting an image or an IDX file recomputes."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import torch
from fixtures.imagefolder import CLASSES, write_imagefolder
from PIL import Image

from ijepa.data import data_spec
from ijepa.evals.core.encoders import EncoderSpec, build_encoder
from ijepa.evals.core.features import extract_features

CPU = torch.device("cpu")


def _extract(spec_str: str, split: str, cache: Path, in_chans: int):
    enc, _, key = build_encoder(EncoderSpec(random_init="vit_tiny", depth=1, img_size=32, patch_size=8, in_chans=in_chans))
    return extract_features(enc, key, data_spec(spec_str), split, device=CPU, cache_dir=cache, batch_size=64)


def _bump_mtime(path: Path) -> None:
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


def test_rewritten_image_of_the_same_name_is_recomputed(tmp_path):
    root = write_imagefolder(tmp_path / "if", per_class={"train": 2, "val": 1})
    cache = tmp_path / "cache"
    cold = _extract(str(root), "val", cache, 3)
    assert len(list(cache.glob("*.pt"))) == 1
    warm = _extract(str(root), "val", cache, 3)
    assert torch.equal(cold.concat, warm.concat) and len(list(cache.glob("*.pt"))) == 1
    first = sorted((root / "val" / CLASSES[0]).iterdir())[0]
    Image.new("RGB", (32, 32)).save(first)  # same name, black pixels
    _bump_mtime(first)
    fresh = _extract(str(root), "val", cache, 3)
    assert len(list(cache.glob("*.pt"))) == 2  # a new key, not the old entry
    assert not torch.equal(fresh.concat[0], cold.concat[0])  # the black image's features
    assert torch.equal(fresh.concat[1:], cold.concat[1:])


def _write_idx(path: Path, arr: np.ndarray) -> None:
    header = b"\x00\x00\x08" + bytes([arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    path.write_bytes(header + arr.astype(np.uint8).tobytes())


def test_rewritten_idx_file_is_recomputed(tmp_path):
    root, rng = tmp_path / "fm", np.random.default_rng(0)
    root.mkdir()
    _write_idx(root / "t10k-images-idx3-ubyte", rng.integers(0, 256, (8, 28, 28)))
    _write_idx(root / "t10k-labels-idx1-ubyte", np.arange(8) % 10)
    _write_idx(root / "train-images-idx3-ubyte", rng.integers(0, 256, (12, 28, 28)))
    _write_idx(root / "train-labels-idx1-ubyte", np.arange(12) % 10)
    cache = tmp_path / "cache"
    cold = _extract(f"fashion-mnist:{root}", "test", cache, 1)
    _extract(f"fashion-mnist:{root}", "test", cache, 1)
    assert len(list(cache.glob("*.pt"))) == 1
    _write_idx(root / "t10k-images-idx3-ubyte", np.zeros((8, 28, 28)))  # same size, other pixels
    _bump_mtime(root / "t10k-images-idx3-ubyte")
    fresh = _extract(f"fashion-mnist:{root}", "test", cache, 1)
    assert len(list(cache.glob("*.pt"))) == 2 and not torch.equal(fresh.concat, cold.concat)
