# The two commands: `make demo` and `make test`. Everything installs from nothing.
PY ?= python3
# One venv per interpreter: `make test PY=/usr/bin/python3` (Debian's 3.11.2) never reuses another Python's venv.
VENV ?= .venv$(if $(filter python3,$(PY)),,-$(shell $(PY) -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])'))
BIN := $(VENV)/bin
CHECKOV_VENV := .venv-checkov
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# Bytecode caches written as on any developer's machine (some sandboxes and CI images set this variable: then
# every process the tests start compiles batchsweep's modules again, and __pycache__ never appears beside a script).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: setup runtime demo test test-image lint bench clean chromium image-tools

# Everything: the package, its extras and the test tooling (what `make test` and `make lint` need).
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,search,dask,mlflow]'
	touch $(VENV)/.runtime $@

# The package and its runtime dependencies only (what `make demo` needs).
runtime: $(VENV)/.runtime

$(VENV)/.runtime: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -e .
	touch $@

# checkov pins an old boto3 and packaging<24: it lives in its own venv.
$(CHECKOV_VENV)/.installed:
	$(PY) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q 'checkov==3.3.30'
	touch $@

# Headless Chromium for the report's browser test (Debian package).
chromium:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

# podman, buildah and debootstrap for the task-image test (Debian packages; no Docker daemon needed).
image-tools:
	@command -v podman >/dev/null 2>&1 && command -v buildah >/dev/null 2>&1 && command -v debootstrap >/dev/null 2>&1 \
	  || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 \
	      podman buildah debootstrap >/dev/null)

demo: runtime
	$(BIN)/batchsweep run examples/backtest/sweep.yaml --warm
	$(BIN)/batchsweep results --sort sharpe

lint: setup
	$(BIN)/ruff check src tests bench examples
	$(BIN)/mypy src/batchsweep
	$(BIN)/lint-imports --no-cache

# The tests run in TEST_WORKERS processes (pytest-xdist): much of their time is spent waiting on the processes
# they start (tasks, runners, moto, Dask), so three workers keep two cores busier than two do (measured on the
# 2-core VM: 3:57 against 4:58, the same ~376 CPU-seconds). TEST_WORKERS=0 runs them in one.
TEST_WORKERS ?= 3
test: setup $(CHECKOV_VENV)/.installed chromium lint
	CHECKOV=$(abspath $(CHECKOV_VENV))/bin/checkov $(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup tests

# Builds the real task image (a debootstrap base cached in ~/.cache/batchsweep-tests) and plays an AWS sweep
# inside it: minutes, so not part of `make test`.
test-image: setup image-tools
	BATCHSWEEP_IMAGE_TESTS=1 $(BIN)/pytest -m image tests

bench: setup
	$(BIN)/python bench/local_throughput.py

clean:
	rm -rf .venv .venv-3.* $(CHECKOV_VENV) .batchsweep
