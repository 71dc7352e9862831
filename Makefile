# dmtl: `make demo` runs the study on built-in digits; `make test` runs the test suite.
# Both create the virtual environment on first use (torch pinned in constraints.txt).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
FASHION_DIR ?= /usr/share/datasets/fashion-mnist
PYTEST_ARGS ?=

.PHONY: install demo test test-fast lint bench fashion-mnist clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[vision,export,faces,stream,dev]'
	touch $(STAMP)

# Fashion-MNIST comes from the Debian package dataset-fashion-mnist; installed when apt is
# available and the folder is missing. Its absence only skips the tests that need it.
fashion-mnist:
	@if [ ! -d "$(FASHION_DIR)" ] && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 \
		|| echo "note: could not install dataset-fashion-mnist; Fashion-MNIST tests will be skipped"; \
	fi

demo: $(STAMP)
	$(VENV)/bin/dmtl demo

test: $(STAMP) fashion-mnist
	$(PY) -m pytest -n 2 -q $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -n 2 -q -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m mypy

bench: $(STAMP) fashion-mnist
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
