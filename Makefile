# The two commands: `make demo` and `make test`. Everything installs from nothing.
PY ?= python3
# One venv per interpreter: `make test PY=/usr/bin/python3` (Debian's 3.11.2) never reuses another Python's venv.
VENV ?= .venv$(if $(filter python3,$(PY)),,-$(shell $(PY) -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])'))
BIN := $(VENV)/bin
CHECKOV_VENV := .venv-checkov
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# Every install comes from the committed lock (requirements/*.txt, made by `make lock`), so a fresh machine next
# month gets the versions that passed here. uv resolves and installs; it is itself pinned and bootstrapped by pip.
UV_VERSION := 0.13.8
LOCK := requirements/lock.txt
BUILD_LOCK := requirements/build.txt
CHECKOV_LOCK := requirements/checkov.txt
EXTRAS := test,search,dask,mlflow
uv = $(1)/bin/uv pip install --quiet --python $(1)/bin/python
locked = --build-constraint $(BUILD_LOCK) --constraint $(LOCK)
# Bytecode caches written as on any developer's machine (some sandboxes and CI images set this variable: then
# every process the tests start compiles batchsweep's modules again, and __pycache__ never appears beside a script).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: setup runtime demo test test-image test-newest test-lowest lock lint bench clean chromium image-tools slurm

# Everything: the package, its extras and the test tooling (what `make test` and `make lint` need).
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(LOCK) $(BUILD_LOCK)
	$(MAKE) --no-print-directory $(VENV)/.uv
	$(call uv,$(VENV)) $(locked) -e '.[$(EXTRAS)]'
	touch $(VENV)/.runtime $@

# A venv with the pinned uv in it (pip is the one installer every Python has). Debian's own python3 makes venvs
# only with python3-venv (its ensurepip), which a fresh Debian lacks.
%/.uv:
	@$(PY) -c 'import ensurepip' 2>/dev/null || $(call apt_install,python3-venv)
	$(PY) -m venv $*
	$*/bin/pip install -q 'uv==$(UV_VERSION)'
	touch $@

# The package and its runtime dependencies only (what `make demo` needs).
runtime: $(VENV)/.runtime

$(VENV)/.runtime: pyproject.toml $(LOCK) $(BUILD_LOCK)
	$(MAKE) --no-print-directory $(VENV)/.uv
	$(call uv,$(VENV)) $(locked) -e .
	touch $@

# checkov pins an old boto3 and packaging<24: it lives in its own venv.
$(CHECKOV_VENV)/.installed: $(CHECKOV_LOCK)
	$(MAKE) --no-print-directory $(CHECKOV_VENV)/.uv
	$(call uv,$(CHECKOV_VENV)) --build-constraint $(BUILD_LOCK) --requirement $(CHECKOV_LOCK)
	touch $@

# Regenerates the locks from pyproject.toml's ranges (newest versions allowed today), for Python 3.11 on Linux.
# Commit the result once `make test` passes with it.
CHECKOV_VERSION := 3.3.30
lock: $(VENV)/.uv
	$(BIN)/uv pip compile --quiet --upgrade --python-version 3.11 pyproject.toml --extra test --extra search \
	  --extra dask --extra mlflow -o $(LOCK)
	$(BIN)/python -c 'import tomllib; print(*tomllib.load(open("pyproject.toml","rb"))["build-system"]["requires"], sep="\n")' \
	  | $(BIN)/uv pip compile --quiet --upgrade --python-version 3.11 - -o $(BUILD_LOCK)
	echo 'checkov==$(CHECKOV_VERSION)' | $(BIN)/uv pip compile --quiet --upgrade --python-version 3.11 - -o $(CHECKOV_LOCK)

# Debian packages, installed when missing. apt-get install waits for another apt's dpkg lock
# (DPkg::Lock::Timeout), but apt-get update never waits for the package lists' lock (apt 2.6 fails at once, the
# timeout option or not): an update of another session or of apt-daily on a fresh machine is waited out here.
apt_install = (n=0; until apt-get update -qq; do n=$$((n + 1)); [ $$n -lt 60 ] || exit 1; \
	echo "apt-get update failed (another apt running?): trying again in 10 s" >&2; sleep 10; done; \
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 $(1) >/dev/null)

# Headless Chromium for the report's browser test (Debian package).
chromium:
	@command -v chromium >/dev/null 2>&1 || $(call apt_install,chromium)

# podman, buildah and debootstrap for the task-image test (Debian packages; no Docker daemon needed).
image-tools:
	@command -v podman >/dev/null 2>&1 && command -v buildah >/dev/null 2>&1 && command -v debootstrap >/dev/null 2>&1 \
	  || $(call apt_install,podman buildah debootstrap)

# Slurm's daemons and commands for the Slurm engine's tests, which start a one-node cluster of their own (Debian
# packages, about two minutes to install once).
slurm:
	@command -v sbatch >/dev/null 2>&1 && test -x /usr/sbin/slurmctld && test -x /usr/sbin/slurmd && test -x /usr/sbin/munged \
	  || $(call apt_install,slurmctld slurmd slurm-client munge)

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
# LINT= skips the lint step (the lowest-versions leg: mypy's verdict there depends on the floors' type hints).
LINT ?= lint
test: setup $(CHECKOV_VENV)/.installed chromium slurm $(LINT)
	CHECKOV=$(abspath $(CHECKOV_VENV))/bin/checkov $(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup tests

# The same suite against other versions than the lock's, each in its own venv (the lock ignored): the newest
# releases pyproject.toml allows (finds drift the day it ships), and its floors (uv's lowest-direct resolution:
# every direct dependency at its floor, the rest at the newest that fits). `.ci/run` runs both.
test-newest: INSTALL_MODE := --upgrade
test-lowest: INSTALL_MODE := --resolution lowest-direct
test-lowest: LEG_LINT :=
test-newest: LEG_LINT := lint
test-newest test-lowest: $(CHECKOV_VENV)/.installed chromium slurm
	rm -rf .venv-$(@:test-%=%)
	$(MAKE) --no-print-directory .venv-$(@:test-%=%)/.uv
	$(call uv,.venv-$(@:test-%=%)) $(INSTALL_MODE) -e '.[$(EXTRAS)]'
	touch .venv-$(@:test-%=%)/.runtime .venv-$(@:test-%=%)/.installed
	$(MAKE) --no-print-directory test VENV=.venv-$(@:test-%=%) LINT=$(LEG_LINT)

# Builds the real task image (a debootstrap base cached in ~/.cache/batchsweep-tests) and plays an AWS sweep
# inside it: minutes, so not part of `make test`.
test-image: setup image-tools
	BATCHSWEEP_IMAGE_TESTS=1 $(BIN)/pytest -m image tests

bench: setup
	$(BIN)/python bench/local_throughput.py

clean:
	rm -rf .venv .venv-3.* $(CHECKOV_VENV) .batchsweep
