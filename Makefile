# Two commands set everything up on a fresh machine: `make repro` and `make test`.
PYTHON ?= python3
VENV := .venv
# requirements-gpu.txt on CUDA machines: make repro REQUIREMENTS=requirements-gpu.txt
REQUIREMENTS ?= requirements.txt
STAMP := $(VENV)/.installed-$(REQUIREMENTS)
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: repro test venv clean-venv

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

test: $(STAMP)
	python -m pytest

clean-venv:
	rm -rf $(VENV)
