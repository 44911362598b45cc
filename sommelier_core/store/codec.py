"""Typed values ↔ plain JSON data, driven by the declared types of dataclass fields.

A stage record is written as data only: the class it decodes to comes from the stage table, never from
the file, so reading a shared store cannot run code and a class that moves changes one string there.
Every value is encoded by its field's type hint (`typing.get_type_hints`): nested dataclasses, tuples,
lists, sets, dicts (non-`str` keys as `[key, value]` pairs), `X | None` and other unions, `Literal`,
`Path`, numpy arrays and scalars. Non-finite floats become `{"$float": "nan" | "inf" | "-inf"}` so the
JSON stays strict. A path (a `Path`, or a `str` holding an absolute path) inside the store root is
written relative to it as `{"$store": "models/x/model.onnx"}` and read back under the root the store
is opened at, so a copied or moved store points into itself; paths outside the root stay as they are.
"""

from __future__ import annotations

import base64
import dataclasses
import math
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any

import numpy as np

STORE_PATH = "$store"
FLOAT = "$float"
NDARRAY = "$ndarray"
_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


class CodecError(ValueError):
    """A value does not fit its declared type, or stored data does not decode to it."""


class StorePaths:
    """Writes paths inside a store root relative to it and reads them back under the root the store is at.

    `aliases` are other roots whose paths count as inside this one (where a moved legacy store used to be).
    """

    def __init__(self, root: Path, aliases: tuple[Path, ...] = ()) -> None:
        self.root = Path(os.path.abspath(root))
        bases = [self.root, Path(os.path.realpath(root))]
        bases += [Path(os.path.abspath(alias)) for alias in aliases]
        self._bases = tuple(dict.fromkeys(bases))

    def relative(self, path: str | PurePath) -> str | None:
        """`path` relative to the root (POSIX spelling) when it is an absolute path inside it, else None."""
        text = os.fspath(path)
        if not text or not os.path.isabs(text):
            return None
        normal = Path(os.path.normpath(text))
        for base in self._bases:
            try:
                return normal.relative_to(base).as_posix()
            except ValueError:
                continue
        return None

    def absolute(self, relative: str) -> Path:
        """A store-relative path under this root; a path that climbs out of the root is refused."""
        if os.path.isabs(relative) or ".." in PurePath(relative).parts:
            raise CodecError(f"stored path {relative!r} is not inside the store")
        return self.root / relative if relative != "." else self.root


def encode(value: Any, hint: Any, paths: StorePaths) -> Any:
    """`value` as JSON data, by its declared type `hint`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is object:
        return _encode_plain(value)
    if hint is type(None) or value is None:
        if value is None and _accepts_none(hint):
            return None
        raise CodecError(f"{value!r} is not a {_name(hint)}")
    if origin is typing.Literal:
        if value not in args:
            raise CodecError(f"{value!r} is not one of {args}")
        return value
    if _is_union(hint):
        options = [option for option in args if option is not type(None)]
        for option in sorted(options, key=lambda option: not _fits(value, option)):  # exact members first
            try:
                return encode(value, option, paths)
            except CodecError:
                continue
        raise CodecError(f"{_short(value)} ({type(value).__name__}) fits none of {_name(hint)}")
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _encode_dataclass(value, hint, paths)
    if origin in (tuple, list, set, frozenset) or hint in (tuple, list, set, frozenset):
        return _encode_sequence(value, origin or hint, args, paths)
    if origin in (dict, Mapping) or hint is dict:
        key_hint, value_hint = args or (Any, Any)
        if not isinstance(value, Mapping):
            raise CodecError(f"{type(value).__name__} is not a mapping")
        if key_hint is str:
            return {_str_key(k): encode(v, value_hint, paths) for k, v in value.items()}
        return [[encode(k, key_hint, paths), encode(v, value_hint, paths)] for k, v in value.items()]
    if isinstance(hint, type) and issubclass(hint, PurePath):
        return _encode_path(value, paths)
    if hint is np.ndarray or origin is np.ndarray:
        return _encode_array(value)
    if isinstance(hint, type) and issubclass(hint, np.generic):
        return {"dtype": np.dtype(hint).str, "value": _encode_plain(np.asarray(value, dtype=hint).item())}
    if hint is bool:
        if not isinstance(value, bool | np.bool_):
            raise CodecError(f"{value!r} is not a bool")
        return bool(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise CodecError(f"{value!r} is not an int")
        return int(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, float | int | np.floating | np.integer):
            raise CodecError(f"{value!r} is not a float")
        return _encode_float(float(value))
    if hint is str:
        if not isinstance(value, str):
            raise CodecError(f"{value!r} is not a str")
        relative = paths.relative(value)
        return value if relative is None else {STORE_PATH: relative}
    raise CodecError(f"values of type {_name(hint)} cannot be stored as data")


def decode(data: Any, hint: Any, paths: StorePaths) -> Any:
    """The value of type `hint` that `encode` wrote as `data`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is object:
        return _decode_plain(data)
    if data is None:
        if _accepts_none(hint):
            return None
        raise CodecError(f"null where a {_name(hint)} was expected")
    if origin is typing.Literal:
        if data not in args:
            raise CodecError(f"{data!r} is not one of {args}")
        return data
    if _is_union(hint):
        errors = []
        for option in args:
            if option is type(None):
                continue
            try:
                return decode(data, option, paths)
            except CodecError as exc:
                errors.append(str(exc))
        raise CodecError(f"{_short(data)} decodes to none of {_name(hint)} ({'; '.join(errors)})")
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _decode_dataclass(data, hint, paths)
    if origin in (tuple, list, set, frozenset) or hint in (tuple, list, set, frozenset):
        return _decode_sequence(data, origin or hint, args, paths)
    if origin in (dict, Mapping) or hint is dict:
        key_hint, value_hint = args or (Any, Any)
        if key_hint is str:
            _expect(data, dict, hint)
            return {k: decode(v, value_hint, paths) for k, v in data.items()}
        _expect(data, list, hint)
        if not all(isinstance(pair, list) and len(pair) == 2 for pair in data):
            raise CodecError(f"{_short(data)} is not a list of [key, value] pairs")
        return {decode(k, key_hint, paths): decode(v, value_hint, paths) for k, v in data}
    if isinstance(hint, type) and issubclass(hint, PurePath):
        if isinstance(data, dict) and set(data) == {STORE_PATH}:
            return hint(paths.absolute(data[STORE_PATH]))
        _expect(data, str, hint)
        return hint(data)
    if hint is np.ndarray or origin is np.ndarray:
        return _decode_array(data)
    if isinstance(hint, type) and issubclass(hint, np.generic):
        _expect(data, dict, hint)
        if set(data) != {"dtype", "value"} or np.dtype(data["dtype"]).type is not hint:
            raise CodecError(f"{_short(data)} is not a {hint.__name__} scalar")
        return np.array(_decode_plain(data["value"]), dtype=data["dtype"])[()]
    if hint is bool:
        _expect(data, bool, hint)
        return data
    if hint is int:
        if isinstance(data, bool) or not isinstance(data, int):
            raise CodecError(f"{_short(data)} is not an int")
        return data
    if hint is float:
        return _decode_float(data)
    if hint is str:
        if isinstance(data, dict) and set(data) == {STORE_PATH}:
            return str(paths.absolute(data[STORE_PATH]))
        _expect(data, str, hint)
        return data
    raise CodecError(f"values of type {_name(hint)} cannot be read from data")


