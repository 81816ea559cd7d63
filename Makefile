# The two commands of the README:
#   make demo   set up everything and run the whole pipeline on a local Kafka broker
#   make test   set up everything and run the tests exactly as CI does (.ci/run calls it)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=
# Test processes of `make test` (pytest-xdist); each starts its own Kafka broker.
TEST_WORKERS ?= 2

.PHONY: demo test lint install kafka-jars test-floors clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Re-installs only when the dependency list changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# Resolves Apache Kafka's jars from Maven Central into the cache once (a no-op afterwards).
kafka-jars: install
	$(BIN)/python -c "from forecaster.kafka.broker import resolve_jars; print(resolve_jars())"

demo: kafka-jars
	$(BIN)/forecaster demo $(DEMO_ARGS)

# mypy checks the packages named in pyproject.toml's [tool.mypy]; lint-imports keeps the layers of
# docs/architecture.md pointing down ([tool.importlinter] in pyproject.toml).
lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# pytest exits 5 when it collected no test: make treats that as the failure it is.
test: kafka-jars lint
	$(BIN)/pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

# The floors of pyproject.toml: the oldest versions they allow of every direct dependency (uv's
# lowest-direct resolution) in a venv of their own, and the tests of the code those packages serve.
test-floors: install
	$(BIN)/uv venv -q --python $(PYTHON) .venv-floors
	$(BIN)/uv pip install -q --python .venv-floors/bin/python --resolution lowest-direct -e '.[dev]'
	.venv-floors/bin/python -m pytest $(PYTEST_ARGS) tests/api tests/models tests/core tests/producers \
		tests/stream tests/test_demo.py forecaster models producers api

clean:
	rm -rf $(VENV) .venv-floors .forecaster .pytest_cache .import_linter_cache
