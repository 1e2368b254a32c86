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

# The main job: the quick ablation (addressing x cell on copy, 3 seeds, local Ray, ./armin.db),
# then its report in reports/copy-ablation-quick/ (index.html, report.md, CSV, figures).
demo: $(VENV)/.installed
	$(VENV)/bin/armin ablation run ablations/copy_quick.toml --db armin.db
	$(VENV)/bin/armin report copy-ablation-quick --db armin.db --out reports/copy-ablation-quick

test: $(VENV)/.installed
	$(PY) -m pytest -q