def field_hints(cls: type) -> dict[str, Any]:
    """The resolved type hints of a dataclass's fields (string annotations evaluated in its module)."""
    cached = _HINTS.get(cls)
    if cached is None:
        try:
            cached = typing.get_type_hints(cls)
        except NameError as exc:
            raise CodecError(f"{cls.__qualname__} has a field type that cannot be resolved: {exc}") from exc
        _HINTS[cls] = cached
    return cached


def dataclass_types(cls: type) -> list[type]:
    """`cls` and every dataclass its fields hold, however nested, each once."""
    found: dict[type, None] = {}

    def visit(hint: Any) -> None:
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            if hint in found:
                return
            found[hint] = None
            for field_hint in field_hints(hint).values():
                visit(field_hint)
            return
        for arg in typing.get_args(hint):
            visit(arg)

    visit(cls)
    return list(found)


_HINTS: dict[type, dict[str, Any]] = {}


def _encode_dataclass(value: Any, cls: type, paths: StorePaths) -> dict[str, Any]:
    if not isinstance(value, cls):
        raise CodecError(f"{type(value).__name__} is not a {cls.__qualname__}")
    hints = field_hints(cls)
    out = {}
    for field in dataclasses.fields(cls):
        if not field.init:
            continue
        try:
            item = getattr(value, field.name)
        except AttributeError:  # an object from before the field existed (a migrated pickle)
            item = _default(field, cls)
        try:
            out[field.name] = encode(item, hints[field.name], paths)
        except CodecError as exc:
            raise CodecError(f"{cls.__qualname__}.{field.name}: {exc}") from None
    return out


def _decode_dataclass(data: Any, cls: type, paths: StorePaths) -> Any:
    _expect(data, dict, cls)
    hints = field_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise CodecError(f"{cls.__qualname__} has no field {', '.join(map(repr, unknown))}")
    kwargs = {}
    for name, field in fields.items():
        if name not in data:
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                raise CodecError(f"{cls.__qualname__}.{name} is missing")
            continue  # a field added with a default after the record was written
        try:
            kwargs[name] = decode(data[name], hints[name], paths)
        except CodecError as exc:
            raise CodecError(f"{cls.__qualname__}.{name}: {exc}") from None
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise CodecError(f"{cls.__qualname__}: {exc}") from exc


def _default(field: dataclasses.Field, cls: type) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    raise CodecError(f"{cls.__qualname__}.{field.name} is missing and has no default")


