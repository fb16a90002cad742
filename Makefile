# mrimpute: `make demo` runs the main job on the embedded sample; `make test` runs the linter and the test suite;
# `make test-fast` skips the tests marked slow (real scans from ../shared/data, model training).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_CPU := torch==2.13.0

.PHONY: install demo test test-fast clean corpus bench

$(BIN)/mrimpute: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH_CPU)"
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

install: $(BIN)/mrimpute

demo: install
	$(BIN)/mrimpute demo --out-dir demo-output --force

test: install
	$(BIN)/ruff check src tests benchmarks tools
	$(BIN)/python -m pytest -q -n 2 --durations=10

test-fast: install
	$(BIN)/python -m pytest -q -n 2 -m "not slow"

clean:
	rm -rf $(VENV) demo-output .pytest_cache

corpus: install
	$(BIN)/python benchmarks/bad_input_corpus.py

# synthesis s/volume, training slices/s and peak memory beside the eager reference (see benchmarks/README.md)
BENCH_DATA ?= ../shared/data/coregistered
bench: install
	$(BIN)/mrimpute bench --data $(BENCH_DATA) --json bench.json --force
