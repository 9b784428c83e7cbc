"""`ijepa explore`: the model side (masks, heat-map, loss, PCA, neighbours), the server, the
static export, the CLI, and the page itself in headless Chromium (skipped without it)."""

from __future__ import annotations

import http.client
import io
import json
import shutil
import struct
import threading
import urllib.error
import urllib.parse
import urllib.request
import zlib

import numpy as np
import pytest
import torch
from fixtures.decoder import tiny_dtc, tiny_tc, write_tiny_run
from fixtures.explore import tiny_cfg, tiny_explorer, write_image_folder
from PIL import Image
from typer.testing import CliRunner

from ijepa.decoder import DecoderTrainer, spec_for
from ijepa.decoder.diffusion import diffusion_dir
from ijepa.decoder.model import layer_normed, to_unit_pixels
from ijepa.decoder.runs import mask_collator, run_dataset
from ijepa.decoder.train import DiffusionTrainer
from ijepa.explore import (
    MaskSettings,
    analyse,
    export_static,
    load_explore_model,
    make_server,
    nearest,
    pca_rgb,
    sample_masks,
)
from ijepa.explore.decoded import load_mae
from ijepa.explore.images import folder_items, package_photo_paths
from ijepa.explore.page import page_html
from ijepa.explore.server import MAX_UPLOAD, address
from ijepa.explore.session import Extras, find_decoder, find_diffusion, settings_from_query
from ijepa.models.mae import unpatchify
from ijepa.training.mae import MAE
from ijepa.training.networks import random_networks
from ijepa.training.step import IJEPA


@pytest.fixture(scope="module")
def model():
    return random_networks(tiny_cfg())


@pytest.fixture(scope="module")
def explorer():
    return tiny_explorer(4, duplicate=True)


def _x(seed: int = 0) -> torch.Tensor:
    return torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("npred", [1, 4, 6])
def test_fractions_count_the_sampled_patches(model, npred):
    settings = MaskSettings.from_config(model.cfg.mask)
    settings = MaskSettings(settings.enc_mask_scale, settings.pred_mask_scale, settings.aspect_ratio, npred, 4, False)
    for seed in range(5):
        context, targets = sample_masks(settings, model, seed)
        a = analyse(model, _x(seed), context, targets)
        union = set(torch.cat(targets).tolist())
        assert len(targets) == npred and a.cos.shape == (npred, len(targets[0]))
        assert a.context_fraction == len(set(context.tolist())) / 64 == len(context) / 64
        assert a.target_fraction == len(union) / 64
        assert not union & set(context.tolist()) and a.overlap == 0, "context must not see any target patch"
        assert all(0.05 < len(t) / 64 < 0.35 for t in targets)  # scale (0.15, 0.2) of 64 patches
    draws = [sample_masks(settings, model, s) for s in (0, 0, 1)]
    as_lists = [(c.tolist(), [t.tolist() for t in ts]) for c, ts in draws]
    assert as_lists[0] == as_lists[1] != as_lists[2], "same seed, same masks; another seed, others"


def test_overlap_setting_gives_the_context_its_whole_block(model):
    settings = MaskSettings((0.85, 1.0), (0.15, 0.2), (0.75, 1.5), 4, 4, True)
    fractions = [analyse(model, _x(), *sample_masks(settings, model, s)).context_fraction for s in range(5)]
    # sqrt(64 * [0.85, 1]) rounds to a 7x7 or 8x8 block
    assert all(f in (49 / 64, 56 / 64, 64 / 64) for f in fractions), fractions
    covering = MaskSettings((1.0, 1.0), (0.9, 1.0), (1.0, 1.0), 2, 4, False)  # targets cover the image
    assert analyse(model, _x(), *sample_masks(covering, model, 0)).overlap > 0


def test_heatmap_has_the_grid_shape_and_only_target_values(model):
    context, targets = sample_masks(MaskSettings.from_config(model.cfg.mask), model, 3)
    a = analyse(model, _x(), context, targets)
    heat = a.heatmap()
    assert heat.shape == (8, 8)
    flat = heat.flatten()
    inside = torch.zeros(64, dtype=torch.bool)
    inside[torch.cat(targets)] = True
    assert torch.isnan(flat[~inside]).all() and torch.isfinite(flat[inside]).all()
    assert flat[inside].abs().max() <= 1 + 1e-6
    hits = torch.bincount(torch.cat(targets), minlength=64)
    for k, t in enumerate(targets):  # a patch in one block only shows exactly that block's cosine
        for j, p in enumerate(t.tolist()):
            if hits[p] == 1:
                assert flat[p] == pytest.approx(float(a.cos[k, j]))


