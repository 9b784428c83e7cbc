"""The Fashion-MNIST data families by name: `FAMILY:LEVEL[:ROOT]`, parsed without the data stack.

A family is Fashion-MNIST's images turned by one generator whose strength is LEVEL in [0, 1]
(`ijepa.data.generated`); level 0 is Fashion-MNIST bit for bit, the shared first point of
every family. The config check, run names, records and the crossover tables read a dataset
string through `family` here (no torch import), so a new family is one entry below and its
generator in `ijepa.data.GENERATORS`.
"""

from __future__ import annotations

FAMILIES = {  # name in --data and records -> its tag in run names and axis labels (`noise0.5`, "noise level")
    "fmnist-clutter": "clutter",  # ijepa.data.clutter: photos, other objects' fragments, a smooth field
    "fmnist-noise": "noise",  # ijepa.data.noise: i.i.d. per-pixel Gaussian noise
}


def parse_level(name: str, text: str) -> float:
    """LEVEL of `name:LEVEL`: a number in [0, 1]."""
    try:
        level = float(text)
    except ValueError:
        raise ValueError(f"{name}:{text}: LEVEL must be a number in [0, 1]") from None
    if not 0.0 <= level <= 1.0:  # also refuses nan
        raise ValueError(f"{name}:{text}: LEVEL must be in [0, 1]")
    return level


def parse(data: str) -> tuple[str, float, str] | None:
    """(family, level, root or '') of `FAMILY:LEVEL[:ROOT]`; None for any other data. A bad
    level is a ValueError naming `FAMILY:LEVEL`."""
    name, _, rest = data.partition(":")
    if name not in FAMILIES:
        return None
    level_text, _, root = rest.partition(":")
    return name, parse_level(name, level_text), root


def family(data: str) -> tuple[str, float] | None:
    """(family, level) of a dataset string (`fmnist-noise:0.5` -> ("fmnist-noise", 0.5)); None
    for Fashion-MNIST itself and image folders."""
    parsed = parse(data)
    return None if parsed is None else parsed[:2]


def spellings() -> str:
    """The families as `--data` takes them, for help texts and errors."""
    return ", ".join(f"{name}:LEVEL" for name in FAMILIES)
