"""One typed config loader: YAML + dotted `--set key=value` overrides into nested dataclasses.

Every eval recipe goes through `load`; the pretraining config (`ijepa.training.config`) is
read, merged and built by the same functions. An unknown key (with a "did you mean"), a value
that does not fit its field's type hint, a non-finite float, or a value outside the meaning
its field declares (`checked(0.07, Range(gt=0))`) is one error naming the key as the user
typed it, never a traceback inside a run. YAML 1.1 reads `1e-4` (no dot) as a string; a number field accepts it.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config problem, phrased as one line naming the file and the key."""


def shown(value: Any) -> str:
    """A value as a message quotes it (cut at 40 characters)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class OptionError(ConfigError):
    """A value outside its option's meaning. It keeps the dotted `key`, so a front end that
    knows how its user spelled the option (`--eval-limit` for `val_limit`) can say that."""

    def __init__(self, key: str, value: Any, expected: str, *, where: str = "") -> None:
        self.key, self.value, self.expected, self.where = key, value, expected, where
        super().__init__(f"{where + ': ' if where else ''}{key} is {shown(value)}; expected {expected}")

    def renamed(self, name: str) -> OptionError:
        """The same error naming the option `name` (a command-line flag: no file to name)."""
        return OptionError(name, self.value, self.expected)


class Check(Protocol):
    """What a field's value must satisfy (`ok`), and how to say it (`str`)."""

    def ok(self, value: Any) -> bool: ...