@pytest.mark.filterwarnings("ignore:std\\(\\)")  # the step's batch-std statistic, on a batch of 1
def test_loss_and_predictions_match_a_training_step(tmp_path):
    """A checkpoint laid out as the trainer writes it loads, and scores as training would."""
    cfg = tiny_cfg()
    torch.manual_seed(0)
    m = IJEPA(cfg)
    with torch.no_grad():  # a target encoder unlike the context encoder, as after training
        for p in m.target_encoder.parameters():
            p.add_(0.05 * torch.randn_like(p))
    run = tmp_path / "run"
    run.mkdir()
    state = {k: getattr(m, k).state_dict() for k in m.checkpoint_keys}
    torch.save({**state, "config": cfg.to_dict(), "step": 7}, run / "checkpoint.pt")
    loaded = load_explore_model(run)
    assert not loaded.random_init and "step 7" in loaded.label
    x = _x(1)
    context, targets = sample_masks(MaskSettings.from_config(cfg.mask), loaded, 0)
    a = analyse(loaded, x, context, targets)
    with torch.no_grad():
        want, _ = m.eval()(x, [context[None]], [t[None] for t in targets])
    assert a.loss == pytest.approx(float(want), rel=1e-5)
    # The official layout: DDP `module.` prefixes, no config (heads from the width table).
    official = {k: {f"module.{n}": v for n, v in sd.items()} for k, sd in state.items()}
    torch.save(official, tmp_path / "official.pth.tar")
    loaded = load_explore_model(tmp_path / "official.pth.tar")
    assert loaded.mean_std[0] == (0.485, 0.456, 0.406) and loaded.cfg.mask.min_keep == 10
    assert analyse(loaded, x, context, targets).loss == pytest.approx(float(want), rel=1e-5)


def test_a_checkpoint_without_predictor_opens_encoder_only_and_a_non_encoder_is_one_line(tmp_path, model):
    path = tmp_path / "enc.pt"
    torch.save({"target_encoder": model.target_encoder.state_dict()}, path)
    loaded = load_explore_model(path)
    assert loaded.predictor is None and loaded.target_encoder is loaded.encoder and "(its target_encoder)" in loaded.encoder_only
    torch.save(model.target_encoder.state_dict(), tmp_path / "bare.pt")  # a bare state dict: which one is not recorded
    assert "the file does not say" in load_explore_model(tmp_path / "bare.pt").encoder_only
    torch.save({"predictor": model.predictor.state_dict()}, path)
    with pytest.raises(KeyError, match="enc.pt: no 'target_encoder' weights \\(keys: predictor\\)"):
        load_explore_model(path)


def test_pca_image_colours_the_main_direction_and_is_sign_stable():
    g = torch.Generator().manual_seed(0)
    col = torch.arange(8.0).repeat(8)  # patch column, 0..7 across each row
    row = torch.arange(8.0).repeat_interleave(8)
    feats = col[:, None] * torch.randn(1, 32, generator=g) * 3 + row[:, None] * torch.randn(1, 32, generator=g)
    feats = feats + 0.01 * torch.randn(64, 32, generator=g)
    rgb = pca_rgb(feats, (8, 8))
    assert rgb.shape == (8, 8, 3) and rgb.dtype == np.uint8
    red = rgb[..., 0].astype(int)
    assert (red.min(), red.max()) == (0, 255)
    assert np.ptp(red, axis=0).max() <= 8, "first component must follow the column, not the row"
    assert abs(red[:, 0].mean() - red[:, -1].mean()) > 240
    np.testing.assert_array_equal(pca_rgb(-feats, (8, 8)), rgb)


def test_nearest_neighbour_of_an_image_is_its_duplicate(explorer):
    found = explorer.neighbours("img-3")
    assert found[0]["id"] == "img-4" and found[0]["sim"] == pytest.approx(1.0, abs=1e-4)
    assert "img-3" not in [n["id"] for n in found] and len(found) == 4
    assert nearest(torch.tensor([1.0, 0]), torch.tensor([[0.0, 1], [1, 0.1], [-1, 0]]), 2) == [
        (1, pytest.approx(0.995, abs=1e-3)), (0, pytest.approx(0.0))]


