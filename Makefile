# `make demo` and `make test` set everything up on a fresh machine: a Python 3.11 virtual
# environment in .venv (the local torch 2.13.0 CPU wheel is for CPython 3.11), installed with
# constraints.txt so that no CUDA torch is ever pulled.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean chromium

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mtlbench demo

# The HTML report test runs in headless Chromium (Debian's package); as root with apt-get it is
# installed here (about a minute), elsewhere that one test is skipped with its reason.
chromium:
	@command -v chromium >/dev/null 2>&1 || { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing chromium (for the HTML report test)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "no chromium: the HTML report test will be skipped"; fi; }

test: $(STAMP) chromium
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

bench: $(STAMP)
	$(BIN)/python bench/epoch_time.py

clean:
	rm -rf $(VENV) mtlbench-results .pytest_cache .ruff_cache