@dataclass(frozen=True)
class Range:
    """Bounds of a number (of each item, for a list field): `Range(gt=0)` for a temperature,
    `Range(gt=0, lt=1)` for a fraction held out."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def ok(self, value: Any) -> bool:
        return ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
                and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))

    def __str__(self) -> str:
        low = f"({self.gt:g}" if self.gt is not None else f"[{self.ge:g}" if self.ge is not None else ""
        high = f"{self.lt:g})" if self.lt is not None else f"{self.le:g}]" if self.le is not None else ""
        if low and high:
            return f"a number in {low}, {high}"
        if low:
            return f"a number {'>' if low[0] == '(' else '>='} {low[1:]}"
        return f"a number {'<' if high[-1] == ')' else '<='} {high[:-1]}"


POSITIVE, NON_NEGATIVE, COUNT, FRACTION = Range(gt=0), Range(ge=0), Range(ge=1), Range(gt=0, lt=1)


def checked(default: Any, check: Check) -> Any:
    """A dataclass field whose given values `build` holds to `check` (each item of a list,
    which must not be empty), before anything runs."""
    return dataclasses.field(default=default, metadata={"check": check})


def check_field(f: dataclasses.Field, value: Any, *, key: str, where: str, given: Any = None) -> None:
    """OptionError when `value` is outside what field `f` declares (None: the field's 'unset');
    the message quotes `given`, the value as written, if there is one."""
    check = f.metadata.get("check")
    if check is None or value is None:
        return
    given = value if given is None else given
    if isinstance(value, (list, tuple)):
        if not value or not all(check.ok(v) for v in value):
            raise OptionError(key, given, f"a non-empty list, each {check}", where=where)
    elif not check.ok(value):
        raise OptionError(key, given, str(check), where=where)


def keys_of(cls: type, prefix: str = "") -> list[str]:
    """Every dotted key of a (nested) dataclass."""
    hints, out = get_type_hints(cls), []
    for f in dataclasses.fields(cls):
        if f.init:
            nested = dataclasses.is_dataclass(hints[f.name])
            out += keys_of(hints[f.name], f"{prefix}{f.name}.") if nested else [prefix + f.name]
    return out


def suggest(key: str, known: Iterable[str]) -> str:
    """` (did you mean X?)` for a mistyped dotted key: the same name in another section first,
    else a name it abbreviates, else the closest spelling; '' when nothing is close."""
    known = list(known)
    leaf = key.rsplit(".", 1)[-1]
    close = ([k for k in known if k.rsplit(".", 1)[-1] == leaf] or [k for k in known if key and k.startswith(key)]
             or difflib.get_close_matches(key, known, n=1))
    if not close:
        leaves = difflib.get_close_matches(leaf, [k.rsplit(".", 1)[-1] for k in known], n=1)
        close = [k for k in known if leaves and k.rsplit(".", 1)[-1] == leaves[0]]
    return f" (did you mean {close[0]}?)" if close else ""


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
    """The value cannot stand for the hint; its argument, if any, says what was expected."""


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
    if not math.isfinite(value):  # nan passes every range check; inf overflows schedules
        raise _Mismatch("a finite number")
    return hint(value)


def _convert(value: Any, hint: Any, key: str, where: str) -> Any:
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        reason = None
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, key, where)
            except _Mismatch as e:
                reason = reason or (e.args[0] if e.args else None)
        raise _Mismatch(*([reason] if reason else []))
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
    except _Mismatch as e:
        raise OptionError(key, value, e.args[0] if e.args else describe(hint), where=where) from None


def build(cls: type[T], values: dict[str, Any], *, where: str = "config", prefix: str = "", base: T | None = None,
          names: dict[str, str] | None = None, known: list[str] | None = None) -> T:
    """`cls` (a dataclass) from `base` (or its defaults) with `values` merged in, nested
    dataclass fields merged key by key, each given value held to its field's check. `names`:
    how the user spelled a dotted key (`{"val_limit": "--eval-limit"}`), for the messages;
    `known`: the outermost class's sections and dotted keys, which a misplaced key may mean."""
    at = f"{where}: " if where else ""
    if not isinstance(values, dict):
        raise ConfigError(f"{at}{prefix.rstrip('.') or 'config'} expected a mapping of options, got {type(values).__name__}")
    hints, names = get_type_hints(cls), names or {}
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    known = known or [*(prefix + n for n in fields if dataclasses.is_dataclass(hints[n])), *keys_of(cls, prefix)]
    unknown = sorted(str(k) for k in values if k not in fields)
    if unknown:
        raise ConfigError(f"{at}unknown key(s) {', '.join(prefix + k for k in unknown)}{suggest(prefix + unknown[0], known)}; "
                          f"expected some of {', '.join(prefix + n for n in fields)}")
    out = {}
    for name, value in values.items():
        hint, key = hints[name], prefix + name
        current = getattr(base, name) if base is not None else None
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            out[name] = build(hint, value, where=where, prefix=f"{key}.", base=current, names=names, known=known)
        else:
            shown_as = names.get(key, key)
            out[name] = coerce(value, hint, key=shown_as, where=where)
            check_field(fields[name], out[name], key=shown_as, where=where, given=value)
    try:
        return dataclasses.replace(base, **out) if base is not None else cls(**out)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{at}{e}") from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A recipe file as a mapping; a missing file, broken YAML or a non-mapping is one line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: recipe not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
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
        raise ConfigError(f"--set {item!r}: expected key=value (a dotted key reaches into a section: section.key=value)")
    return dotted(key.strip(), yaml.safe_load(value))


def merge(into: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Deep merge of nested dicts (`new` wins)."""
    out = dict(into)
    for k, v in new.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load(cls: type[T], path: str | Path | None = None, *, values: dict[str, Any] | None = None,
         names: dict[str, str] | None = None, overrides: list[str] | tuple[str, ...] = ()) -> T:
    """Defaults <- recipe YAML <- `values` (command-line flags, nested dicts; `names` spells
    their keys as typed, e.g. `--eval-limit`) <- `--set` overrides. Each layer's values are
    checked as they come, so a message names where the bad one was given; a check across
    fields (a spec's `validate()`, e.g. max_depth above min_depth) runs once, on the result."""
    cfg = build(cls, read_yaml(path) if path is not None else {}, where=str(path) if path is not None else "config")
    if values:
        cfg = build(cls, values, where="" if names else "command line", base=cfg, names=names)
    sets: dict[str, Any] = {}
    for item in overrides:
        sets = merge(sets, parse_set(item))
    cfg = build(cls, sets, where="--set", base=cfg) if sets else cfg
    try:
        getattr(cfg, "validate", lambda: None)()
    except OptionError as e:
        raise e.renamed(names[e.key]) if names and e.key in names else e from None
    return cfg
