"""Evals at scale (issue 38): two gloo ranks write the one-process record, a SIGKILLed extraction
resumes from its finished chunks, bfloat16 features are cached apart, the options are checked."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from fixtures.fmnist import write_fmnist
from fixtures.imagefolder import write_imagefolder
from typer.testing import CliRunner

from ijepa.data import data_spec
from ijepa.evals.core.config import FIXTURE_ENCODER
from ijepa.evals.core.encoders import EncoderSpec, build_encoder
from ijepa.evals.core.features import extract_features

ROOT = Path(__file__).resolve().parents[1]
MAIN = "import sys; from ijepa.cli import main; sys.argv[0] = 'ijepa'; main()"  # `ijepa` from this checkout
CHUNK = re.compile(r"-\d{9}-\d{9}-[0-9a-f]{24}\.pt$")  # a finished chunk (never a temp file)
RUN_FIELDS = {"created", "command", "feature_s", "fit_s", "wall_s", "world_size"}  # when and how long, not what


def cli(args: list[str]):
    import ijepa.cli.evals  # noqa: F401  (registers the commands)
    from ijepa.cli import app

    return CliRunner().invoke(app, args)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def _chunks(cache: Path) -> dict[str, tuple[int, int]]:
    """Each finished chunk file's name -> (inode, mtime): a rewritten chunk gets another."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in cache.glob("*.pt") if CHUNK.search(p.name)} if cache.is_dir() else {}


def _record(results: Path) -> dict:
    """The one record under `results`, less the fields of when and how long it ran."""
    (path,) = results.glob("records/*/*.json")
    return {k: v for k, v in json.loads(path.read_text()).items() if k not in RUN_FIELDS}


