# Two commands on a fresh machine with Python 3.11 and pip:
#   make demo   -> runs the quickstart pipeline end to end
#   make test   -> lint, type-check and the test suite
# Installs take the versions pinned in constraints.txt (those the tests passed with).
#   make lock   -> upgrade the venv to the newest versions pyproject.toml allows and
#                  rewrite constraints.txt from it; run `make test` before committing it
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.offrec-installed

PIP    := $(PY) -m pip --disable-pip-version-check

.PHONY: demo test test-slow bench lint lock clean chromium

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned to the CPU build, so nothing pulls a CUDA build
	$(PIP) install --quiet -c constraints.txt torch==2.13.0
	$(PIP) install --quiet -c constraints.txt -e '.[dev,sb3,ray,interop,minari,serve,catalog,sardine]'
	# SCOPE-RL's RECEnv (package recgym) for the external-world tests: the scope-rl wheel
	# without its declared pins (recgym needs only gym, numpy and scikit-learn, all above)
	$(PIP) install --quiet --no-deps scope-rl==0.2.1
	touch $(STAMP)

# newest versions pyproject.toml allows (torch stays pinned there), then freeze them
lock: $(STAMP)
	$(PIP) install --quiet --upgrade --upgrade-strategy eager -e '.[dev,sb3,ray,interop,minari,serve,catalog,sardine]'
	( sed -n '1,2p' constraints.txt; $(PIP) freeze --exclude-editable \
	  | grep -v -i '^offrec' | sed -E 's/^(torch==[^+]*)\+.*/\1/' | sort -f ) > constraints.txt.new
	mv constraints.txt.new constraints.txt
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/offrec run pipelines/quickstart.toml --out runs/quickstart
	# the report checked in headless Chromium, screenshot kept (skipped when no Chromium: exit 2)
	$(PY) -m offrec.report.browser runs/quickstart/report.html --screenshot runs/quickstart/report.png || [ $$? -eq 2 ]

# headless Chromium for the report's browser test (Debian's package; best effort: without it
# the test is skipped and says why)
chromium:
	@command -v chromium >/dev/null 2>&1 || ( [ "$$(id -u)" = 0 ] && apt-get update -qq \
	  && apt-get install -y -qq chromium >/dev/null ) || echo "chromium not installed: the browser test will be skipped"

lint: $(STAMP)
	$(VENV)/bin/ruff check offrec tests benchmarks
	$(VENV)/bin/ruff format --check offrec tests benchmarks
	$(VENV)/bin/mypy

test: lint chromium
	$(PY) -m pytest

test-slow: $(STAMP)
	$(PY) -m pytest -m slow

bench: $(STAMP)
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
