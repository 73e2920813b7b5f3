"""What the subcommands share: the parser class, progress bars, world options, parsing."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from offrec.core.errors import InputError


class LazyChoices(Sequence[str]):
    """``choices=`` from a registry, imported on first use: ``offrec --help`` never loads
    the packages that own the names (scipy, scikit-learn, torch); a subcommand's own
    ``--help`` or a parse does. Give the argument a ``metavar`` (argparse would
    otherwise list the choices when the parser is built)."""

    def __init__(self, module: str, attr: str) -> None:
        self._where = (module, attr)
        self._names: tuple[str, ...] | None = None

    def _load(self) -> tuple[str, ...]:
        if self._names is None:
            import importlib

            module, attr = self._where
            value: Any = importlib.import_module(module)
            for part in attr.split("."):
                value = getattr(value, part)
            self._names = tuple(value)
        return self._names

    def __getitem__(self, i: Any) -> Any:
        return self._load()[i]

    def __len__(self) -> int:
        return len(self._load())

    def __contains__(self, value: object) -> bool:
        return value in self._load()

    def __iter__(self) -> Any:
        return iter(self._load())

    def __repr__(self) -> str:
        return repr(list(self._load()))


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default (``off`` for flags, ``none`` when unset)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            not action.option_strings
            or action.required
            or action.default is argparse.SUPPRESS
            or "default" in text
        ):
            return text
        if isinstance(
            action, argparse._StoreTrueAction | argparse._HelpAction | argparse._VersionAction
        ):
            return (
                text
                if isinstance(action, argparse._HelpAction | argparse._VersionAction)
                else text + " (default: off)"
            )
        if action.default is None:
            return text + " (default: none)"
        return text + " (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:  # argparse's own usage errors: one line, exit 2
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def add_global_options(p: argparse.ArgumentParser, *, top: bool = False) -> None:
    """``-q/--quiet``, accepted before and after the subcommand."""
    p.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="no progress bars or progress messages" + ("" if top else " (default: off)"),
    )


def progress(args: argparse.Namespace, total: int | None, desc: str) -> Any:
    """A tqdm progress bar on stderr (none with --quiet or when stderr is not a terminal)."""
    from tqdm import tqdm

    quiet = args.quiet or not sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit="row", unit_scale=True, disable=quiet, file=sys.stderr)


def world_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--world", type=Path, help="world config file (.json or .toml)")
    p.add_argument("--n-items", type=int, help="override the world's number of items")
    p.add_argument("--n-topics", type=int, help="override the world's number of topics")
    p.add_argument("--n-users", type=int, help="override the world's user population size")
    p.add_argument("--horizon", type=int, help="steps per session (1 = bandit mode)")
    p.add_argument("--world-seed", type=int, default=0, help="seed of items and users")


WORLD_OVERRIDES = ("n_items", "n_topics", "n_users", "horizon")


def world_from_args(args: argparse.Namespace) -> Any:
    from offrec.sim import World, WorldConfig
    from offrec.sim.limits import check_world_size

    cfg = WorldConfig.from_file(args.world) if args.world else WorldConfig()
    overrides = {k: getattr(args, k) for k in WORLD_OVERRIDES if getattr(args, k) is not None}
    if overrides:
        cfg = cfg.replace(**overrides)
    check_world_size(cfg)
    return World(cfg, seed=args.world_seed)


def parse_params(items: list[str] | None) -> dict[str, Any]:
    """``["alpha=0.5", "n_steps=100"]`` -> {"alpha": 0.5, "n_steps": 100} (JSON values, else strings)."""
    import json

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--param must look like key=value; got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def parse_head(text: str) -> Any:
    """``greedy`` | ``epsilon_greedy:0.1`` | ``softmax:0.5`` (temperature)."""
    from offrec.core.policy import Head

    kind, _, arg = text.partition(":")
    try:
        if kind == "epsilon_greedy":
            return Head(kind, epsilon=float(arg or 0.1))
        if kind == "softmax":
            return Head(kind, temperature=float(arg or 1.0))
        if arg:
            raise InputError(f"--head {kind} takes no value; got {text!r}")
        return Head(kind)
    except ValueError as exc:
        raise InputError(f"--head {text!r}: {exc}") from None


def fmt(v: float) -> str:
    return f"{v:.4f}"