def _encode_sequence(value: Any, kind: type, args: tuple, paths: StorePaths) -> list[Any]:
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, tuple | list | set | frozenset):
        raise CodecError(f"{type(value).__name__} is not a {kind.__name__}")
    items = sorted(value, key=repr) if kind in (set, frozenset) else list(value)
    hints = _item_hints(kind, args, len(items))
    return [encode(item, h, paths) for item, h in zip(items, hints, strict=True)]


def _decode_sequence(data: Any, kind: type, args: tuple, paths: StorePaths) -> Any:
    _expect(data, list, kind)
    hints = _item_hints(kind, args, len(data))
    return kind(decode(item, h, paths) for item, h in zip(data, hints, strict=True))


def _item_hints(kind: type, args: tuple, n: int) -> list[Any]:
    if not args:
        return [Any] * n
    if kind is tuple and not (len(args) == 2 and args[1] is Ellipsis):
        if args == ((),):
            args = ()
        if len(args) != n:
            raise CodecError(f"{n} items where a tuple of {len(args)} was expected")
        return list(args)
    return [args[0]] * n


def _encode_path(value: Any, paths: StorePaths) -> Any:
    if not isinstance(value, str | PurePath):
        raise CodecError(f"{value!r} is not a path")
    relative = paths.relative(value)
    return os.fspath(value) if relative is None else {STORE_PATH: relative}


def _encode_float(value: float) -> Any:
    if math.isfinite(value):
        return value
    return {FLOAT: "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}


def _decode_float(data: Any) -> float:
    if isinstance(data, dict) and set(data) == {FLOAT} and data[FLOAT] in _NON_FINITE:
        return _NON_FINITE[data[FLOAT]]
    if isinstance(data, bool) or not isinstance(data, int | float):
        raise CodecError(f"{_short(data)} is not a float")
    return float(data)


def _encode_array(value: Any) -> dict[str, Any]:
    if not isinstance(value, np.ndarray):
        raise CodecError(f"{type(value).__name__} is not a numpy array")
    if value.dtype.hasobject:
        raise CodecError("arrays of Python objects cannot be stored as data")
    contiguous = np.ascontiguousarray(value)
    return {
        NDARRAY: {
            "dtype": contiguous.dtype.str,
            "shape": list(contiguous.shape),
            "data": base64.b64encode(contiguous.tobytes()).decode("ascii"),
        }
    }


def _decode_array(data: Any) -> np.ndarray:
    if not (isinstance(data, dict) and set(data) == {NDARRAY} and isinstance(data[NDARRAY], dict)):
        raise CodecError(f"{_short(data)} is not a stored array")
    spec = data[NDARRAY]
    try:
        dtype = np.dtype(spec["dtype"])
        if dtype.hasobject:
            raise CodecError("arrays of Python objects cannot be read from data")
        raw = base64.b64decode(spec["data"], validate=True)
        return np.frombuffer(raw, dtype=dtype).reshape(spec["shape"]).copy()
    except (KeyError, TypeError, ValueError) as exc:
        raise CodecError(f"stored array does not decode: {exc}") from exc


def _encode_plain(value: Any) -> Any:
    """Values declared `Any`: only JSON's own types (floats kept strict), recursively."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return _encode_float(value)
    if isinstance(value, list | tuple):
        return [_encode_plain(v) for v in value]
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {k: _encode_plain(v) for k, v in value.items()}
    raise CodecError(f"{type(value).__name__} value under an untyped field cannot be stored as data")


def _decode_plain(data: Any) -> Any:
    if isinstance(data, dict):
        if set(data) == {FLOAT}:
            return _decode_float(data)
        return {k: _decode_plain(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_decode_plain(v) for v in data]
    return data


def _fits(value: Any, hint: Any) -> bool:
    """Whether `value` is of the union member `hint` (to pick the member that encodes it)."""
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is Any or hint is object:
        return True
    if hint is float:
        return isinstance(value, float | np.floating)
    if hint is int:
        return isinstance(value, int | np.integer) and not isinstance(value, bool)
    if hint is bool:
        return isinstance(value, bool | np.bool_)
    if hint is np.ndarray or origin is np.ndarray:
        return isinstance(value, np.ndarray)
    if isinstance(hint, type) and issubclass(hint, PurePath):
        return isinstance(value, str | PurePath)
    target = origin or hint
    return isinstance(target, type) and isinstance(value, target)


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _accepts_none(hint: Any) -> bool:
    return hint is type(None) or (_is_union(hint) and type(None) in typing.get_args(hint))


def _expect(data: Any, kind: type, hint: Any) -> None:
    if not isinstance(data, kind) or (kind is int and isinstance(data, bool)):
        raise CodecError(f"{_short(data)} where a {_name(hint)} was expected")


def _str_key(key: Any) -> str:
    if not isinstance(key, str):
        raise CodecError(f"mapping key {key!r} is not a str")
    return key


def _name(hint: Any) -> str:
    return getattr(hint, "__qualname__", None) or str(hint)


def _short(data: Any) -> str:
    text = repr(data)
    return text if len(text) <= 80 else text[:77] + "..."
