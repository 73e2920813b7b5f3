"""Versioned JSON headers of saved files: one writer and one checked reader for every format.

Every file offrec saves for later loading (a bandit policy's ``policy.json``, a
Q-policy's ``qpolicy.json``, a model folder's ``world.json``) starts with the same
header::

    {"format": "offrec.policy", "format_version": 1, "offrec_version": "0.1.0", ...}

:func:`header` writes it and :func:`read_versioned_json` reads the file back, checking
that it is JSON (truncated or corrupt files name where they break), an object, of the
expected ``format`` and of a version this offrec reads. Files written before a format
carried a header (``legacy=True``) are accepted as version 0 when they have no
``format`` key at all.

>>> import json, tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "x.json"
>>> _ = p.write_text(json.dumps({**header("offrec.demo", 1), "n": 3}))
>>> read_versioned_json(p, "offrec.demo", versions=(1,), what="demo file")["n"]
3
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from offrec.core.errors import InputError, MissingInputError

__all__ = ["header", "read_versioned_json"]


def header(fmt: str, version: int) -> dict[str, Any]:
    """``{"format": fmt, "format_version": version, "offrec_version": ...}``."""
    from offrec.core.version import __version__

    return {"format": fmt, "format_version": version, "offrec_version": __version__}


def read_versioned_json(
    path: str | Path,
    fmt: str,
    *,
    versions: tuple[int, ...] = (1,),
    what: str = "model file",
    legacy: bool = False,
) -> dict[str, Any]:
    """The JSON object in ``path``, checked to be of format ``fmt`` and a version in
    ``versions``; with ``legacy``, an object without a ``format`` key is read as version 0.

    Raises:
        MissingInputError: ``path`` is not a file.
        InputError: not JSON, not an object, another format or an unread version (the
            message names the file, the field and the value found).
    """
    from offrec.core.codec import read_json_file

    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{what} {path} not found")
    raw = read_json_file(path, what)
    if not isinstance(raw, dict):
        raise InputError(f"{what} {path} must hold a JSON object; got {type(raw).__name__}")
    if legacy and "format" not in raw:
        return {**raw, "format": fmt, "format_version": 0}
    if raw.get("format") != fmt:
        raise InputError(
            f"{path} is not an offrec {what}: format must be {fmt!r}; got {raw.get('format')!r}"
        )
    if raw.get("format_version") not in versions:
        raise InputError(
            f"{path} has format_version {raw.get('format_version')!r}; this offrec reads "
            f"version {', '.join(map(str, versions))}"
        )
    return raw
