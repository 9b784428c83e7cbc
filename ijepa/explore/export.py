"""`ijepa explore --out DIR`: the same page as static HTML + PNGs, viewable without a server.

Each exported image carries `draws` pre-sampled mask draws (seeds 0..draws-1) at the
checkpoint's mask settings; the page cycles through them on a click. `figure.png` puts the
first draw of the first images side by side, panel by panel (the README's picture); a draw
is a seed, so every row of the figure shows the same masks, and its caption says so.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont
from rich.console import Console
from rich.progress import track

from ijepa.atomic import atomic_write, unwritable
from ijepa.explore.page import page_html
from ijepa.explore.session import Explorer


def pick_images(explorer: Explorer, per_source: int) -> list[str]:
    """The first `per_source` images of every gallery source (uploads are not exported)."""
    taken: dict[str, int] = {}
    ids = []
    for item in (explorer.items[i] for i in explorer.page_ids):
        if item.source != "upload" and taken.get(item.source, 0) < per_source:
            taken[item.source] = taken.get(item.source, 0) + 1
            ids.append(item.id)
    return ids


def check_out(out: Path, *, force: bool = False) -> None:
    """`--out` is a new or empty folder, or `force` says its files may be overwritten (as `ijepa
    export`, never silently over an earlier page)."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise FileExistsError(f"{out}: exists and is not empty; choose a new --out, or pass --force to overwrite its files")


def export_static(
    explorer: Explorer, out: str | Path, *, draws: int = 4, per_source: int = 8, console: Console | None = None, force: bool = False,
) -> Path:
    """Write `out/index.html` and `out/png/*.png` (each file atomically); returns the HTML path.
    `out` is new or empty unless `force`."""
    if draws < 1 or per_source < 1:
        raise ValueError(f"draws={draws}, per_source={per_source}: expected both >= 1")
    out = Path(out)
    check_out(out, force=force)
    (out / "png").mkdir(parents=True, exist_ok=True)
    samples = {}
    for image_id in track(pick_images(explorer, per_source), description="exporting", console=console, disable=console is None):
        samples[image_id] = []
        for seed in range(draws):
            s = explorer.sample(image_id, explorer.defaults, seed)
            paths = {k: f"png/{image_id}-s{seed}-{k}.png" for k in s.pngs}
            for k, rel in paths.items():
                _write(out / rel, s.pngs[k])
            samples[image_id].append({**s.data, "png": paths})
    shown = dict.fromkeys([*(i for i in explorer.page_ids if explorer.items[i].source != "upload"), *(n["id"] for ds in samples.values() for d in ds for n in d["neighbours"])])
    thumbs = {}
    for image_id in shown:  # the picker's images and every neighbour shown, not the whole gallery
        thumbs[image_id] = f"png/thumb-{image_id}.png"
        _write(out / thumbs[image_id], explorer.thumbnail(image_id))
    manifest = {"info": explorer.info(), "samples": samples, "thumbs": thumbs, "draws": draws}
    html = out / "index.html"
    _write(html, page_html(manifest).encode())
    _write(out / "manifest.json", json.dumps(manifest, indent=1).encode())
    _write(out / "figure.png", figure(out, samples))
    return html


def _write(path: Path, data: bytes) -> None:
    try:
        atomic_write(path, lambda f: f.write(data), binary=True)
    except OSError as e:  # a read-only or full --out folder
        raise ValueError(unwritable(path, "the static page", e)) from None


FIGURE_COLUMNS = {"image": "image", "mask": "context + targets", "context": "(a) context seen", "decoded_target": "(b) targets decoded",
                  "decoded_pred": "(c) predictions decoded", "sampled_pred": "(c) 4 diffusion samples", "mae": "(d) MAE pixels"}


def figure_caption(firsts: list[dict]) -> str:
    """The figure's first line: which mask draw each row shows (a seed fixes the masks, so
    rows of one seed share them)."""
    seeds = sorted({d["seed"] for d in firsts})
    if len(seeds) == 1:
        return f"one mask draw (seed {seeds[0]}), the same for every row: context blue, target blocks orange and pink"
    return f"mask draws (seeds {', '.join(map(str, seeds))}): context blue, target blocks orange and pink"


def label_font(size: int = 14) -> ImageFont.FreeTypeFont:
    """DejaVu Sans, shipped with matplotlib: Pillow's default font draws spaces 2 px wide, so
    "(a) context seen" read as "(a) contextseen"."""
    import matplotlib

    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"), size)


def figure(out: Path, samples: dict[str, list[dict]], rows: int = 4) -> bytes:
    """One PNG for a README: the first draw of the first `rows` images, a column per panel
    (only the panels this export has: no decoder, no decoded columns), under a caption naming the draw."""
    firsts = [ds[0] for ds in list(samples.values())[:rows]]
    cols = [k for k in FIGURE_COLUMNS if all(k in d["png"] for d in firsts)]
    size, gap, line = 256, 6, 22
    head = 2 * line
    sheet = Image.new("RGB", (len(cols) * (size + gap) - gap, head + len(firsts) * (size + gap) - gap), (21, 23, 28))
    draw, font = ImageDraw.Draw(sheet), label_font()
    draw.text((4, 3), figure_caption(firsts), fill=(232, 232, 232), font=font)
    for c, key in enumerate(cols):
        draw.text((c * (size + gap) + 4, line + 3), FIGURE_COLUMNS[key], fill=(232, 232, 232), font=font)
        for r, d in enumerate(firsts):
            with Image.open(out / d["png"][key]) as im:
                sheet.paste(im.convert("RGB").resize((size, size), Image.NEAREST), (c * (size + gap), head + r * (size + gap)))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return buf.getvalue()