def test_settings_from_query_validates_every_value():
    base = MaskSettings()
    s = settings_from_query({"pred_scale": "0.1,0.3", "npred": "2", "overlap": "1"}, base)
    assert (s.pred_mask_scale, s.npred, s.allow_overlap, s.enc_mask_scale) == ((0.1, 0.3), 2, True, base.enc_mask_scale)
    for query, msg in [({"enc_scale": "0.9"}, "enc_scale: expected two numbers"),
                       ({"pred_scale": "0.5,0.2"}, "pred_mask_scale: expected 0 < min <= max <= 1"),
                       ({"npred": "40"}, "npred: expected 1..16"), ({"npred": "x"}, "npred: expected an integer")]:
        with pytest.raises(ValueError, match=msg):
            settings_from_query(query, base)


def test_image_sources(tmp_path):
    items = folder_items(write_image_folder(tmp_path / "imgs", 3))
    assert [it.name for it in items] == ["shapes1.png", "shapes2.png", "sub/shapes0.png"]
    assert all(it.image.dtype == torch.uint8 and it.image.shape[0] == 3 for it in items)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.jpg").write_text("not an image")
    with pytest.raises(ValueError, match="empty: no readable images"):
        folder_items(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="missing: image folder not found"):
        folder_items(tmp_path / "missing")


def _get(url: str, data: bytes | None = None) -> tuple[int, dict | bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=30) as r:
            body, status, kind = r.read(), r.status, r.headers["Content-Type"]
    except urllib.error.HTTPError as e:
        body, status, kind = e.read(), e.code, e.headers["Content-Type"]
    return status, json.loads(body) if kind == "application/json" else body


