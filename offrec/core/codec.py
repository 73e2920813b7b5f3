"""One codec for config dataclasses: dict / JSON / TOML in and out, checked when parsed.

:class:`ConfigCodec` is a mixin for frozen dataclasses (``WorldConfig``, ``RLConfig``,
``OnlineConfig``, the pipeline specs). From the fields' type hints it

- writes ``to_dict()`` (tuples as lists, nested configs as dicts) and ``to_json()``;
- reads ``from_dict(data)``: unknown keys are an error listing the valid ones, missing
  required keys an error naming them, and every value is checked against its field's
  type (``int``, ``float`` (an int is accepted), ``bool``, ``str``, ``X | None``,
  ``tuple[X, ...]`` from a list, ``dict[str, Any]``, nested configs and tuples of them)
  before the dataclass's own ``__post_init__`` checks ranges;
- reads ``from_json(text)`` and ``from_toml(text)``.

Errors name the field, the rule and the value, e.g.
``"RLConfig.n_steps must be int; got 'ten'"``.

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Toy(ConfigCodec):
...     CODEC_NAME = "toy config"
...     size: int = 1
...     widths: tuple[int, ...] = (8,)
>>> Toy.from_json('{"size": 3, "widths": [4, 2]}')
Toy(size=3, widths=(4, 2))
>>> Toy(widths=(4,)).to_dict()
{'size': 1, 'widths': [4]}
>>> Toy.from_dict({"sise": 3})
Traceback (most recent call last):
...
offrec.core.errors.InputError: unknown toy config key(s) ['sise']; valid keys: size, widths
>>> Toy.from_dict({"size": "3"})
Traceback (most recent call last):
...
offrec.core.errors.InputTypeError: Toy.size must be int; got '3'
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import types
import typing
from typing import Any, ClassVar, TypeVar, Union, get_args, get_origin

from offrec.core.errors import InputError, InputTypeError

__all__ = ["ConfigCodec", "read_json_file", "read_text_file"]


def read_text_file(path: Any, what: str) -> str:
    """The UTF-8 text of the file ``path``; ``what`` names it in errors (``"pipeline
    file"``, ``"model file"``). A missing file is a ``MissingInputError``; a folder, an
    unreadable file (permissions, I/O error) or text that is not UTF-8 is an
    ``InputError`` of one line naming the file (and, for bad UTF-8, the byte and where)."""
    from pathlib import Path

    from offrec.core.errors import MissingInputError

    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise MissingInputError(f"{what} not found: {p}") from None
    except IsADirectoryError:
        raise InputError(f"{what} {p} is a folder, not a file") from None
    except OSError as exc:
        raise InputError(f"cannot read {what} {p}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{what} {p} is not UTF-8 text: byte 0x{data[exc.start]:02x} at position "
            f"{exc.start}; save it as UTF-8"
        ) from None


def read_json_file(path: Any, what: str) -> Any:
    """The JSON value in the file ``path`` (see :func:`read_text_file`); truncated or
    corrupt JSON is an ``InputError`` naming the file and where the JSON breaks."""
    text = read_text_file(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{what} {path} is not valid JSON (truncated or corrupt): {exc}; "
            "write it again (e.g. retrain the model)"
        ) from None


C = TypeVar("C", bound="ConfigCodec")


class ConfigCodec:
    """Mixin: ``to_dict`` / ``to_json`` / ``from_dict`` / ``from_json`` / ``from_toml``.

    ``CODEC_NAME`` names the config in the unknown-key error (``"world config"``);
    type errors are prefixed with the class name (``"WorldConfig.horizon"``) or with the
    ``where`` given to :meth:`from_dict` (``"[logging]"``).
    """

    CODEC_NAME: ClassVar[str] = "config"

    # -- out -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Field name -> JSON-able value (tuples as lists, nested configs as dicts)."""
        return {f.name: _encode(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    def to_json(self) -> str:
        """:meth:`to_dict` as JSON, keys sorted."""
        return json.dumps(self.to_dict(), sort_keys=True)

    # -- in --------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls: type[C], data: Any, *, where: str | None = None) -> C:
        """Build from a mapping, checking keys and value types (see the module docstring).

        ``where`` (e.g. ``"[logging]"``) locates the mapping in a larger file; errors then
        read ``"unknown key(s) [...] in [logging]; valid keys: ..."``.
        """
        label = where or cls.__name__
        if not isinstance(data, dict):
            raise InputTypeError(f"{where or cls.CODEC_NAME} must be a mapping; got {data!r}")
        flds = dataclasses.fields(cls)  # type: ignore[arg-type]
        valid = [f.name for f in flds]
        unknown = sorted(set(data) - set(valid))
        if unknown:
            if where is None:
                raise InputError(
                    f"unknown {cls.CODEC_NAME} key(s) {unknown}; valid keys: {', '.join(valid)}"
                )
            raise InputError(f"unknown key(s) {unknown} in {where}; valid keys: {', '.join(valid)}")
        required = [
            f.name
            for f in flds
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        missing = [k for k in required if k not in data]
        if missing:
            raise InputError(f"{label} is missing required key(s) {missing}")
        hints = typing.get_type_hints(cls)
        sep = " " if where else "."
        kwargs = {k: _decode(v, hints[k], f"{label}{sep}{k}") for k, v in data.items()}
        return cls(**kwargs)

    @classmethod
    def from_json(cls: type[C], text: str) -> C:
        """Build from JSON text (an object), as :meth:`from_dict`."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{cls.CODEC_NAME} is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    @classmethod
    def from_toml(cls: type[C], text: str, *, table: str | None = None) -> C:
        """Build from TOML text; ``table`` picks a ``[table]`` of it (the whole file if absent)."""
        try:
            data: Any = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise InputError(f"{cls.CODEC_NAME} is not valid TOML: {exc}") from None
        if table is not None:
            data = data.get(table, data)
        return cls.from_dict(data)


# -- values --------------------------------------------------------------------------------------
def _encode(value: Any) -> Any:
    if isinstance(value, ConfigCodec):
        return value.to_dict()
    if isinstance(value, tuple | list):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    return value


_NAMES = {int: "int", float: "float", bool: "bool", str: "str", dict: "a table"}


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):  # None is left out: a file omits the key instead
        return " or ".join(_describe(a) for a in get_args(tp) if a is not type(None))
    if origin is tuple:
        return f"a list of {_describe(get_args(tp)[0])}"
    if origin is dict or tp is dict:
        return "a table"
    if tp is type(None):
        return "None"
    if isinstance(tp, type) and issubclass(tp, ConfigCodec):
        return "a table"
    return _NAMES.get(tp, getattr(tp, "__name__", str(tp)))


def _decode(value: Any, tp: Any, where: str) -> Any:
    """``value`` checked against (and converted to) the type hint ``tp``."""
    if tp is Any:
        return value
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _decode(value, option, where)
            except (InputTypeError, InputError):
                continue
        raise InputTypeError(f"{where} must be {_describe(tp)}; got {value!r}")
    if origin is tuple:
        args = get_args(tp)
        if not isinstance(value, list | tuple):
            raise InputTypeError(f"{where} must be {_describe(tp)}; got {value!r}")
        item = args[0]
        return tuple(_decode(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise InputTypeError(f"{where} must be a table; got {value!r}")
        return dict(value)
    if isinstance(tp, type) and issubclass(tp, ConfigCodec):
        if isinstance(value, tp):
            return value
        return tp.from_dict(value, where=where)
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(tp, type) and isinstance(value, tp):
        return value
    raise InputTypeError(f"{where} must be {_describe(tp)}; got {value!r}")