def _eval(name: str, args: list[str], results: Path, cache: Path) -> dict:
    res = cli(["eval", name, *args, "--results", str(results), "--cache-dir", str(cache), "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout.splitlines()[-1])


@pytest.mark.slow
def test_two_gloo_ranks_write_the_one_process_record(tmp_path):
    """48 train / 24 val images in chunks of 8: rank r extracts chunks r, r + 2, ... of each
    split, rank 0 alone reads them back, fits and writes the very record one process writes."""
    data = write_imagefolder(tmp_path / "data")
    args = [*FIXTURE_ENCODER, "--data", str(data), "--epochs", "2", "--batch-size", "16", "--lrs", "0.1", "--chunk-rows", "8"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each torchrun rank runs (OMP_NUM_THREADS=1): the heads' float sums then agree bit for bit
    try:
        assert _eval("linear", args, tmp_path / "one", tmp_path / "cache1")["world_size"] == 1
    finally:
        torch.set_num_threads(threads)
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master-port", str(free_port()), "--no-python",
         sys.executable, "-c", MAIN, "eval", "linear", *args, "--results", str(tmp_path / "two"), "--cache-dir", str(tmp_path / "cache2"),
         "--json"], capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stderr
    assert len([line for line in run.stdout.splitlines() if line.startswith("{")]) == 1  # rank 0 prints; rank 1 only its progress
    two = json.loads(run.stdout.splitlines()[-1])
    assert two["world_size"] == 2 and two["feature_dtype"] == "float32"
    assert _record(tmp_path / "two") == _record(tmp_path / "one")  # one record, the same numbers
    shares = {(m[1], int(m[2])): (m[3], int(m[4])) for m in re.finditer(r"features (\w+) rank (\d)/2: extracted chunks ([\d, ]+) of (\d+)", run.stderr)}
    assert shares == {("train", 0): ("1, 3, 5", 6), ("train", 1): ("2, 4, 6", 6), ("val", 0): ("1, 3", 3), ("val", 1): ("2", 3)}, run.stderr
    assert len(_chunks(tmp_path / "cache2")) == len(_chunks(tmp_path / "cache1")) == 9


@pytest.mark.slow
def test_a_sigkilled_extraction_resumes_from_its_finished_chunks(tmp_path):
    """A real SIGKILL once the first chunk file is written (700 images, one a batch, 14 chunks):
    the rerun keeps every finished chunk file as it was and ends with the uninterrupted record."""
    data = write_imagefolder(tmp_path / "data", per_class={"train": 150, "val": 25})
    args = [*FIXTURE_ENCODER, "--data", str(data), "--ks", "1,3", "--feature-batch-size", "1", "--chunk-rows", "50"]
    cache = tmp_path / "cache"
    with open(tmp_path / "killed.log", "w") as log:
        child = subprocess.Popen([sys.executable, "-c", MAIN, "eval", "knn", *args, "--results", str(tmp_path / "killed"),
                                  "--cache-dir", str(cache)], stdout=log, stderr=log, env=_env(), cwd=tmp_path)
        deadline = time.monotonic() + 120
        while not _chunks(cache) and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        running = child.poll() is None
        child.send_signal(signal.SIGKILL)
        assert child.wait() == -signal.SIGKILL and running, (tmp_path / "killed.log").read_text()
    kept = _chunks(cache)
    assert 1 <= len(kept) < 14 and not (tmp_path / "killed").exists()
    _eval("knn", args, tmp_path / "resumed", cache)
    after = _chunks(cache)
    assert len(after) == 14 and {name: after[name] for name in kept} == kept  # finished chunks read, never redone
    _eval("knn", args, tmp_path / "whole", tmp_path / "cache_whole")
    assert _record(tmp_path / "resumed") == _record(tmp_path / "whole")


def test_bfloat16_features_are_cached_apart_and_recorded(tmp_path):
    data = write_imagefolder(tmp_path / "data")
    args, cache = [*FIXTURE_ENCODER, "--data", str(data), "--ks", "1,3"], tmp_path / "cache"
    assert _eval("knn", args, tmp_path / "r32", cache)["feature_dtype"] == "float32"
    fp32 = _chunks(cache)
    assert _eval("knn", [*args, "--dtype", "bfloat16"], tmp_path / "r16", cache)["feature_dtype"] == "bfloat16"

    def rows(name: str) -> str:  # a chunk's range and its rows' digest: the same each way, the key before them not
        return name.split("-", 1)[1]
    bf16 = {rows(name): name for name in _chunks(cache) if name not in fp32}
    assert len(fp32) == 2 and sorted(bf16) == sorted(map(rows, fp32))  # train and val each way, no file shared
    for name in fp32:  # the same rows, other features: the forward ran under bfloat16 autocast
        a, b = (torch.load(cache / n, weights_only=True)["concat"] for n in (name, bf16[rows(name)]))
        assert a.shape == b.shape and not torch.equal(a, b)
    _eval("knn", [*args, "--dtype", "bfloat16"], tmp_path / "r16b", cache)
    assert len(_chunks(cache)) == 4  # a second bf16 run reads its own entries


def test_float32_keeps_the_cache_key_caches_were_written_under(tmp_path):
    """The file name the code before `--dtype` gave this extraction: existing caches still hit."""
    root = write_fmnist(tmp_path / "fm", n_train=24, n_test=8)
    enc, _, key = build_encoder(EncoderSpec(random_init="vit_tiny", depth=1, img_size=32, patch_size=8, in_chans=1))
    extract_features(enc, key, data_spec(f"fashion-mnist:{root}"), "train", device=torch.device("cpu"), cache_dir=tmp_path / "c", batch_size=8)
    assert list(_chunks(tmp_path / "c")) == ["f14670cf48dd32503408b719-000000000-000000024-b66d7d9e7b01d79da3a8ce7e.pt"]


def test_extraction_options_and_torchrun_refusals_are_one_line(tmp_path, monkeypatch):
    data = str(write_imagefolder(tmp_path / "data", per_class={"train": 1, "val": 1}))
    cases = [(["knn", "--chunk-rows", "0"], "error: --chunk-rows is 0; expected a number >= 1"),
             (["knn", "--dtype", "float16x"], "error: --dtype is 'float16x'; expected 'float32' or 'bfloat16'")]
    for args, said in cases:
        res = cli(["eval", *args, "--data", data])
        assert res.exit_code == 2 and res.output.strip() == said, res.output
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets it: refused before any group is joined
    res = cli(["eval", "knn", "--no-cache", "--data", data])
    assert res.exit_code == 2 and res.output.strip().startswith("error: --no-cache: under torchrun (WORLD_SIZE is 2)"), res.output
    res = cli(["eval", "detection", "--data", data])
    assert res.exit_code == 2 and res.output.strip().startswith("error: eval detection runs in one process (WORLD_SIZE is 2)"), res.output


def test_lowshot_finetune_refuses_a_torchrun_rank_in_one_line():
    from ijepa.distributed import DistInfo
    from ijepa.evals.entries.lowshot import LowshotSpec
    from ijepa.evals.lowshot import check_finetune

    spec = LowshotSpec(protocol="finetune")
    with pytest.raises(ValueError, match=r"^lowshot --protocol finetune runs in one process; this is rank 1 of 2 \(torchrun\)$"):
        check_finetune(spec, DistInfo(rank=1, world_size=2))
    check_finetune(spec, DistInfo())  # one process: no refusal