def serving(explorer):
    """An explorer served on a free port in a thread, for a module fixture to yield from."""
    srv = make_server(explorer, 0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield address(srv)
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def server(explorer):
    yield from serving(explorer)


def test_server_endpoints(server):
    assert server.startswith("http://127.0.0.1:")
    status, info = _get(server + "api/info")
    assert status == 200 and info["grid"] == [8, 8] and info["random_init"] and "RANDOM INIT" in info["label"]
    status, s = _get(server + "api/sample?image=img-0&seed=2&npred=3")
    assert status == 200 and len(s["targets"]) == 3 and s["png"]["mask"].startswith("data:image/png;base64,")
    assert _get(server + "api/sample?image=img-0&pred_scale=2,3")[0] == 400
    assert _get(server + "api/sample?image=nope")[0] == 404
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(buf, format="PNG")
    status, up = _get(server + "api/upload?name=red.png", buf.getvalue())
    assert status == 200 and up["source"] == "upload"
    assert _get(server + f"api/sample?image={up['id']}")[0] == 200
    status, err = _get(server + "api/upload?name=bad.png", b"not an image")
    assert status == 400 and "bad.png: not a readable image" in err["error"]
    status, png = _get(server + "api/thumb/img-1.png")
    assert status == 200 and Image.open(io.BytesIO(png)).size == (64, 64)


def _png_header(width: int, height: int) -> bytes:
    """A valid PNG that claims `width` x `height` pixels in a few bytes (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + chunk(b"IEND", b"")


def _post(server: str, path: str, body: bytes = b"", headers: dict | None = None) -> tuple[int, dict]:
    """POST with exactly these headers (Host defaults to the server's own); (status, JSON)."""
    url = urllib.parse.urlsplit(server)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    headers = {"Host": url.netloc, "Content-Length": str(len(body)), **(headers or {})}
    conn.putrequest("POST", path, skip_host=True, skip_accept_encoding=True)
    for k, v in headers.items():
        conn.putheader(k, v)
    conn.endheaders(body or None)
    r = conn.getresponse()
    out = r.status, json.loads(r.read())
    conn.close()
    return out


def test_upload_bombs_and_oversized_bodies_get_a_413(server):
    status, err = _post(server, "/api/upload?name=bomb.png", _png_header(30_000, 30_000))  # beyond PIL's own cap
    assert status == 413 and err["error"] == "bomb.png: too many pixels (expected at most 40 megapixels)"
    status, err = _post(server, "/api/upload?name=big.png", _png_header(8_000, 8_000))  # under PIL's, over ours
    assert status == 413 and err["error"] == "big.png: 8000x8000 pixels is too large (expected at most 40 megapixels)"
    # A body over the limit is refused from its Content-Length, unread (none is sent here).
    status, err = _post(server, "/api/upload?name=huge.png", headers={"Content-Length": str(MAX_UPLOAD + 1)})
    assert status == 413 and err["error"] == f"huge.png: upload of {MAX_UPLOAD + 1} bytes is too large (expected at most 20 MiB)"
    status, err = _post(server, "/api/upload?name=x.png", headers={"Content-Length": "-5"})
    assert status == 400 and "Content-Length '-5'" in err["error"]
    assert _get(server + "api/info")[0] == 200  # the server still answers


def test_cross_origin_posts_are_refused(server):
    buf = io.BytesIO()
    Image.new("RGB", (20, 20), (10, 200, 10)).save(buf, format="PNG")
    n_images = len(_get(server + "api/info")[1]["images"])
    own = server.rstrip("/")
    for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"}, {"Origin": own.replace("127.0.0.1", "127.0.0.2")},
                    {"Host": "evil.example" + own[own.rindex(":"):]}):
        status, err = _post(server, "/api/upload?name=g.png", buf.getvalue(), headers)
        assert status == 403 and ("cross-origin POST refused" in err["error"] or "expected this server" in err["error"]), (headers, err)
    assert len(_get(server + "api/info")[1]["images"]) == n_images  # nothing was added
    for origin in (own, own.replace("127.0.0.1", "localhost")):
        status, up = _post(server, "/api/upload?name=g.png", buf.getvalue(), {"Origin": origin})
        assert status == 200 and up["source"] == "upload"


def test_static_export(tmp_path, explorer):
    html = export_static(explorer, tmp_path / "site", draws=2, per_source=2)
    manifest = json.loads((tmp_path / "site" / "manifest.json").read_text())
    assert sorted(manifest["samples"]) == ["img-0", "img-1"] and manifest["draws"] == 2
    draws = manifest["samples"]["img-0"]
    assert [d["seed"] for d in draws] == [0, 1] and draws[0]["png"]["mask"] != draws[1]["png"]["mask"]
    for d in draws:
        for rel in d["png"].values():
            assert Image.open(tmp_path / "site" / rel).size == (256, 256)
    assert "const STATIC = {" in html.read_text()


def test_the_figure_caption_names_the_draw_its_rows_share():
    """A seed fixes the masks: rows of the first draw share them, and the caption says so
    (the README called them "one mask draw each"); labels are drawn with real word spaces."""
    from ijepa.explore.export import figure_caption, label_font

    assert figure_caption([{"seed": 0}] * 4).startswith("one mask draw (seed 0), the same for every row")
    assert figure_caption([{"seed": 0}, {"seed": 1}]).startswith("mask draws (seeds 0, 1)")
    font = label_font()
    assert font.getlength(" ") >= 0.25 * font.size  # Pillow's default: 2 px, "(a) contextseen"


def test_cli_export_and_errors(tmp_path):
    from ijepa.cli import app
    from ijepa.cli import explore as _registers  # noqa: F401

    runner = CliRunner()
    out = tmp_path / "site"
    images = write_image_folder(tmp_path / "imgs", 2)
    args = ["explore", "--out", str(out), "--draws", "1", "--fashion-mnist", "2", "--images", str(images), *sum([["--set", s] for s in ("meta.depth=1", "meta.pred_depth=1", "meta.pred_emb_dim=48")], [])]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert (out / "index.html").exists() and str(out / "index.html") in r.output
    manifest = json.loads((out / "manifest.json").read_text())
    sources = {im["source"] for im in manifest["info"]["images"]}
    assert manifest["info"]["images"][0]["id"] == "folder-0" and {"folder", "samples"} <= sources
    (out / "index.html").write_text("an earlier page")
    r = runner.invoke(app, args)  # issue 42: it overwrote index.html silently
    assert r.exit_code == 2 and r.output.strip() == f"error: {out}: exists and is not empty; choose a new --out, or pass --force to overwrite its files"
    assert (out / "index.html").read_text() == "an earlier page"
    r = runner.invoke(app, [*args, "--force"])
    assert r.exit_code == 0 and "const STATIC = {" in (out / "index.html").read_text(), r.output
    r = runner.invoke(app, ["explore", str(tmp_path / "missing"), "--out", str(tmp_path / "new")])
    assert r.exit_code == 2 and "checkpoint not found" in r.output
    r = runner.invoke(app, ["explore", str(out), "--set", "meta.depth=1"])
    assert r.exit_code == 2 and "random init" in r.output


def test_package_photos_are_found():
    paths = package_photo_paths()
    assert paths and all(p.is_file() for p in paths)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]


