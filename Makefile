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

# Two worker processes (pytest-xdist): most tests wait on subprocesses and Ray, so two share two cores
# well (measured: 907 s serial, 646 s on two). Each worker has its own local Ray cluster.
test: $(VENV)/.installed
	$(PY) -m pytest -q -n 2 --dist worksteal
