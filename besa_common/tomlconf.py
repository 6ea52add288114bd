"""Strict TOML -> frozen dataclass loading, shared by experiment and sweep files.

One rule for every key: an unknown key, a value of the wrong type or an empty list is a
one-line :class:`UserError` naming the file and the dotted key (``[grid].lines: expected a
list of int, got str``), never a traceback or a silently ignored typo.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from besa_common.errors import UserError


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file; a missing or malformed file is a UserError naming it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"file not found: {path}")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML ({exc})") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a UTF-8 text file") from None


def _typename(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return f"a list of {_typename(args[0])}" if args else "a list"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_typename(a) for a in typing.get_args(tp) if a is not type(None))
    return getattr(tp, "__name__", str(tp))


def check_value(value: Any, tp: Any, where: str) -> Any:
    """Return ``value`` converted to ``tp`` (lists -> tuples, int -> float) or raise naming ``where``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in typing.get_args(tp):
            if arg is type(None):
                continue
            try:
                return check_value(value, arg, where)
            except UserError as exc:
                errors.append(exc)
        raise UserError(f"{where}: expected {_typename(tp)}, got {type(value).__name__} {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise UserError(f"{where}: expected {_typename(tp)}, got {type(value).__name__} {value!r}")
        if not value:
            raise UserError(f"{where}: empty list (the grid would be empty)")
        (arg, *_) = typing.get_args(tp) or (Any,)
        return tuple(check_value(v, arg, f"{where}[{i}]") for i, v in enumerate(value))
    if tp is Any:
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{where}: expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{where}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise UserError(f"{where}: expected true or false, got {type(value).__name__} {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise UserError(f"{where}: expected a string, got {type(value).__name__} {value!r}")
        return value
    if tp is dict or typing.get_origin(tp) is dict:
        if not isinstance(value, dict):
            raise UserError(f"{where}: expected a table, got {type(value).__name__} {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, where)
    raise TypeError(f"unsupported config type {tp!r} at {where}")


def build(cls: type, table: Any, where: str) -> Any:
    """Build the frozen dataclass ``cls`` from a TOML table, checking every key and type."""
    if not isinstance(table, dict):
        raise UserError(f"{where}: expected a table, got {type(table).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in table:
        if key not in fields:
            raise UserError(f"{where}.{key}: unknown key (known: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, f in fields.items():
        if name in table:
            kwargs[name] = check_value(table[name], hints[name], f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:  # type: ignore[misc]
            raise UserError(f"{where}.{name}: missing required key")
    return cls(**kwargs)
