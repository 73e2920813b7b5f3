# Two commands on a fresh machine with Python 3.11 and pip:
#   make demo   -> runs the quickstart pipeline end to end
#   make test   -> lint, type-check and the test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.offrec-installed

.PHONY: demo test test-slow bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned to the CPU build, so nothing pulls a CUDA build
	$(PY) -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,sb3,ray]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/offrec run pipelines/quickstart.toml --out runs/quickstart

lint: $(STAMP)
	$(VENV)/bin/ruff check offrec tests benchmarks
	$(VENV)/bin/ruff format --check offrec tests benchmarks
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest

test-slow: $(STAMP)
	$(PY) -m pytest -m slow

bench: $(STAMP)
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
