"""Reading a dataset's files so that a file that cannot be decoded is one line naming it:
not an image, truncated, a decompression bomb, not UTF-8, not JSON, a JSON record without
the keys its layout requires."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

# What PIL raises for a file that is not a usable image: not an image, truncated, or a
# decompression bomb (over 2 x Image.MAX_IMAGE_PIXELS, 179 megapixels by default).
IMAGE_ERRORS = (UnidentifiedImageError, OSError, Image.DecompressionBombError)


def open_image(path: str | Path, mode: str | None = "RGB", *, data: bytes | None = None) -> Image.Image:
    """The decoded image, converted to `mode` (None: as stored, e.g. a class-id or 16-bit
    depth PNG). `data`: the file's bytes, already read (they are decoded, the file is not read again)."""
    try:
        with Image.open(path if data is None else io.BytesIO(data)) as im:
            return im.convert(mode) if mode else im.copy()
    except IMAGE_ERRORS as e:
        raise ValueError(f"{path}: unreadable image ({e.__class__.__name__}: {e})") from None


def read_bytes(path: str | Path) -> bytes:
    """The file's bytes; a file that cannot be read (gone, no permission) is one line naming it."""
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise ValueError(f"{path}: unreadable ({e.strerror or e})") from None


def read_text(path: str | Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a UTF-8 text file (byte {e.object[e.start]:#04x} at offset {e.start})") from None


def read_json(path: str | Path) -> Any:
    """Parsed JSON; a broken file is one line naming it and where it breaks."""
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None


def check_fields(path: Path, where: str, item: Any, fields: tuple[str, ...]) -> None:
    """`item` (at `where` in the JSON file `path`) is an object holding every key of `fields`;
    otherwise one line naming the file, the place and the missing keys."""
    if not isinstance(item, dict):
        raise ValueError(f"{path}: {where} is not a JSON object")
    missing = [f for f in fields if f not in item]
    if missing:
        raise ValueError(f"{path}: {where} lacks key(s) {', '.join(repr(m) for m in missing)}")
