# The two commands a user needs are `make run` and `make test`; both set up first.
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= config/ocr-daemon.toml

.PHONY: setup run test lint bench install uninstall clean

setup:
	@bash scripts/setup.sh

run: setup
	$(BIN)/ocr-daemon run --config $(CONFIG)

lint: setup
	$(BIN)/ruff check ocr_daemon tests benchmarks
	$(BIN)/ruff format --check ocr_daemon tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python scripts/architecture.py --check

test: setup lint
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python benchmarks/run_all.py

install:
	bash scripts/install.sh

uninstall:
	bash scripts/uninstall.sh

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