@pytest.mark.skipif(CHROMIUM is None, reason="headless browser test needs Debian's chromium")
def test_page_in_headless_chromium(server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        try:
            _drive_page(page, server)
            assert not errors, errors
        except Exception:
            shot = tmp_path / "explore_failure.png"
            page.screenshot(path=str(shot), full_page=True)
            print(f"screenshot of the failing page: {shot}")
            raise
        finally:
            browser.close()


def _drive_page(page, url: str) -> None:
    page.set_default_timeout(15_000)
    page.goto(url)
    page.wait_for_function("document.body.dataset.seed === '0' && document.getElementById('mask').naturalWidth > 0")
    assert "RANDOM INIT" in page.inner_text("#model")
    # No decoder: the decoded panels are not drawn and say why; the context panel is.
    assert page.is_hidden("#dpred") and page.is_hidden("#mae") and page.is_visible("#ctx")
    assert "No decoder" in page.inner_text(".nodecoder") and "is small" in page.inner_text("#gallerynote")
    before = page.get_attribute("#mask", "src")
    page.click("#mask")
    page.wait_for_function("document.body.dataset.seed === '1'")
    assert page.get_attribute("#mask", "src") != before, "a click must re-sample the masks"
    # The heat-map is drawn: decoded at full size, with more than a few distinct colours.
    colours = page.evaluate("""() => {
        const img = document.getElementById('heat'), c = document.createElement('canvas');
        c.width = img.naturalWidth; c.height = img.naturalHeight;
        const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
        const d = ctx.getImageData(0, 0, c.width, c.height).data, seen = new Set();
        for (let i = 0; i < d.length; i += 4) seen.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
        return [c.width, seen.size];
    }""")
    assert colours[0] == 256 and colours[1] > 10, colours
    heat = page.get_attribute("#heat", "src")
    page.check("#stretch")  # the same cosines, colours stretched over this draw's range
    assert page.get_attribute("#heat", "src") != heat and "…" in page.inner_text("#scalelabel")
    page.fill("input[name=npred]", "2")
    page.dispatch_event("input[name=npred]", "change")
    page.wait_for_function("document.getElementById('targets').innerText.split('\\n').length === 2")
    assert "loss" in page.inner_text("#loss")
    # Uploads from the page itself pass the same-origin check; a bomb shows its one-line 413.
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(buf, format="PNG")
    page.set_input_files("#upload", files=[{"name": "red.png", "mimeType": "image/png", "buffer": buf.getvalue()}])
    page.wait_for_function("document.getElementById('name').innerText === 'red.png' && document.getElementById('status').innerText === ''")
    assert page.inner_text("#error") == ""  # idle, so no later draw clears the next error
    page.set_input_files("#upload", files=[{"name": "bomb.png", "mimeType": "image/png", "buffer": _png_header(30_000, 30_000)}])
    page.wait_for_function("document.getElementById('error').innerText.length > 0")
    assert page.inner_text("#error") == "bomb.png: too many pixels (expected at most 40 megapixels)"


# -- decoded predictions (issue 23), the data-flow legend and the gallery (issue 26) --------


@pytest.fixture(scope="module")
def decoded_explorer(tmp_path_factory):
    """A tiny run with a mean decoder (20 steps) and a diffusion decoder (4 steps) trained for
    it, and a tiny MAE run beside it."""
    root = tmp_path_factory.mktemp("decoded")
    run = write_tiny_run(root / "run")
    model = load_explore_model(run)
    train, _ = run_dataset(model, "train")
    spec = spec_for(model.target_encoder, str(run), *model.mean_std)
    DecoderTrainer(model.target_encoder, spec, train, mask_collator(model, 0), root / "run" / "decoder", tiny_tc(20),
                   device=torch.device("cpu")).fit()
    DiffusionTrainer(model.target_encoder, spec, train, mask_collator(model, 0), diffusion_dir(run), tiny_dtc(4),
                     device=torch.device("cpu")).fit()
    cfg = tiny_cfg("meta.dec_depth=1", "meta.dec_emb_dim=64")
    torch.manual_seed(0)
    mae = MAE(cfg)
    torch.save({"encoder": mae.encoder.state_dict(), "decoder": mae.decoder.state_dict(),
                "target_encoder": mae.encoder.state_dict(), "config": cfg.to_dict(), "step": 3}, root / "mae.pt")
    decoder, note = find_decoder(model, run, None)
    assert decoder is not None and note == ""
    extras = Extras(decoder=decoder, mae=load_mae(root / "mae.pt", model), diffusion=find_diffusion(model, run)[0])
    assert extras.diffusion is not None
    base = tiny_explorer(3)
    return type(base)(model, list(base.items.values()), device=torch.device("cpu"), extras=extras), root


def test_decoded_panels_paint_the_decoder_output(decoded_explorer):
    explorer, _ = decoded_explorer
    s = explorer.sample("img-1", explorer.defaults, 3)
    assert {"context", "decoded_target", "decoded_pred", "mae"} <= set(s.pngs)
    assert all("pred_mse" in t and "target_mse" in t for t in s.data["targets"])
    # Recompute the last block's decoded prediction and find it in the PNG, pixel for pixel.
    context, targets = sample_masks(explorer.defaults, explorer.model, 3)
    x = explorer._input([explorer.item("img-1")])
    a = analyse(explorer.model, x, context, targets)
    dec, k = explorer.extras.decoder, len(targets) - 1
    for key, tokens in (("decoded_pred", a.predictions[k : k + 1]), ("decoded_target", layer_normed(a.features)[None, targets[k]])):
        patches = torch.zeros(1, 64, 16)
        patches[0, targets[k]] = dec(tokens, targets[k][None])[0]
        want = (to_unit_pixels(unpatchify(patches, 4, (8, 8), 1), dec.spec)[0, 0] * 255).round()
        got = np.asarray(Image.open(io.BytesIO(s.pngs[key])))[..., 0]
        r, c = divmod(int(targets[k][len(targets[k]) // 2]), 8)  # a patch inside the block, off its outline
        for py in range(1, 3):
            for px in range(1, 3):
                assert abs(int(got[(r * 4 + py) * 8 + 4, (c * 4 + px) * 8 + 4]) - want[r * 4 + py, c * 4 + px]) <= 1, key
    assert s.pngs["decoded_pred"] != s.pngs["decoded_target"]
    assert s.pngs["decoded_pred"] != explorer.sample("img-1", explorer.defaults, 4).pngs["decoded_pred"]


def test_without_a_decoder_the_page_says_how_to_train_one(explorer, decoded_explorer, tmp_path):

    info = explorer.info()
    assert not info["decoder"] and "`ijepa decoder train RUN`" in info["decoder_note"]
    assert "random init has none" in find_decoder(explorer.model, None, None)[1]
    s = explorer.sample("img-0", explorer.defaults, 0)
    assert "context" in s.pngs and "decoded_pred" not in s.pngs and "pred_mse" not in s.data["targets"][0]
    _, root = decoded_explorer
    bare = load_explore_model(root / "run")
    run2 = tmp_path / "run2"
    run2.mkdir()
    torch.save(torch.load(root / "run" / "checkpoint.pt", weights_only=True), run2 / "checkpoint.pt")
    decoder, note = find_decoder(bare, run2, None)
    assert decoder is None and f"ijepa decoder train {run2}" in note
    assert "reload" not in note  # the explorer reads the decoder when it starts; a static export cannot reload at all
    moved = load_explore_model(write_tiny_run(tmp_path / "moved", shift=0.2))  # the run trained on: another encoder
    decoder, note = find_decoder(moved, root / "run", None)
    assert decoder is None and "decoder trained for" in note
    with pytest.raises(ValueError, match="not an MAE run"):
        load_mae(root / "run", bare)
    with pytest.raises(ValueError, match="MAE run has grid 8x8"):
        load_mae(root / "mae.pt", load_explore_model(write_tiny_run(tmp_path / "big", "data.crop_size=48")))


def test_legend_says_why_the_context_is_small_and_the_gallery_is_small(explorer):
    info = explorer.info()
    why = info["context_why"]
    assert "7x7 = 49 of 64 patches" in why and "over 200 draws the context averages" in why, why
    settings = explorer.defaults
    fractions = [len(sample_masks(settings, explorer.model, s)[0]) / 64 for s in range(200)]
    assert abs(float(why.split("averages ")[1].split("%")[0]) - 100 * np.mean(fractions)) < 5  # other seeds, same law
    assert info["gallery"] == {"size": 5, "name": "the page's images", "small": True}
    html = page_html()
    assert "Target encoder" in html and "EMA" in html and "deterministic" in html


@pytest.fixture(scope="module")
def decoded_server(decoded_explorer):
    yield from serving(decoded_explorer[0])


@pytest.mark.skipif(CHROMIUM is None, reason="headless browser test needs Debian's chromium")
def test_decoded_predictions_in_headless_chromium(decoded_server):
    sync_api = pytest.importorskip("playwright.sync_api")
    count = """(id) => {
        const img = document.getElementById(id), c = document.createElement('canvas');
        c.width = img.naturalWidth; c.height = img.naturalHeight;
        const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
        const d = ctx.getImageData(0, 0, c.width, c.height).data, seen = new Set();
        for (let i = 0; i < d.length; i += 4) seen.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
        return [c.width, seen.size, img.hidden];
    }"""
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1400})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.set_default_timeout(15_000)
            page.goto(decoded_server)
            page.wait_for_function("document.body.dataset.seed === '0' && document.getElementById('dpred').naturalWidth > 0")
            for panel in ("ctx", "dtarget", "dpred", "mae", "dsamples"):
                width, colours, hidden = page.evaluate(count, panel)
                assert width == 256 and colours > 10 and not hidden and page.is_visible(f"#{panel}"), (panel, colours)
            assert "pixel MSE" in page.inner_text("#dprederr") and page.inner_text(".nodecoder") == ""
            assert "MAE" in page.inner_text("#maelabel") and "Why the context is small" in page.inner_text("#contextwhy")
            assert "sample" in page.inner_text("#dsampleslabel")
            before = {k: page.get_attribute(f"#{k}", "src") for k in ("dpred", "dtarget", "ctx", "mae", "dsamples")}
            page.click("#resample")
            page.wait_for_function("document.body.dataset.seed === '1'")
            for k, src in before.items():
                assert page.get_attribute(f"#{k}", "src") != src, f"{k} must change when the masks are re-sampled"
            assert not errors, errors
        finally:
            browser.close()


def test_static_export_carries_the_decoded_panels(decoded_explorer, tmp_path):
    explorer, _ = decoded_explorer
    export_static(explorer, tmp_path / "site", draws=1, per_source=1)
    manifest = json.loads((tmp_path / "site" / "manifest.json").read_text())
    (draw,) = manifest["samples"]["img-0"]
    assert {"context", "decoded_target", "decoded_pred", "sampled_pred", "mae"} <= set(draw["png"])
    assert all((tmp_path / "site" / rel).is_file() for rel in draw["png"].values())
    assert {n["id"] for n in draw["neighbours"]} <= set(manifest["thumbs"])
    with Image.open(tmp_path / "site" / "figure.png") as fig:  # one row per exported image, seven panels
        assert fig.size == (7 * 262 - 6, 44 + 262 * len(manifest["samples"]) - 6)  # a caption line above the panel names


def test_a_fashion_mnist_model_searches_a_val_gallery():
    from ijepa.explore import open_explorer

    explorer = open_explorer(None, overrides=["meta.depth=1", "meta.pred_depth=1", "meta.pred_emb_dim=48"],
                             fashion_mnist=3, gallery=60)
    info = explorer.info()
    assert info["gallery"] == {"size": 60, "name": "Fashion-MNIST val", "small": True}
    assert [im["id"] for im in info["images"] if im["source"] == "fashion-mnist"] == ["fmnist-0", "fmnist-1", "fmnist-2"]
    found = explorer.neighbours("fmnist-1")
    assert len(found) == 5 and "fmnist-1" not in {n["id"] for n in found}
    assert any(int(n["id"].split("-")[1]) >= 3 for n in explorer.neighbours("fmnist-0") + found)  # beyond the page's images


# -- encoder-only models: Hugging Face and timm I-JEPA files (issue 24) ------------------------


def _hf_dir(root):
    """A tiny HF IJepaModel (8x8 grid of 4 px, 1 channel, width 96: 3 heads only from config.json)."""
    from transformers import IJepaConfig, IJepaModel

    torch.manual_seed(0)
    hf = IJepaModel(IJepaConfig(hidden_size=96, num_hidden_layers=1, num_attention_heads=3, intermediate_size=192,
                                layer_norm_eps=1e-6, image_size=32, patch_size=4, num_channels=1)).eval()
    with torch.no_grad():  # HF's init zeroes biases: perturb everything
        for p in hf.parameters():
            p.add_(0.05 * torch.randn_like(p))
    hf.save_pretrained(root)
    return hf


def _timm_dir(root):
    """A tiny timm I-JEPA ViT (gap pooling, no class token) in timm's hub layout."""
    import timm
    from timm.models import save_for_hf

    torch.manual_seed(0)
    vit = timm.create_model("vit_base_patch16_gap_224", pretrained=False, num_classes=0, embed_dim=96, depth=1, num_heads=3,
                            patch_size=4, img_size=32, in_chans=3, class_token=False, global_pool="avg", fc_norm=False).eval()
    save_for_hf(vit, root, safe_serialization=True)
    return vit


ENCODER_ONLY = "holds one encoder and no predictor, so the prediction-vs-target cosine and the decoded predictions are hidden"


@pytest.mark.parametrize("fmt", ["hf", "timm"])
def test_hf_and_timm_models_open_encoder_only(tmp_path, fmt):
    net = (_hf_dir if fmt == "hf" else _timm_dir)(tmp_path / fmt)
    model = load_explore_model(tmp_path / fmt)
    assert model.predictor is None and model.grid == (8, 8) and model.encoder.num_heads == 3 and "(encoder only)" in model.label
    assert ENCODER_ONLY in model.encoder_only and "official checkpoints' context encoder" in model.encoder_only
    if fmt == "timm":  # the statistics timm's config.json records
        assert model.mean_std == (tuple(net.pretrained_cfg["mean"]), tuple(net.pretrained_cfg["std"]))
    base = tiny_explorer(3)
    explorer = type(base)(model, list(base.items.values()), device=torch.device("cpu"))
    s = explorer.sample("img-1", explorer.defaults, 2)
    assert {"image", "mask", "pca", "context"} <= set(s.pngs) and not {"heat", "heat_stretched", "decoded_pred"} & set(s.pngs)
    assert not {"loss", "mean_cos", "heat"} & set(s.data) and all("mean_cos" not in t for t in s.data["targets"])
    assert len(s.data["neighbours"]) == 2 and explorer.info()["encoder_only"] == model.encoder_only
    x = explorer._input([explorer.item("img-1")])  # the PCA's features are the file's own encoder's
    with torch.no_grad():
        want = net(x).last_hidden_state if fmt == "hf" else net.forward_features(x)
    torch.testing.assert_close(analyse(model, x, *sample_masks(explorer.defaults, model, 2)).features, want[0], atol=1e-5, rtol=0)


def test_encoder_only_static_export_and_refusals(tmp_path):
    from ijepa.decoder.runs import train_decoders
    from ijepa.explore import open_explorer

    _hf_dir(tmp_path / "hf")
    explorer = open_explorer(tmp_path / "hf", images=write_image_folder(tmp_path / "imgs", 2), fashion_mnist=0)
    assert explorer.extras.decoder is None and "one encoder and no predictor" in explorer.info()["decoder_note"]
    export_static(explorer, tmp_path / "site", draws=1, per_source=1)
    manifest = json.loads((tmp_path / "site" / "manifest.json").read_text())
    assert ENCODER_ONLY in manifest["info"]["encoder_only"] and manifest["info"]["in_chans"] == 1
    for draws in manifest["samples"].values():
        assert "pca" in draws[0]["png"] and "heat" not in draws[0]["png"] and "loss" not in draws[0]
    assert not list((tmp_path / "site" / "png").glob("*heat*"))
    with pytest.raises(ValueError, match="--decoder: .* holds one encoder and no predictor"):
        find_decoder(explorer.model, tmp_path / "hf", tmp_path / "hf")
    with pytest.raises(ValueError, match="hf: holds one encoder and no predictor; decoders are trained"):
        train_decoders(tmp_path / "hf")
    assert "const STATIC = {" in page_html(manifest) and 'id="encoderonly"' in page_html()


def test_our_export_opens_with_the_encoder_and_statistics_its_card_names(tmp_path):
    from ijepa.export import export_encoder

    run = load_explore_model(write_tiny_run(tmp_path / "run"))
    out = export_encoder(tmp_path / "run", fmt="hf", out=tmp_path / "hf", results_dir=tmp_path)
    model = load_explore_model(out)
    assert "(its model card says target_encoder)" in model.encoder_only and model.mean_std == run.mean_std
    x = _x(2)
    torch.testing.assert_close(model.encoder(x), run.target_encoder(x), atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def encoder_only_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    _hf_dir(root / "hf")
    base = tiny_explorer(3)
    yield from serving(type(base)(load_explore_model(root / "hf"), list(base.items.values()), device=torch.device("cpu")))


@pytest.mark.skipif(CHROMIUM is None, reason="headless browser test needs Debian's chromium")
def test_encoder_only_page_in_headless_chromium(encoder_only_server):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1400})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.set_default_timeout(15_000)
            page.goto(encoder_only_server)
            page.wait_for_function("document.body.dataset.seed === '0' && document.getElementById('pca').naturalWidth > 0")
            assert page.is_hidden("#heatpanel") and page.is_hidden("#dpredpanel")
            assert page.is_visible("#mask") and page.is_visible("#pca") and page.is_visible("#ctx")
            assert ENCODER_ONLY in page.inner_text("#encoderonly") and "(encoder only)" in page.inner_text("#model")
            assert "mean cos" not in page.inner_text("#targets") and page.query_selector_all("#neighbours img")
            page.click("#resample")
            page.wait_for_function("document.body.dataset.seed === '1'")
            assert not errors, errors
        finally:
            browser.close()
