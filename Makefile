# Two commands set everything up on a fresh machine: `make repro` and `make test`.
PYTHON ?= python3
VENV := .venv
# requirements-gpu.txt on CUDA machines: make repro REQUIREMENTS=requirements-gpu.txt
REQUIREMENTS ?= requirements.txt
STAMP := $(VENV)/.installed-$(REQUIREMENTS)
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: repro test venv clean-venv chromium

# (Re)create the environment when it is missing or its requirements file changed.
$(STAMP): $(REQUIREMENTS)
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -r $(REQUIREMENTS)
	rm -f $(VENV)/.installed-*
	touch $@

venv: $(STAMP)

repro: $(STAMP)
	dvc repro

test: $(STAMP) chromium
	python -m pytest

# Headless Chromium from Debian's packages, for tests/test_plots_offline.py (apt needs root).
chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium \
		>/dev/null; }

clean-venv:
	rm -rf $(VENV)
