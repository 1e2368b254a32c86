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

# The main job: the copy-memory ablation (ARMIN vs its LSTM-cell variant vs a plain LSTM on copy,
# seeds on demand, local Ray, ./armin.db), then its report in reports/copy-memory/ (index.html,
# report.md, report.tex, CSV, figures).
demo: $(VENV)/.installed
	$(VENV)/bin/armin ablation run ablations/copy_memory.toml --db armin.db
	$(VENV)/bin/armin report copy-memory --db armin.db --out reports/copy-memory

test: $(VENV)/.installed
	$(PY) -m pytest -q
