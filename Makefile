# The two commands of the README: `make run` and `make test`. Everything else is a helper;
# `make check` is the quick one to run while working.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Two installs: what running needs (requirements.txt), then the tools (requirements-dev.txt).
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test check lint types client cli bench bench-large-file fuzz migrate superuser \
	server-key clean

$(RUN_STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(RUN_STAMP)

$(DEV_STAMP): requirements-dev.txt $(RUN_STAMP)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(DEV_STAMP)

# Makes the data dir (var/) and keeps the generated secret key in it: importing the
# settings creates nothing (chatsite/startup.py).
migrate: $(RUN_STAMP)
	$(PY) manage.py migrate --noinput

run: migrate  ## start the server on ws://127.0.0.1:8000/ws/chat/ (SQLite, in-memory layer)
	$(PY) manage.py server_key
	$(PY) manage.py runserver $(HOST):$(PORT)

superuser: migrate  ## create an admin account for /admin/
	$(PY) manage.py createsuperuser

server-key: migrate
	$(PY) manage.py server_key

client: $(RUN_STAMP)  ## the desktop client
	$(PY) -m tk_client

cli: $(RUN_STAMP)  ## the terminal client: make cli ARGS="--server ws://127.0.0.1:8000 --user alice"
	$(PY) -m tk_client.cli $(ARGS)

test: $(DEV_STAMP)  ## the whole suite (what CI runs)
	$(PY) -m pytest

check: lint $(DEV_STAMP)  ## while working: lint, types, and the tests not marked slow
	$(PY) -m pytest -m "not slow"

lint: $(DEV_STAMP)  ## ruff, then mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(MAKE) --no-print-directory types

types: $(DEV_STAMP)  ## mypy, as configured in pyproject.toml ([tool.mypy])
	$(VENV)/bin/mypy

bench: $(DEV_STAMP)  ## benchmarks with their baselines; writes docs/benchmarks.md
	$(PY) -m bench

bench-large-file: $(DEV_STAMP)  ## two desktop clients exchange a SIZE file (default 4GiB) under Xvfb
	$(PY) -m bench.large_file --size $(or $(SIZE),4GiB)

fuzz: $(DEV_STAMP)  ## the long fuzz run
	CHAT_FUZZ_EXAMPLES=200000 $(PY) -m pytest tests/fuzz -p no:cacheprovider

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis
