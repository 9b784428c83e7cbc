"""requirements/lock.txt pins every package `make install` installs: it satisfies pyproject,
pins the Makefile's torch pair, and is what this environment holds."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements" / "lock.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def test_lock_satisfies_every_pyproject_requirement():
    pins = lock()
    reqs = [Requirement(t) for t in metadata.requires("ijepa")]  # pyproject's, as `make install` installed it
    for req in reqs:
        if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in ("dev", "dense")):
            continue
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not in the lock: run `make lock`"
        assert req.specifier.contains(pins[name], prereleases=True), f"lock pins {req.name}=={pins[name]}, outside {req.specifier}"


def test_lock_pins_the_makefile_torch_pair():
    pin = re.search(r"^TORCH_PIN \?= (.+)$", (ROOT / "Makefile").read_text(), re.M).group(1).split()
    pins = lock()
    assert [f"{n}=={pins[n]}" for n in ("torch", "torchvision")] == pin


def test_this_environment_holds_the_locked_versions():
    pins = lock()
    have = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    wrong = {n: (v, have.get(n)) for n, v in pins.items() if have.get(n) != v}
    assert not wrong, f"(locked, installed): {wrong}; run `make install`"
