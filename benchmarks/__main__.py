"""Run every benchmark and print their tables: ``python -m benchmarks [name ...]``."""

from __future__ import annotations

import importlib
import sys

ALL = ("bench_world", "bench_logs", "bench_ope", "bench_bandits", "bench_rl")


def main(argv: list[str]) -> None:
    for name in argv or ALL:
        print(f"\n===== {name} =====", flush=True)
        sys.argv = [name]  # scripts that parse options see their defaults
        importlib.import_module(f"benchmarks.{name}").main()


if __name__ == "__main__":
    main(sys.argv[1:])
