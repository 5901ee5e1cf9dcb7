# Two entry points: `make demo` (train on the embedded digits) and `make test` (the test suite).
# Both create .venv and install jsnn into it on first use.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test,plot,nir]'
	touch $(STAMP)

demo: $(STAMP)
	rm -rf runs/demo
	$(VENV)/bin/jsnn train --method bptt --data digits --out runs/demo

# The unit tests and notebooks run with float64 and strict dtype promotion (tests/conftest.py);
# the docstring examples run in their own process with the library defaults (float32).
# Two pytest-xdist workers: the tests are compile-bound, so two cores halve the wall time.
test: $(STAMP)
	$(VENV)/bin/python -m pytest -n 2
	$(VENV)/bin/python -m pytest -n 2 --doctest-modules jsnn

bench: $(STAMP)
	$(VENV)/bin/python bench/run_b1.py
	$(VENV)/bin/python bench/render_tables.py
