# The two commands of the README: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint client cli bench bench-large-file fuzz migrate superuser server-key clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

migrate: $(STAMP)
	$(PY) manage.py migrate --noinput

run: migrate  ## start the server on ws://127.0.0.1:8000/ws/chat/ (SQLite, in-memory layer)
	$(PY) manage.py server_key
	$(PY) manage.py runserver $(HOST):$(PORT)

superuser: migrate  ## create an admin account for /admin/
	$(PY) manage.py createsuperuser

server-key: $(STAMP)
	$(PY) manage.py server_key

client: $(STAMP)  ## the desktop client
	$(PY) -m tk_client

cli: $(STAMP)  ## the terminal client: make cli ARGS="--server ws://127.0.0.1:8000 --user alice"
	$(PY) -m tk_client.cli $(ARGS)

test: $(STAMP)  ## the whole suite
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(STAMP)  ## benchmarks with their baselines; writes docs/benchmarks.md
	$(PY) -m bench

bench-large-file: $(STAMP)  ## two desktop clients exchange a SIZE file (default 4GiB) under Xvfb
	$(PY) -m bench.large_file --size $(or $(SIZE),4GiB)

fuzz: $(STAMP)  ## the long fuzz run
	CHAT_FUZZ_EXAMPLES=200000 $(PY) -m pytest tests/fuzz -p no:cacheprovider

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
