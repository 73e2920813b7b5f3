"""Name registries: one per concept (learners, RL algorithms, loggers, heads, reward models).

A :class:`Registry` maps each *canonical* name to its entry (a class, or ``None`` when
the package only needs the name). Everything else (pipeline validation, the CLI's
``choices=``, the persistence format) derives its names from the owning package's
registry instead of copying them. A thing has one name; an old name kept so that files
written earlier still load is a *deprecated alias*: it resolves to the canonical name
with a ``DeprecationWarning`` and is never listed among the choices.

Names are lower-case words joined by hyphens, like the estimators'
(``switch-dr``, ``double-dqn``, ``epsilon-greedy``). Offrec once joined them with
underscores (``double_dqn``), and scripts, TOML files and saved models still hold those:
every hyphenated name therefore gets its underscore spelling as a deprecated alias
(:meth:`Registry.resolve` is the one place names are normalised).

>>> colours = Registry("colour", {"red": 1, "blue": 2}, aliases={"rouge": "red"})
>>> colours.names
('red', 'blue')
>>> colours["blue"]
2
>>> tools = Registry("tool", {"double-dqn": 1})
>>> tools.aliases
{'double_dqn': 'double-dqn'}
>>> colours.resolve("green")
Traceback (most recent call last):
...
offrec.core.errors.InputError: colour must be one of ['red', 'blue']; got 'green'
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from typing import Generic, TypeVar

from offrec.core.errors import InputError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """Canonical names -> entries, in a fixed order, plus deprecated aliases.

    Args:
        concept: what the names name, used in errors (``"learner"``, ``"head kind"``).
        entries: canonical name -> entry, in the order choices are listed.
        aliases: old name -> canonical name; each alias resolves with a
            ``DeprecationWarning``. An alias may not shadow a canonical name. The
            underscore spelling of each hyphenated name (``double_dqn`` for
            ``double-dqn``) is added as an alias automatically.

    Iteration, ``len`` and ``in`` see canonical names only; ``registry[alias]`` and
    :meth:`resolve` accept aliases too.
    """

    def __init__(
        self, concept: str, entries: Mapping[str, T], aliases: Mapping[str, str] | None = None
    ) -> None:
        self.concept = concept
        self._entries = dict(entries)
        self.aliases = dict(aliases or {})
        for name in self._entries:  # the old underscore spelling of a hyphenated name
            old = name.replace("-", "_")
            if old != name and old not in self._entries:
                self.aliases.setdefault(old, name)
        for old, new in self.aliases.items():
            if old in self._entries:
                raise ValueError(f"{concept} alias {old!r} shadows a canonical name")
            if new not in self._entries:
                raise ValueError(f"{concept} alias {old!r} points to unknown name {new!r}")

    @property
    def names(self) -> tuple[str, ...]:
        """The canonical names, in registration order (what ``choices=`` should list)."""
        return tuple(self._entries)

    def resolve(self, name: object, field: str | None = None) -> str:
        """The canonical name for ``name`` (an alias warns); ``InputError`` if unknown.

        ``field`` names the offending input in the error (default: the concept).
        """
        if isinstance(name, str):
            if name in self._entries:
                return name
            if name in self.aliases:
                new = self.aliases[name]
                warnings.warn(
                    f"{self.concept} {name!r} is a deprecated alias of {new!r}; use {new!r}",
                    DeprecationWarning,
                    stacklevel=3,
                )
                return new
        raise InputError(f"{field or self.concept} must be one of {list(self.names)}; got {name!r}")

    def __getitem__(self, name: str) -> T:
        return self._entries[self.resolve(name)]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __repr__(self) -> str:
        return f"Registry({self.concept!r}, {list(self.names)})"
