# The README's two commands: `make demo` and `make test`. Each creates .venv when missing and
# installs the project with the exact versions pinned in requirements.lock.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
JOBS   ?= 2
SHELL  := /bin/bash
.SHELLFLAGS := -o pipefail -c
QUIET  := { grep -v '^WARNING: Location' || true; }

.PHONY: demo test bench lint lock clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "trials needs Python 3.11 or newer (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml requirements.lock | $(BIN)/python
	$(PIP) install -c requirements.lock -e '.[test]' 2>&1 | $(QUIET)
	$(BIN)/python -c 'import trials, designs, outcomes, analysis, reports'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/trials demo --out demo-output

test: $(STAMP)
	$(BIN)/python -m pytest -n $(JOBS) --dist loadfile -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_demo.py

lint: $(STAMP)
	$(BIN)/ruff check trials designs outcomes analysis reports tests benchmarks

# Regenerate the exact environment lock from the current .venv (commit the result).
lock: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e ' > requirements.lock

clean:
	rm -rf $(VENV) demo-output .pytest_cache
