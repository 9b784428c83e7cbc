"""One typed config loader: YAML + dotted `--set key=value` overrides into nested dataclasses.

Every eval recipe goes through `load` (and the pretraining config may): an unknown key or a
value that does not fit its field's type hint is one error naming the key, never a traceback
inside a run. YAML 1.1 reads `1e-4` (no dot) as a string; a number field accepts it anyway.
"""

from __future__ import annotations

import dataclasses
import types
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config problem, phrased as one line naming the file and the key."""


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
    if dataclasses.is_dataclass(hint):
        return "a mapping"
    return getattr(hint, "__name__", str(hint))


class _Mismatch(Exception):
    pass


def _number(value: Any, hint: type) -> int | float:
    if isinstance(value, str):
        try:
            value = float(value) if hint is float else int(value)
        except ValueError:
            raise _Mismatch from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Mismatch
    if hint is int and (not isinstance(value, int)):
        raise _Mismatch
    return hint(value)


def _convert(value: Any, hint: Any, key: str, where: str) -> Any:
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, key, where)
            except _Mismatch:
                continue
        raise _Mismatch
    if origin is Literal:
        if value not in args:
            raise _Mismatch
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        if args and origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise _Mismatch
            return tuple(_convert(v, a, key, where) for v, a in zip(value, args, strict=True))
        items = [_convert(v, args[0], key, where) for v in value] if args else list(value)
        return tuple(items) if origin is tuple else items
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise _Mismatch
        return build(hint, value, where=where, prefix=f"{key}.")
    if hint is type(None):
        if value is not None:
            raise _Mismatch
        return None
    if hint is bool:
        if not isinstance(value, bool):
            raise _Mismatch
        return value
    if hint in (int, float):
        return _number(value, hint)
    if hint is Path:
        if not isinstance(value, (str, Path)):
            raise _Mismatch
        return Path(value)
    if hint is str:
        if not isinstance(value, str):
            raise _Mismatch
        return value
    if isinstance(hint, type) and not isinstance(value, hint):
        raise _Mismatch
    return value


def coerce(value: Any, hint: Any, *, key: str, where: str = "config") -> Any:
    """`value` as `hint` (lists become tuples where a tuple is meant, numeric strings numbers);
    ConfigError naming `where` and `key` when it cannot stand for it."""
    try:
        return _convert(value, hint, key, where)
    except _Mismatch:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise ConfigError(f"{where + ': ' if where else ''}{key} is {shown}; expected {describe(hint)}") from None


def build(cls: type[T], values: dict[str, Any], *, where: str = "config", prefix: str = "", base: T | None = None) -> T:
    """`cls` (a dataclass) from `base` (or its defaults) with `values` merged in, nested
    dataclass fields merged key by key."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: {prefix.rstrip('.') or 'config'} expected a mapping of options, got {type(values).__name__}")
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(str(k) for k in values if k not in names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(prefix + k for k in unknown)}; "
                          f"expected some of {', '.join(prefix + n for n in names)}")
    out = {}
    for name, value in values.items():
        hint = hints[name]
        current = getattr(base, name) if base is not None else None
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            out[name] = build(hint, value, where=where, prefix=f"{prefix}{name}.", base=current)
        else:
            out[name] = coerce(value, hint, key=prefix + name, where=where)
    try:
        return dataclasses.replace(base, **out) if base is not None else cls(**out)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A recipe file as a mapping; a missing file, broken YAML or a non-mapping is one line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: recipe not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = "not UTF-8 text" if isinstance(e, UnicodeDecodeError) else getattr(e, "problem", None) or e.__class__.__name__
        raise ConfigError(f"{path}: invalid YAML{at} ({problem}); expected a mapping of options") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of options, got {type(raw).__name__}")
    return raw


def dotted(key: str, value: Any) -> dict[str, Any]:
    """`a.b.c`, v -> {"a": {"b": {"c": v}}}."""
    out: dict[str, Any] = {}
    node = out
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return out


def parse_set(item: str) -> dict[str, Any]:
    """`--set key.sub=value` (value read as YAML) -> nested dict."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r}: expected key=value (dotted keys reach nested sections, e.g. grid.epochs=5)")
    return dotted(key.strip(), yaml.safe_load(value))


def merge(into: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Deep merge of nested dicts (`new` wins)."""
    out = dict(into)
    for k, v in new.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load(cls: type[T], path: str | Path | None = None, *, values: dict[str, Any] | None = None, overrides: list[str] | tuple[str, ...] = ()) -> T:
    """Defaults <- recipe YAML <- `values` (e.g. command-line flags, nested dicts) <- `--set` overrides."""
    merged: dict[str, Any] = read_yaml(path) if path is not None else {}
    cfg = build(cls, merged, where=str(path) if path is not None else "config")
    extra: dict[str, Any] = dict(values or {})
    for item in overrides:
        extra = merge(extra, parse_set(item))
    return build(cls, extra, where="command line", base=cfg) if extra else cfg
