# Every target creates the virtualenv it needs, so a fresh clone needs no other set-up step.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.euclidnet-installed
PYTEST_ARGS ?=

.PHONY: demo test test-all lint bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,compare]'
	touch $(STAMP)

# A few slow tests that CI runs too: an end-to-end equivariant training and multi-process training.
SLOW_SUBSET := "tests/test_tetris.py::test_tetris_trains_and_generalises_to_all_orientations[nequip]" \
	tests/test_ddp.py::test_torchrun_two_processes_match_one_process

# The fast suite (tests marked `slow` left out) plus SLOW_SUBSET; pytest's exit code 5 ("no tests") is fine.
test: $(STAMP)
	$(PY) -m ruff check euclidnet tests benchmarks scripts
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then rc=0; fi; exit $$rc
	$(PY) -m pytest -q $(SLOW_SUBSET); rc=$$?; if [ $$rc -eq 5 ]; then rc=0; fi; exit $$rc

test-all: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then rc=0; fi; exit $$rc

lint: $(STAMP)
	$(PY) -m ruff check euclidnet tests benchmarks scripts

demo: $(STAMP)
	$(PY) -m euclidnet.cli demo potential

bench: $(STAMP)
	$(PY) benchmarks/spherical_harmonics.py

clean:
	rm -rf $(VENV) build *.egg-info
