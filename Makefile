# The two commands a user needs are `make run` and `make test`; both set up first: `make run` with
# what running needs (`setup`), `make test` adds the test and lint tools (`setup-test`).
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= config/ocr-daemon.toml
ARGS ?=  # e.g. make run ARGS="--engine tesseract --languages deu,eng"

.PHONY: setup setup-test run test lint bench install uninstall clean

setup:
	@bash scripts/setup.sh

setup-test:
	@bash scripts/setup.sh test

run: setup
	$(BIN)/ocr-daemon run --config $(CONFIG) $(ARGS)

lint: setup-test
	$(BIN)/ruff check ocr_daemon tests benchmarks
	$(BIN)/ruff format --check ocr_daemon tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python scripts/architecture.py --check

# Two at a time on the cores there are, then the timing-sensitive and machine-wide tests alone
# (marker "serial"); both parts always run, and either failing fails the target.
test: setup-test lint
	@status=0; \
	$(BIN)/python -m pytest -n 2 -m "not serial" || status=1; \
	$(BIN)/python -m pytest -m serial || status=1; \
	exit $$status

bench: setup-test
	$(BIN)/python benchmarks/run_all.py

install:
	bash scripts/install.sh

uninstall:
	bash scripts/uninstall.sh

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
