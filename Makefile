# The two set-up commands of the README. Each creates its own virtual environment (.venv) with
# plain pip on first use, then runs: `make demo` (the main job) or `make test` (the test suite).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: demo test

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# The main job: a short ARMIN training run on the copy task, result in runs/demo.json.
demo: $(VENV)/.installed
	$(VENV)/bin/armin train --task copy --task-option max_len=10 --steps 300 --eval-every 100 \
		--seed 1 --out runs/demo.json

test: $(VENV)/.installed
	$(PY) -m pytest -q
