# Two commands set everything up on a fresh machine: `make repro` and `make test`.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-requirements
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: repro test venv clean-venv

# (Re)create the environment when it is missing or requirements.txt changed.
$(STAMP): requirements.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -r requirements.txt
	touch $@

venv: $(STAMP)

repro: $(STAMP)
	dvc repro

test: $(STAMP)
	python -m pytest

clean-venv:
	rm -rf $(VENV)
