"""Recipe values checked against the type hints of what they feed, so a wrong type is one
line naming the file and the key instead of a traceback deep inside an eval."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml


def fits(value: Any, hint: Any) -> bool:
    """Whether a YAML value can stand for `hint` (lists stand for tuples, ints for floats)."""
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any:
        return True
    if origin in (Union, types.UnionType):
        return any(fits(value, a) for a in args)
    if origin is Literal:
        return value in args
    if origin in (tuple, list):
        return isinstance(value, (list, tuple)) and _items_fit(value, origin, args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint in (int, float):
        ok = (int,) if hint is int else (int, float)
        return isinstance(value, ok) and not isinstance(value, bool)
    if hint is Path:
        return isinstance(value, (str, Path))
    return not isinstance(hint, type) or isinstance(value, hint)


def _items_fit(value: list | tuple, origin: type, args: tuple) -> bool:
    if not args:
        return True
    if origin is list or (len(args) == 2 and args[1] is Ellipsis):
        return all(fits(v, args[0]) for v in value)
    return len(value) == len(args) and all(fits(v, a) for v, a in zip(value, args, strict=True))


def describe(hint: Any) -> str:
    """A hint as a reader of the recipe would say it: `list of float`, `int or null`."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(describe(a) for a in args)
    if origin is Literal:
        return " or ".join(repr(a) for a in args)
    if origin in (tuple, list):
        if not args or origin is list or (len(args) == 2 and args[1] is Ellipsis):
            return f"list of {describe(args[0])}" if args else "list"
        return "[" + ", ".join(describe(a) for a in args) + "]"
    if hint is type(None):
        return "null"
    if hint is Path:
        return "path"
    return getattr(hint, "__name__", str(hint))


def check_types(values: dict[str, Any], hints: dict[str, Any], where: str) -> None:
    """ValueError naming `where` and the first key whose value does not fit its hint."""
    for key, value in values.items():
        if key in hints and not fits(value, hints[key]):
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
            raise ValueError(f"{where}: {key} is {shown}; expected {describe(hints[key])}")


def yaml_error(path: Path, e: yaml.YAMLError | UnicodeDecodeError) -> ValueError:
    """One line for a recipe that is not YAML text: where it breaks and what was expected."""
    mark = getattr(e, "problem_mark", None)
    at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = "not UTF-8 text" if isinstance(e, UnicodeDecodeError) else getattr(e, "problem", None) or e.__class__.__name__
    return ValueError(f"{path}: invalid YAML{at} ({problem}); expected a mapping of options")
