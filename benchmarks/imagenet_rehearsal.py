"""A rehearsal of `ijepa eval linear` on ImageNet, on this CPU, projected to the real thing (issue 38).

1. Writes a synthetic ImageNet-shaped folder in the official layout, `train/<wnid>/<wnid>_<i>.JPEG`
   and `val/<wnid>/ILSVRC2012_val_<n>.JPEG`, `--classes` (1000) wnid-shaped class folders of
   seeded JPEGs of 224-320 px a side (so Resize and CenterCrop have work to do).
2. Writes a ViT-H/14 at random init in the official checkpoint format (`--config`'s encoder and
   predictor, `module.` prefixes, `epoch`...). `target_encoder` holds the very tensors of
   `encoder`, as at the start of official training (the target is a copy), so the file stores
   them once (2.6 GB, not 5.1); `opt` is left out (the loader never reads it).
3. Runs the real path as subprocesses, `torchrun --nproc_per_node N --no-python ijepa eval linear
   --protocol logreg` (the cheapest probe: the point is extraction), N gloo ranks: once
   uninterrupted; then again in a fresh cache, SIGKILLed (torchrun and every rank) once half
   the cache's chunk files exist, and restarted. It measures seconds per image per rank (from
   the chunk files' times), each rank's peak RSS (its VmHWM, sampled), cache bytes per image,
   and checks that the resume kept every finished chunk and that its record equals the
   uninterrupted one but for timing and provenance.

ViT-H/14 forwards at 7.2 s per image on one thread of this machine (measured with the queue
running; 4.8 s in bf16), so 1000 classes cannot all be read in the 25 minutes a benchmark here
gets: the eval reads the first `--run-classes` of the `--classes` folders, through a folder of
links to them (`run/`), and the record says so (`ran`). At that rate the defaults (50 classes x
(2 train + 1 val) = 150 images, 2 ranks of 1 thread, each run loading the 2.6 GB checkpoint in
~35 s at a peak of ~5.8 GB a rank) take about 22 minutes: 35 s of data, 35 s of checkpoint,
three runs' start-up, and the images twice (whole; killed + resumed).
One `bench.imagenet_rehearsal` record, with every command run.

`--project` prints the README's "Evaluating at ImageNet scale" tables from the records instead
(`ijepa.results.scale`): the GPU check's rates and this rehearsal's figures.

    python benchmarks/imagenet_rehearsal.py                  # the rehearsal (pause the queue)
    python benchmarks/imagenet_rehearsal.py --project        # the README's tables
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
IJEPA = ROOT / ".venv" / "bin" / "ijepa"
PROVENANCE = {"created", "command", "git_commit", "code_version", "versions"}  # with every timing (`*_s`): what two runs may differ in


def wnids(n: int, seed: int = 0) -> list[str]:
    """`n` distinct sorted ImageNet-shaped class ids (`n` + 8 digits, as n01440764)."""
    rng = np.random.default_rng(seed)
    return sorted(f"n{x:08d}" for x in rng.choice(range(1_000_000, 15_000_000), n, replace=False))


SIDES = (224, 320)  # px: each image's width and height, drawn in this range


def jpeg(rng: np.random.Generator, path: Path, sides: tuple[int, int] = SIDES) -> None:
    """A seeded photo-like JPEG (smooth colour fields plus grain), `sides` px a side."""
    w, h = (int(v) for v in rng.integers(sides[0], sides[1] + 1, 2))
    low = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)
    grain = rng.integers(-12, 13, (h, w, 3), dtype=np.int16)
    Image.fromarray(np.clip(np.asarray(low, dtype=np.int16) + grain, 0, 255).astype(np.uint8)).save(path, quality=90)


def write_folder(root: Path, *, classes: int, per_class: int, val_per_class: int, seed: int = 0,
                 sides: tuple[int, int] = SIDES) -> Path:
    """`root/{train,val}/<wnid>/` in ImageNet's layout and file names (`sides`: tests' small
    images); returns root."""
    rng, n_val = np.random.default_rng(seed), 0
    for wnid in wnids(classes, seed):
        for split, n in (("train", per_class), ("val", val_per_class)):
            (root / split / wnid).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                n_val += split == "val"
                jpeg(rng, root / split / wnid / (f"{wnid}_{i}.JPEG" if split == "train" else f"ILSVRC2012_val_{n_val:08d}.JPEG"), sides)
    return root


def link_view(folder: Path, out: Path, classes: int) -> Path:
    """`out/{train,val}/<wnid>` linking to the first `classes` class folders of `folder`."""
    for split in ("train", "val"):
        (out / split).mkdir(parents=True, exist_ok=True)
        for wnid in sorted(p.name for p in (folder / split).iterdir())[:classes]:
            (out / split / wnid).symlink_to((folder / split / wnid).resolve(), target_is_directory=True)
    return out


def write_checkpoint(path: Path, config: str, overrides: list[str]) -> dict:
    """The official `save_checkpoint` layout at random init (see the module's doc); returns
    the architecture written."""
    import torch

    from ijepa.training.config import load_config
    from ijepa.training.step import encoder_from_config, predictor_from_config

    cfg = load_config(config, overrides)
    torch.manual_seed(0)
    enc = encoder_from_config(cfg)
    module = lambda m: {f"module.{k}": v for k, v in m.state_dict().items()}  # noqa: E731
    torch.save({"encoder": module(enc), "predictor": module(predictor_from_config(cfg, enc)), "target_encoder": module(enc),
                "epoch": 0, "loss": 0.0, "batch_size": cfg.data.batch_size, "world_size": 1, "lr": cfg.optimization.lr}, path)
    return {"model_name": cfg.meta.model_name, "depth": enc.depth, "width": enc.embed_dim, "patch_size": enc.patch_size,
            "img_size": enc.img_size, "params": sum(p.numel() for p in enc.parameters()), "checkpoint_bytes": path.stat().st_size}


def children(pid: int) -> list[int]:
    """Every live descendant of `pid` (torchrun's ranks run in sessions of their own, so a
    process group would miss them)."""
    parent = {}
    for d in Path("/proc").iterdir():
        try:
            parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (ValueError, OSError):
            continue
    out, todo = [], [pid]
    while todo:
        kids = [c for c, p in parent.items() if p == todo[-1]]
        todo.pop()
        out += kids
        todo += kids
    return out


def peak_rss_mb(pid: int) -> tuple[str, float] | None:
    """(the process's rank, or `launcher`; its high-water RSS in MB) from /proc, None once gone."""
    try:
        env = dict(kv.split("=", 1) for kv in (Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")) if "=" in kv)
        hwm = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return None
    return env.get("RANK", "launcher"), int(hwm.split()[1]) / 1024


def chunks(cache: Path) -> list[Path]:
    """The finished chunk files of a feature cache (temps of unfinished ones end in .tmp)."""
    return sorted(cache.rglob("*.pt")) if cache.is_dir() else []


def watch(cmd: list[str], *, cache: Path, env: dict[str, str], kill_at: int | None = None, log: Path) -> dict:
    """Run `cmd`, sampling each rank's peak RSS; SIGKILL it and every descendant once `kill_at`
    chunk files exist. Returns wall seconds, exit code, peaks and whether it was killed."""
    t0, peaks, killed = time.perf_counter(), {}, False
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        while proc.poll() is None:
            tree = [proc.pid, *children(proc.pid)]
            for who, mb in filter(None, map(peak_rss_mb, tree)):
                peaks[who] = max(peaks.get(who, 0.0), mb)
            if kill_at is not None and len(chunks(cache)) >= kill_at:
                for pid in tree:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                killed = True
                proc.wait()
                break
            time.sleep(0.5)
    return {"wall_s": round(time.perf_counter() - t0, 1), "rc": proc.returncode, "killed": killed, "peak_rss_mb": peaks}


def chunk_rows(files: list[Path]) -> list[tuple[str, float, int, int]]:
    """(split key, mtime, rows, bytes) of each chunk file, by the rows its labels hold."""
    import torch

    out = []
    for f in files:
        st = f.stat()
        out.append((f.name.split("-")[0], st.st_mtime, len(torch.load(f, mmap=True, weights_only=True)["labels"]), st.st_size))
    return out


def s_per_img_per_rank(files: list[Path], world: int) -> float:
    """Seconds per image per rank over the largest split's chunks: from the first chunk's file to
    the last, over the rows of every chunk but the first `world` (each rank's first, whose start
    is not seen), assuming the ranks run in step."""
    rows = chunk_rows(files)
    split = max({k for k, *_ in rows}, key=lambda k: sum(r for kk, _, r, _ in rows if kk == k))
    mine = sorted((t, r) for k, t, r, _ in rows if k == split)
    if len(mine) < 2 * world:
        raise ValueError(f"{len(mine)} chunks of train: too few to time {world} ranks (lower --chunk-rows)")
    return world * (mine[-1][0] - mine[0][0]) / sum(r for _, r in mine[world:])


def cache_figures(files: list[Path], feature_dim: int) -> dict:
    """Bytes per image on disk, as written and as chunks of 4096 rows would be (the per-file
    overhead spread over 4096 rows instead)."""
    rows = chunk_rows(files)
    n, size = sum(r for *_, r, _ in rows), sum(b for *_, b in rows)
    payload = feature_dim * 2 + 16 + 8  # float16 features, row id, int64 label
    overhead = (size - n * payload) / len(rows)
    return {"cache_files": len(rows), "cache_rows": n, "cache_bytes": size, "cache_bytes_per_img": size / n,
            "cache_file_overhead_bytes": overhead, "cache_bytes_per_img_4096": payload + overhead / 4096}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def eval_cmd(args: argparse.Namespace, *, ckpt: Path, data: Path, out: Path) -> list[str]:
    """The real path: torchrun, N ranks, `ijepa eval linear` with logistic regression."""
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(args.nproc), "--master-port", str(free_port()),
            "--no-python", str(args.ijepa), "eval", "linear", "--encoder", str(ckpt), "--data", str(data), "--protocol", "logreg",
            "--device", "cpu", "--chunk-rows", str(args.chunk_rows), "--dtype", args.dtype,
            "--cache-dir", str(out / "cache"), "--results", str(out / "results"), "--json"]


def eval_record(out: Path) -> dict:
    recs = sorted((out / "results").rglob("*.json"))
    if len(recs) != 1:
        raise RuntimeError(f"{out / 'results'}: {len(recs)} eval records, expected 1 (see {out / 'log*.txt'})")
    return json.loads(recs[0].read_text())


def uninterrupted(args: argparse.Namespace, ckpt: Path, data: Path, out: Path, env: dict[str, str]) -> dict:
    """One whole run: its wall time, peaks, record, rate and cache figures."""
    cmd = eval_cmd(args, ckpt=ckpt, data=data, out=out)
    run = watch(cmd, cache=out / "cache", env=env, log=out.with_suffix(".log"))
    if run["rc"]:
        raise RuntimeError(f"exit {run['rc']}: {' '.join(cmd)} (log: {out.with_suffix('.log')})")
    rec, files = eval_record(out), chunks(out / "cache")
    return {**run, "command": cmd, "record": rec, "s_per_img_per_rank": s_per_img_per_rank(files, args.nproc),
            **cache_figures(files, rec["width"] * min(4, rec["depth"]))}


def killed_and_resumed(args: argparse.Namespace, ckpt: Path, data: Path, out: Path, env: dict[str, str], total: int) -> dict:
    """The same run in a fresh cache, SIGKILLed once half its `total` chunk files exist, then
    run again: which chunks survived, and whether the resume left them alone."""
    first = eval_cmd(args, ckpt=ckpt, data=data, out=out)
    kill = watch(first, cache=out / "cache", env=env, kill_at=(total + 1) // 2, log=out.with_suffix(".killed.log"))
    kept = {f: (f.stat().st_ino, f.stat().st_mtime_ns) for f in chunks(out / "cache")}
    cmd = eval_cmd(args, ckpt=ckpt, data=data, out=out)  # a fresh port: the killed rendezvous may hold the old one
    resume = watch(cmd, cache=out / "cache", env=env, log=out.with_suffix(".resumed.log"))
    if resume["rc"]:
        raise RuntimeError(f"resume: exit {resume['rc']}: {' '.join(cmd)} (log: {out.with_suffix('.resumed.log')})")
    after = chunks(out / "cache")
    untouched = sum(f.exists() and (f.stat().st_ino, f.stat().st_mtime_ns) == s for f, s in kept.items())
    return {"killed": kill, "resumed": resume, "commands": {"killed": first, "resumed": cmd}, "chunks_at_kill": len(kept), "chunks_after_resume": len(after),
            "kept_untouched": untouched, "recomputed": len(kept) - untouched, "written_by_resume": len(set(after) - set(kept)),
            "record": eval_record(out)}


def differences(a: dict, b: dict) -> list[str]:
    """The keys, timing and provenance aside, whose values differ between two eval records."""
    return sorted(k for k in set(a) | set(b) if k not in PROVENANCE and not k.endswith("_s") and a.get(k) != b.get(k))


def rehearsal_record(args: argparse.Namespace, arch: dict, whole: dict, kr: dict, setup_s: float) -> dict:
    """`bench.imagenet_rehearsal`: what was run, the figures, the kill and the resume."""
    from ijepa.results.schema import NO_SPLIT

    rec = whole["record"]
    peaks = {k: round(v) for k, v in whole["peak_rss_mb"].items() if k != "launcher"}
    return {
        "kind": "bench.imagenet_rehearsal", "headline": "s_per_img_per_rank", "unit": "value", **NO_SPLIT,
        "encoder": f"random:{arch['model_name']}-p{arch['patch_size']}-official-format", "dataset": "synthetic-imagenet-shape",
        **arch, "classes": args.classes, "per_class": args.per_class, "val_per_class": args.val_per_class,
        "run_classes": args.run_classes, "ran": f"the eval read the first {args.run_classes} of {args.classes} class folders "
        f"({rec['n_train']} train + {rec['n_val']} val images) on {args.nproc} ranks", "n_train": rec["n_train"], "n_val": rec["n_val"], "eval_protocol": rec["protocol"],
        "world_size": args.nproc, "threads_per_rank": args.threads, "chunk_rows": args.chunk_rows, "dtype": args.dtype,
        "cpu": cpu_name(), "load_avg_1min_at_end": os.getloadavg()[0], "setup_s": round(setup_s, 1),
        "s_per_img_per_rank": whole["s_per_img_per_rank"], "peak_rss_mb": peaks, "launcher_peak_rss_mb": round(whole["peak_rss_mb"].get("launcher", 0)),
        **{k: whole[k] for k in ("cache_files", "cache_rows", "cache_bytes", "cache_bytes_per_img", "cache_file_overhead_bytes", "cache_bytes_per_img_4096")},
        "uninterrupted_wall_s": whole["wall_s"], "eval_feature_s": rec["feature_s"], "eval_fit_s": rec["fit_s"], "eval_wall_s": rec["wall_s"],
        "killed_after_s": kr["killed"]["wall_s"], "resumed_wall_s": kr["resumed"]["wall_s"], "chunks_expected": whole["cache_files"],
        **{k: kr[k] for k in ("chunks_at_kill", "chunks_after_resume", "kept_untouched", "recomputed", "written_by_resume")},
        "resumed_record_differs_in": differences(rec, kr["record"]), "resumed_equals_uninterrupted": not differences(rec, kr["record"]),
        "top1": rec["top1"], "commands": {"uninterrupted": whole["command"], **kr["commands"]},
    }


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    return f"{os.cpu_count()} cores"


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--project", action="store_true", help="print the README's projection tables from the records; run nothing")
    ap.add_argument("--classes", type=int, default=1000, help="class folders written (wnid-shaped names)")
    ap.add_argument("--per-class", type=int, default=2, help="train images per class folder")
    ap.add_argument("--val-per-class", type=int, default=1, help="val images per class folder")
    ap.add_argument("--run-classes", type=int, default=50, help="the eval reads the first this many class folders (see above)")
    ap.add_argument("--nproc", type=int, default=2, help="torchrun ranks (gloo on CPU)")
    ap.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of each rank")
    ap.add_argument("--chunk-rows", type=int, default=10, help="rows per feature-cache chunk (the kill lands between chunks)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="the eval's extraction dtype")
    ap.add_argument("--config", default="in1k_vith14_ep300", help="pretraining config whose encoder and predictor are written")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (e.g. a small smoke: meta.model_name=vit_tiny)")
    ap.add_argument("--ijepa", type=Path, default=IJEPA, help="the ijepa executable torchrun starts")
    ap.add_argument("--work", type=Path, default=None,
                    help="folder for the data, checkpoint, caches and logs, kept (default: a temp folder, removed after a run that succeeds)")
    ap.add_argument("--results", type=Path, default=ROOT / "results")
    args = ap.parse_args()
    if args.run_classes > args.classes:
        ap.error(f"--run-classes {args.run_classes} > --classes {args.classes}")
    return args


def main() -> None:
    args = parse()
    from ijepa.results.io import read_records, write_record

    if args.project:
        from ijepa.results.scale import scale_markdown

        print(scale_markdown(read_records(args.results)) or "no GPU-rate record (benchmarks/eval_speed.py --scale in1k --device cuda)")
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="imagenet_rehearsal."))
    t0 = time.perf_counter()
    folder = write_folder(work / "imagenet", classes=args.classes, per_class=args.per_class, val_per_class=args.val_per_class)
    data = link_view(folder, work / "run", args.run_classes) if args.run_classes < args.classes else folder
    ckpt = work / "IN1K-vit.h.14-random.pth.tar"
    arch = write_checkpoint(ckpt, args.config, args.set)
    setup_s = time.perf_counter() - t0
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    whole = uninterrupted(args, ckpt, data, work / "uninterrupted", env)
    kr = killed_and_resumed(args, ckpt, data, work / "killed", env, whole["cache_files"])
    rec = rehearsal_record(args, arch, whole, kr, setup_s)
    path = write_record(rec, results_dir=args.results)
    print(json.dumps({**rec, "record": str(path), "work": str(work)}))
    if args.work is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
