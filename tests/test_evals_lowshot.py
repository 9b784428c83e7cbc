"""Low-shot splits (class-balanced, seeded, subset files) and the three protocols, plus k-NN."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
import torch.nn.functional as F
from fixtures.imagefolder import CLASSES, write_imagefolder
from typer.testing import CliRunner

from ijepa.data.fashion_mnist import DEFAULT_ROOT
from ijepa.evals.core.encoders import EncoderSpec, build_encoder
from ijepa.evals.core.finetune import Classifier, FinetuneConfig
from ijepa.evals.core.fit import GridConfig
from ijepa.evals.core.train import layer_decay_groups
from ijepa.evals.entries.knn import KnnSpec
from ijepa.evals.entries.lowshot import LowshotSpec
from ijepa.evals.knn import knn_predict, run_knn
from ijepa.evals.lowshot import (
    SIMCLR_MD5,
    class_balanced_split,
    read_subset,
    row_names,
    run_lowshot,
    write_subset,
)
from ijepa.models.registry import create_encoder
from ijepa.typedconfig import OptionError

RGB = EncoderSpec(random_init="vit_tiny", depth=1, img_size=32, patch_size=8, in_chans=3)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_imagefolder(tmp_path_factory.mktemp("if"))


def test_class_balanced_split_is_balanced_and_reproducible():
    labels = torch.arange(5).repeat_interleave(torch.tensor([100, 200, 300, 400, 500]))
    rows = class_balanced_split(labels, 0.05, seed=0)
    assert torch.bincount(labels[rows]).tolist() == [15] * 5  # 5% of 1500 / 5 classes each
    assert torch.equal(rows, class_balanced_split(labels, 0.05, seed=0))
    assert not torch.equal(rows, class_balanced_split(labels, 0.05, seed=1))
    assert len(class_balanced_split(labels, 1e-6, seed=0)) == 5  # at least one per class


def test_subset_files_round_trip_and_name_unknown_lines(tmp_path, tree):
    names = row_names(str(tree))
    assert names[0].startswith(CLASSES[0]) and names[0].endswith(".png")
    rows = torch.tensor([0, 5, 13, 40])
    write_subset(tmp_path / "1percent.txt", rows, names)
    assert torch.equal(read_subset(tmp_path / "1percent.txt", names), rows)
    (tmp_path / "bad.txt").write_text(f"{names[1]}\nn9999_missing.JPEG\n")
    with pytest.raises(ValueError, match=r"bad.txt:2: 'n9999_missing.JPEG'"):
        read_subset(tmp_path / "bad.txt", names)
    assert row_names("fashion-mnist")[:3] == ["0", "1", "2"]


def test_lowshot_logreg_mean_std_over_seeds_and_written_splits(tmp_path, tree):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rec = run_lowshot(RGB, LowshotSpec(data=str(tree), fractions=(0.25, 0.5), seeds=(0, 1), write_splits=tmp_path / "splits"),
                          cache_dir=tmp_path / "c")
    assert rec["kind"] == "eval.lowshot" and rec["protocol"] == "logreg" and rec["solver"] == "torch-lbfgs-precond"
    quarter = rec["fractions"]["0.25"]
    assert [r["n_labelled"] for r in quarter["seeds"]] == [12, 12]  # 3 per class x 4 classes
    rows = [r for f in rec["fractions"].values() for r in f["seeds"]]
    assert all(r["converged"] and r["cv_converged"] and r["n_iter"] > 0 for r in rows)  # every fit ran to its tolerance
    assert not [w for w in caught if "converge" in str(w.message) or "logistic regression" in str(w.message)]
    vals = [r["top1"] for r in quarter["seeds"]]
    assert quarter["top1"] == pytest.approx(sum(vals) / 2) and quarter["top1_std"] == pytest.approx(abs(vals[0] - vals[1]) / 2**0.5)
    assert rec["top1"] == quarter["top1"] > 0.5  # 4 classes: chance is 0.25
    assert sorted(p.name for p in (tmp_path / "splits").iterdir()) == [
        "25percent-seed0.txt", "25percent-seed1.txt", "50percent-seed0.txt", "50percent-seed1.txt"]
    again = run_lowshot(RGB, LowshotSpec(data=str(tree), fractions=(0.25,), seeds=(1,), protocol="heads", subset_dir=tmp_path / "splits",
                                         grid=GridConfig(lrs=(0.1,), epochs=2, batch_size=8, min_steps=50)), cache_dir=tmp_path / "c")
    row = again["fractions"]["0.25"]["seeds"][0]
    assert row["split"].endswith("25percent-seed1.txt") and row["head"].startswith(("lastPOOL", "concatPOOL4"))
    assert "subset_files" not in rec  # drawn splits: the record is as before
    (read,) = again["subset_files"]
    assert read["path"].endswith("25percent-seed1.txt") and len(read["md5"]) == 32 and read["is_simclr"] is None  # no md5 on record


def test_a_given_1percent_file_is_checked_against_simclrs_md5_and_used_either_way(tmp_path, tree, monkeypatch):
    """A generated `1percent.txt` is not SimCLR's: the record says so (md5, is_simclr false) and
    scores it all the same; the same bytes under SimCLR's md5 read as SimCLR's."""
    import hashlib

    names = row_names(str(tree))
    write_subset(tmp_path / "1percent.txt", torch.arange(0, len(names), 4), names)
    spec = LowshotSpec(data=str(tree), fractions=(0.01,), seeds=(0,), protocol="heads", subset_dir=tmp_path,
                       grid=GridConfig(lrs=(0.1,), epochs=1, batch_size=8, min_steps=5))
    rec = run_lowshot(RGB, spec, cache_dir=tmp_path / "c")
    md5 = hashlib.md5((tmp_path / "1percent.txt").read_bytes()).hexdigest()
    assert SIMCLR_MD5["1percent.txt"] == "b61c91b8ddb75fabdb02a9bb2ae3bd74"
    assert rec["subset_files"] == [{"path": str(tmp_path / "1percent.txt"), "md5": md5, "is_simclr": False}]
    assert rec["fractions"]["0.01"]["seeds"][0]["n_labelled"] == len(range(0, len(names), 4))
    monkeypatch.setitem(SIMCLR_MD5, "1percent.txt", md5)
    assert run_lowshot(RGB, spec, cache_dir=tmp_path / "c")["subset_files"][0]["is_simclr"] is True


def test_finetune_protocol_trains_with_layer_decay(tree):
    enc = create_encoder("vit_tiny", img_size=32, patch_size=8, in_chans=3, depth=2)
    groups = layer_decay_groups(Classifier(enc, 4), weight_decay=0.05, layer_decay=0.75)
    scales = sorted({g["lr_scale"] for g in groups})
    assert scales == pytest.approx([0.75**3, 0.75**2, 0.75, 1.0])
    assert all(g["weight_decay"] == 0 for g in groups if all(p.ndim == 1 for p in g["params"]))
    rec = run_lowshot(RGB, LowshotSpec(data=str(tree), fractions=(0.5,), seeds=(0,), protocol="finetune",
                                       finetune=FinetuneConfig(epochs=2, batch_size=8, warmup_epochs=1)))
    assert rec["protocol"] == "finetune" and 0 <= rec["top1"] <= 1 and rec["finetune"]["layer_decay"] == 0.75


def test_finetune_protocol_trains_and_scores_at_img_size(tree, monkeypatch):
    sides = set()
    forward = Classifier.forward
    monkeypatch.setattr(Classifier, "forward", lambda self, x: sides.add(x.shape[-1]) or forward(self, x))
    cfg = FinetuneConfig(epochs=1, batch_size=8, warmup_epochs=0)
    rec = run_lowshot(RGB, LowshotSpec(data=str(tree), fractions=(0.5,), seeds=(0,), protocol="finetune", img_size=16, finetune=cfg))
    assert sides == {16} and rec["img_size"] == 16  # the fine-tuning crops and the scored images (was: the encoder's 32)
    with pytest.raises(OptionError, match="img_size is 12"):
        run_lowshot(RGB, LowshotSpec(data=str(tree), fractions=(0.5,), seeds=(0,), protocol="finetune", img_size=12, finetune=cfg))


def test_knn_votes_are_the_dino_weighted_sum():
    bank = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    labels = torch.tensor([0, 1, 1])
    q = torch.tensor([[1.0, 0.05]])
    scores = knn_predict(bank, labels, q, ks=(1, 3), temperature=0.5, num_classes=2)
    sims = F.normalize(q, dim=1) @ F.normalize(bank, dim=1).T
    w = (sims[0] / 0.5).exp()
    assert scores[1].argmax().item() == 0
    assert torch.allclose(scores[3][0], torch.stack([w[0], w[1] + w[2]]))


def test_run_knn_on_imagefolder(tmp_path, tree):
    spec = KnnSpec(data=str(tree), ks=(1, 5))
    rec = run_knn(RGB, spec, cache_dir=tmp_path)
    assert rec["kind"] == "eval.knn" and rec["top1"] > 0.5 and rec["best_k"] in (1, 5)
    assert len(rec["scores"]) == 2 and rec["n_train"] == 48 and rec["n_val"] == 24  # depth 1: both sets are the one block's pool
    assert {r["features"] for r in rec["scores"]} == {"lastPOOL"}
    module = build_encoder(RGB)[0]  # an in-memory encoder (e.g. mid-training) is keyed by its weights
    again = run_knn(module, spec, cache_dir=tmp_path)
    assert again["encoder"].startswith("module-") and again["scores"] == rec["scores"]
    assert len(list(tmp_path.glob("*.pt"))) == 2  # the same weights: the spec's cache entries serve it


@pytest.mark.skipif(not (DEFAULT_ROOT / "train-labels-idx1-ubyte.gz").exists(), reason="Debian's Fashion-MNIST not installed")
def test_lowshot_cli_takes_train_and_eval_limits(tmp_path):
    """`--train-limit` is the stratified subset the splits are drawn from; one that cannot hold every class is one line."""
    import ijepa.cli.evals  # noqa: F401  (registers the commands)
    from ijepa.cli import app

    args = ["eval", "lowshot", "--random-init", "vit_tiny", "--depth", "1", "--device", "cpu", "--data", "fashion-mnist",
            "--eval-limit", "100", "--fractions", "0.1", "--seeds", "0", "--results", str(tmp_path), "--no-cache", "--json"]
    res = CliRunner().invoke(app, [*args, "--train-limit", "200"])
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout.splitlines()[-1])
    tenth = rec["fractions"]["0.1"]
    assert rec["train_limit"] == 200 and rec["n_train_pool"] == 200 and rec["n_train"] == 20 and rec["n_test"] == 100
    assert tenth["seeds"][0]["n_labelled"] == 20 and tenth["labelled_fraction"] == 0.1  # 2 per class of the 200
    refused = CliRunner().invoke(app, [*args, "--train-limit", "5"])
    assert refused.exit_code == 2 and "5 of 10 classes without an image" in refused.output and "Traceback" not in refused.output
