"""Pictures of an `Analysis` as RGB arrays and PNG bytes (the server and the export share them)."""

from __future__ import annotations

import io

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image

CONTEXT_RGB = np.array([60, 140, 255], dtype=np.float64)
TARGET_PALETTE = np.array([
    [255, 120, 40], [230, 50, 200], [250, 220, 40], [40, 220, 120], [255, 70, 70],
    [160, 100, 255], [40, 220, 230], [255, 170, 200],
], dtype=np.float64)
HEAT_CMAP = "RdYlGn"  # cosine -1 (red) .. +1 (green)
DISPLAY_PX = 256


def cell_px(grid: tuple[int, int]) -> int:
    """Pixels per patch on the page: about DISPLAY_PX across, at least 4."""
    return max(4, -(-DISPLAY_PX // max(grid)))


def _upscale(patch_map: np.ndarray, cell: int) -> np.ndarray:
    return np.repeat(np.repeat(patch_map, cell, axis=0), cell, axis=1)


def _patch_mask(indices: torch.Tensor, grid: tuple[int, int], cell: int) -> np.ndarray:
    m = np.zeros(grid[0] * grid[1], dtype=bool)
    m[indices.numpy()] = True
    return _upscale(m.reshape(grid), cell)[..., None]


def _grid_lines(out: np.ndarray, cell: int) -> None:
    out[::cell, :] *= 0.7
    out[:, ::cell] *= 0.7


def _outline(out: np.ndarray, indices: torch.Tensor, grid: tuple[int, int], cell: int, rgb) -> None:
    """Rectangle around a block's patches (blocks are rectangles, possibly clipped by min_keep)."""
    rows, cols = np.divmod(indices.numpy(), grid[1])
    if len(rows) == 0:
        return
    t, b = rows.min() * cell, (rows.max() + 1) * cell - 1
    left, r = cols.min() * cell, (cols.max() + 1) * cell - 1
    for w in range(2):
        out[t + w, left : r + 1] = out[b - w, left : r + 1] = rgb
        out[t : b + 1, left + w] = out[t : b + 1, r - w] = rgb


def mask_image(display: np.ndarray, grid: tuple[int, int], context: torch.Tensor, targets: list[torch.Tensor]) -> np.ndarray:
    """The image as the context encoder sees it (blue tint), hidden patches dark, targets coloured."""
    cell = display.shape[0] // grid[0]
    img = display.astype(np.float64)
    ctx = _patch_mask(context, grid, cell)
    out = np.where(ctx, 0.75 * img + 0.25 * CONTEXT_RGB, 0.25 * img + 20)
    for k, t in enumerate(targets):
        colour = target_colour(k)
        out = np.where(_patch_mask(t, grid, cell), 0.45 * img + 0.55 * colour, out)
    _grid_lines(out, cell)
    for k, t in enumerate(targets):
        _outline(out, t, grid, cell, target_colour(k))
    return out.clip(0, 255).astype(np.uint8)


def heat_colours(values: np.ndarray, lo: float = -1.0, hi: float = 1.0) -> np.ndarray:
    """Cosine similarities, `lo` (red) .. `hi` (green) -> RGB floats [..., 3] in 0..255."""
    cmap = colormaps[HEAT_CMAP]
    return cmap((np.nan_to_num(values) - lo) / max(hi - lo, 1e-6))[..., :3] * 255


def heat_image(
    display: np.ndarray, heat: torch.Tensor, targets: list[torch.Tensor], *, lo: float = -1.0, hi: float = 1.0
) -> np.ndarray:
    """Target patches coloured by cosine(prediction, target); the rest a dim grey image."""
    grid = tuple(heat.shape)
    cell = display.shape[0] // grid[0]
    grey = display.astype(np.float64).mean(-1, keepdims=True).repeat(3, -1) * 0.35
    h = heat.numpy()
    colours = _upscale(heat_colours(h, lo, hi), cell)
    inside = _upscale(~np.isnan(h), cell)[..., None]
    out = np.where(inside, 0.85 * colours + 0.15 * grey, grey)
    _grid_lines(out, cell)
    for t in targets:
        _outline(out, t, grid, cell, (255, 255, 255))
    return out.clip(0, 255).astype(np.uint8)


def pca_image(rgb_grid: np.ndarray, cell: int) -> np.ndarray:
    return _upscale(rgb_grid, cell)


def css(rgb) -> str:
    r, g, b = (int(v) for v in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"


def target_colour(k: int) -> np.ndarray:
    return TARGET_PALETTE[k % len(TARGET_PALETTE)]


def legend_colours(n: int = 11) -> list[str]:
    """CSS colours of the heat-map scale from -1 to +1."""
    return [css(c) for c in heat_colours(np.linspace(-1, 1, n))]


def png_bytes(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG", compress_level=1)  # 10x faster than 6
    return buf.getvalue()
