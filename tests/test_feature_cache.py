"""The feature cache keys on the data's content: rewriting an image or an IDX file recomputes."""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures.fmnist import write_fmnist
from fixtures.imagefolder import CLASSES, write_imagefolder
from PIL import Image, ImageOps

from ijepa.data import data_spec
from ijepa.evals.core.encoders import EncoderSpec, build_encoder
from ijepa.evals.core.features import extract_features, img_rate, pooled

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


# -- keyed on the bytes, not on path, size and mtime (issue 42) -------------------------------------
def _rewrite_keeping_size_and_mtime(path: Path, data: bytes) -> None:
    st = os.stat(path)
    assert len(data) == st.st_size
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _bmp(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="BMP")  # uncompressed: its inverse has the same size
    return buf.getvalue()


def test_image_inverted_in_place_with_size_and_mtime_kept_is_recomputed(tmp_path):
    """The cache served the old features (0.413 from the cache, 0.127 true)."""
    root = write_imagefolder(tmp_path / "if", per_class={"train": 1, "val": 2})
    first = sorted((root / "val" / CLASSES[0]).iterdir())[0]
    img = Image.open(first).convert("RGB")
    first.write_bytes(_bmp(img))
    cache = tmp_path / "cache"
    cold = _extract(str(root), "val", cache, 3)
    _rewrite_keeping_size_and_mtime(first, _bmp(ImageOps.invert(img)))
    fresh = _extract(str(root), "val", cache, 3)
    assert not torch.equal(fresh.concat[0], cold.concat[0]) and torch.equal(fresh.concat[1:], cold.concat[1:])
    assert torch.equal(fresh.concat, _extract(str(root), "val", None, 3).concat)
    assert len(list(cache.glob("*.pt"))) == 2


def test_idx_file_inverted_in_place_with_size_and_mtime_kept_is_recomputed(tmp_path):
    root = write_fmnist(tmp_path / "fm")
    cache = tmp_path / "cache"
    cold = _extract(f"fashion-mnist:{root}", "test", cache, 1)
    path = root / "t10k-images-idx3-ubyte"
    data = path.read_bytes()
    _rewrite_keeping_size_and_mtime(path, data[:16] + bytes(255 - b for b in data[16:]))
    fresh = _extract(f"fashion-mnist:{root}", "test", cache, 1)
    assert not torch.equal(fresh.concat, cold.concat) and len(list(cache.glob("*.pt"))) == 2


def test_a_folder_is_read_once_per_extraction_and_once_per_cache_hit(tmp_path, monkeypatch):
    """The loader hashes the bytes it decodes, so a first extraction reads each file once; a
    cache hit reads each file once to check it, and decodes none."""
    from ijepa.evals.core import features

    root = write_imagefolder(tmp_path / "if", per_class={"train": 1, "val": 3})
    reads, decodes = [], []
    real_read, real_open = features.read_bytes, features.open_image
    monkeypatch.setattr(features, "read_bytes", lambda p: reads.append(p) or real_read(p))
    monkeypatch.setattr(features, "open_image", lambda p, **kw: decodes.append(p) or real_open(p, **kw))
    cold = _extract(str(root), "val", tmp_path / "cache", 3)
    assert len(reads) == len(decodes) == 12 and len(set(reads)) == 12
    reads.clear(), decodes.clear()
    warm = _extract(str(root), "val", tmp_path / "cache", 3)
    assert len(reads) == 12 and not decodes and torch.equal(warm.concat, cold.concat)


# -- chunked cache: resume after a kill, subsets from the full split (issue 38) ----------------------
class Killed(Exception):
    """The run dies here (a kill, an out-of-memory, a lost node)."""


def _counting_forward(monkeypatch, fail_after: int | None = None) -> list[int]:
    """Count the batches forwarded; with `fail_after`, die on the next one, as a killed run."""
    from ijepa.evals.core import features

    calls = []

    def forward(enc, x):
        if fail_after is not None and len(calls) == fail_after:
            raise Killed
        calls.append(len(x))
        return pooled(enc, x)

    monkeypatch.setattr(features, "pooled", forward)
    return calls


def _extract_small(root: Path, cache: Path | None, indices: torch.Tensor | None = None):
    """12 images: 3 chunks of 2 batches."""
    enc, _, key = build_encoder(EncoderSpec(random_init="vit_tiny", depth=1, img_size=32, patch_size=8, in_chans=3))
    return extract_features(enc, key, data_spec(str(root)), "val", device=CPU, cache_dir=cache, batch_size=2, indices=indices, chunk_rows=4)


def test_a_killed_extraction_resumes_from_its_last_finished_chunk(tmp_path, monkeypatch):
    root, cache = write_imagefolder(tmp_path / "if", per_class={"val": 3}), tmp_path / "cache"
    _counting_forward(monkeypatch, fail_after=3)
    with pytest.raises(Killed):
        _extract_small(root, cache)
    assert len(list(cache.glob("*.pt"))) == 1  # the first chunk; the second died half done
    calls = _counting_forward(monkeypatch)
    resumed = _extract_small(root, cache)
    assert sum(calls) == 8 and len(list(cache.glob("*.pt"))) == 3  # only the two missing chunks
    whole = _extract_small(root, None)
    assert resumed.concat.dtype == whole.concat.dtype == torch.float32
    assert torch.equal(resumed.concat, whole.concat) and torch.equal(resumed.labels, whole.labels)
    calls.clear()
    assert torch.equal(_extract_small(root, cache).concat, whole.concat) and not calls


def test_a_subset_is_read_from_its_split_cache_bit_for_bit(tmp_path, monkeypatch):
    root, cache = write_imagefolder(tmp_path / "if", per_class={"val": 3}), tmp_path / "cache"
    _extract_small(root, cache)
    rows = torch.tensor([11, 1, 5, 6])  # across chunks, out of order
    calls = _counting_forward(monkeypatch)
    reused = _extract_small(root, cache, rows)
    assert not calls and len(list(cache.glob("*.pt"))) == 3  # no forward, no new chunk
    direct = _extract_small(root, None, rows)  # batches of other images beside them: per-image forward
    assert torch.equal(reused.concat, direct.concat) and torch.equal(reused.labels, direct.labels)
    calls.clear()
    first = sorted((root / "val" / CLASSES[1]).iterdir())[1]  # row 4: in no chosen row
    first.write_bytes(b"")
    assert not calls and torch.equal(_extract_small(root, cache, rows).concat, direct.concat)
    chosen = sorted((root / "val" / CLASSES[0]).iterdir())[1]  # row 1
    Image.new("RGB", (32, 32)).save(chosen)
    fresh = _extract_small(root, cache, rows)
    assert sum(calls) == 4 and not torch.equal(fresh.concat[1], direct.concat[1]) and torch.equal(fresh.concat[2:], direct.concat[2:])


def test_the_bar_shows_seconds_per_image_below_one_image_a_second():
    """ViT-H/14 on a CPU core runs at ~0.25 img/s: `0 img/s` said nothing in the rehearsal's log."""
    assert (img_rate(300, 2.0), img_rate(1, 4.05), img_rate(0, 0.0)) == ("150 img/s", "4.0 s/img", "0 img/s")
