# Two commands set everything up on a fresh machine: `make repro` and `make test`.
PYTHON ?= python3
VENV := .venv
# requirements-gpu.txt on CUDA machines: make repro REQUIREMENTS=requirements-gpu.txt
REQUIREMENTS ?= requirements.txt
STAMP := $(VENV)/.installed-$(REQUIREMENTS)
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: repro test claims venv clean-venv chromium turbojpeg

# (Re)create the environment when it is missing or its requirements changed. The project itself
# is installed editable: the library, the stages and the CLIs (inception-predict, ...).
$(STAMP): $(REQUIREMENTS) pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -r $(REQUIREMENTS)
	$(VENV)/bin/python -m pip install --quiet --no-deps --editable .
	rm -f $(VENV)/.installed-*
	touch $@

venv: $(STAMP)

repro: $(STAMP) turbojpeg
	dvc repro

# The study's and the paper's claims: claims/grid.yaml's runs as DVC experiments (hours on a
# CPU; only the runs claims/runs/ lacks), then claims/report.md and claims/curves.png.
claims: $(STAMP) turbojpeg
	inception-claims run

# Tests in TEST_WORKERS processes (pytest-xdist): much of an end-to-end test runs on one thread
# (imports, tracing, DVC); a module marked xdist_group runs in one process, so its module
# fixtures are built once. `make test TEST_WORKERS=1` runs them one after another.
TEST_WORKERS ?= 2
test: $(STAMP) chromium turbojpeg
	python -m pytest -n $(TEST_WORKERS) --dist loadgroup

# Headless Chromium from Debian's packages, for tests/test_plots_offline.py (apt needs root).
chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium \
		>/dev/null; }

# libjpeg-turbo's TurboJPEG library from Debian's packages, which PyTurboJPEG loads: crop and
# predict decode a JPEG box by box with it.
turbojpeg:
	@ldconfig -p | grep -q libturbojpeg.so.0 || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		libturbojpeg0 >/dev/null; }

clean-venv:
	rm -rf $(VENV)
