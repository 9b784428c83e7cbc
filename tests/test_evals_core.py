"""Frozen features, their cache, the head grid and the splits, on real Fashion-MNIST rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

import ijepa.evals.core.features as features_mod
from ijepa.data import build_dataset, data_spec, eval_transform
from ijepa.evals.core.encoders import EncoderSpec, build_encoder
from ijepa.evals.core.features import Features, extract_features, fmnist_batches
from ijepa.evals.core.fit import GridConfig, fit_grid, holdout_split, stratified_sample
from ijepa.evals.core.logreg import fit_logreg
from ijepa.evals.core.setup import frozen_splits

TINY = EncoderSpec(random_init="vit_tiny", depth=2, img_size=32, patch_size=4, in_chans=1)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def fmnist_feats(tmp_path_factory):
    """Depth-2 random-init features of 1500 train / 600 test Fashion-MNIST images."""
    cache = tmp_path_factory.mktemp("features")
    train, val, info = frozen_splits(TINY, "fashion-mnist", train_limit=1500, val_limit=600, cache_dir=cache)
    return train, val, info


def test_stratified_sample_keeps_class_proportions_and_is_seeded():
    labels = torch.arange(10).repeat_interleave(torch.arange(10, 110, 10))  # class c has 10 (c + 1) rows
    a = stratified_sample(labels, 0.2, seed=3)
    assert len(a) == round(0.2 * len(labels)) and len(a.unique()) == len(a)
    counts = torch.bincount(labels[a], minlength=10)
    assert torch.allclose(counts.double(), torch.arange(2, 22, 2).double(), atol=1)
    assert torch.equal(a, stratified_sample(labels, 0.2, seed=3))
    assert not torch.equal(a, stratified_sample(labels, 0.2, seed=4))
    fit, held = holdout_split(labels, 0.1, seed=0)
    assert len(set(fit.tolist()) & set(held.tolist())) == 0 and len(fit) + len(held) == len(labels)


def test_fmnist_batched_transform_matches_the_per_image_pipeline():
    spec = data_spec("fashion-mnist")
    ds = build_dataset(spec, "val")
    for chans in (1, 3):
        slow = torch.stack([eval_transform(32, in_chans=chans, mean=spec.mean, std=spec.std)(ds.images[i]) for i in range(8)])
        fast = next(fmnist_batches(ds.images[:8], size=32, in_chans=chans, mean=spec.mean, std=spec.std, batch_size=8))
        assert fast.shape == slow.shape == (8, chans, 32, 32)
        # v2 rounds the resized image to uint8 before scaling: at most ~1/255 apart, normalised
        assert (fast - slow).abs().max() < 1.5 / 255 / spec.std[0]


def test_cache_is_hit_on_the_second_run(tmp_path, monkeypatch):
    enc, _, key = build_encoder(TINY)
    spec = data_spec("fashion-mnist")
    calls = []
    real = features_mod.pooled
    monkeypatch.setattr(features_mod, "pooled", lambda e, x: calls.append(len(x)) or real(e, x))
    rows = torch.arange(0, 300, 3)
    cold = extract_features(enc, key, spec, "train", indices=rows, device=CPU, cache_dir=tmp_path, batch_size=64)
    assert sum(calls) == len(rows) and len(list(tmp_path.glob("*.pt"))) == 1
    calls.clear()
    warm = extract_features(enc, key, spec, "train", indices=rows, device=CPU, cache_dir=tmp_path, batch_size=64)
    assert calls == [] and torch.equal(cold.concat, warm.concat) and torch.equal(cold.labels, warm.labels)
    extract_features(enc, key, spec, "train", indices=rows[:50], device=CPU, cache_dir=tmp_path)  # other rows: a miss
    assert sum(calls) == 50
    assert cold.concat.shape == (len(rows), 2 * enc.embed_dim)  # depth 2: concatPOOL4 pools both blocks
    assert torch.equal(cold.get("lastPOOL"), cold.concat[:, -enc.embed_dim :])


def test_features_are_the_encoders_average_pools():
    enc, _, key = build_encoder(TINY)
    spec = data_spec("fashion-mnist")
    f = extract_features(enc, key, spec, "val", indices=torch.arange(4), device=CPU, cache_dir=None)
    x = next(fmnist_batches(build_dataset(spec, "val").images[:4], size=32, in_chans=1, mean=spec.mean, std=spec.std, batch_size=4))
    with torch.no_grad():
        want = enc(x).mean(1)
    assert torch.allclose(f.get("lastPOOL"), want, atol=2e-3 * want.abs().max())  # stored as float16


def test_structured_features_beat_shuffled_labels(fmnist_feats):
    train, val, info = fmnist_feats
    grid = GridConfig(lrs=(0.03, 0.3), epochs=15, batch_size=64, min_steps=0)
    real = fit_grid(grid, train, {"val": val}, num_classes=10, device=CPU)
    g = torch.Generator().manual_seed(0)
    shuffled = Features(train.concat, train.labels[torch.randperm(len(train), generator=g)], train.width)
    noise = fit_grid(grid, shuffled, {"val": val}, num_classes=10, device=CPU)
    assert real.metrics["val_top1"] > 0.6
    assert noise.metrics["val_top1"] < 0.2
    assert len(real.scores) == 2 * 2 * 2 * 2 and real.best.name in {r["head"] for r in real.scores}
    best_row = next(r for r in real.scores if r["head"] == real.best.name)
    assert best_row["heldout_top1"] == max(r["heldout_top1"] for r in real.scores)


def test_our_head_agrees_with_sklearn_on_the_same_features(fmnist_feats):
    train, val, _ = fmnist_feats
    x, xv = train.get("concatPOOL4").numpy(), val.get("concatPOOL4").numpy()
    sc = StandardScaler().fit(x)
    ref = LogisticRegression(C=1.0, max_iter=1000).fit(sc.transform(x), train.labels.numpy())
    ref_acc = float(np.mean(ref.predict(sc.transform(xv)) == val.labels.numpy()))
    grid = GridConfig(feature_sets=("concatPOOL4",), norms=("bn",), lrs=(0.1,), wds=(5e-4,), epochs=40, batch_size=64, min_steps=0, heldout=0.01)
    ours = fit_grid(grid, train, {"val": val}, num_classes=10, device=CPU).metrics["val_top1"]
    # The SGD grid at a fixed 40 epochs is not yet converged (issue 13 item 6): with
    # scikit-learn 1.9.1 / numpy 2.4.6 it sits 4.5 points below lbfgs on these features
    # (0.685 vs 0.730) on every BLAS thread count; the bound holds that with room to spare.
    assert abs(ours - ref_acc) < 0.08, (ours, ref_acc)


def test_logreg_probe_is_the_raw_pixel_baselines_classifier(fmnist_feats):
    train, val, _ = fmnist_feats
    x, xv = train.get("concatPOOL4").numpy(), val.get("concatPOOL4").numpy()
    sc = StandardScaler().fit(x)
    ref = LogisticRegression(max_iter=1000).fit(sc.transform(x), train.labels.numpy())
    ref_acc = float(np.mean(ref.predict(sc.transform(xv)) == val.labels.numpy()))
    one = fit_logreg(train, {"val": val}, feature_sets=("concatPOOL4",))
    assert one["val_top1"] == pytest.approx(ref_acc, abs=1e-6) and one["heldout_top1"] is None  # nothing chosen
    both = fit_logreg(train, {"val": val}, feature_sets=("lastPOOL", "concatPOOL4"), cs=(1e-4, 1.0))
    assert one["candidates"] == [] and len(both["candidates"]) == 4 and both["C"] == 1.0  # C=1e-4 underfits: held-out train says so
    assert both["heldout_top1"] == max(r["heldout_top1"] for r in both["candidates"])
    assert both["val_top1"] > 0.6 and 0 < both["val_top5"] - both["val_top1"] < 0.4
