# QA-CLIMS: `make demo` runs the pipeline on the embedded toy world, `make test` runs the tests.
# Both create .venv (Python >= 3.10) and install requirements.txt on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum < requirements.txt | cut -d' ' -f1)

.PHONY: setup demo smoke test test-fast lint bench clean-work

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(PY) run_sample.py --config configs/demo.yaml

smoke: setup
	$(PY) run_sample.py --config configs/smoke.yaml

test: setup
	$(PY) -m pytest -q tests

test-fast: setup   # the unit tests only (no end-to-end runs: the `slow` marker, pyproject.toml)
	$(PY) -m pytest -q -m "not slow" tests

lint: setup   # ruff, then mypy (docs/layout.md#checks-make-lint)
	$(PY) -m ruff check .   # settings in pyproject.toml
	$(PY) -m mypy           # files and settings: pyproject.toml [tool.mypy]

bench: setup
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) -m bench.$$(basename $$b .py) || exit 1; done

clean-work:
	rm -rf work
