# Millrace — the two commands: `make up` (whole pipeline) and `make test` (whole suite).
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RUN := .run

.PHONY: help install chromium checktools screenshots up down status test test-unit lint fmt demo bench chaos soak clean lock

help:
	@echo "make up       start infrastructure + every service (returns when all answer /ready)"
	@echo "make down     stop what make up started"
	@echo "make test     run the whole test suite against real services (starts them if needed)"
	@echo "make lint     ruff + mypy;  make fmt  format the code"
	@echo "make demo     simulated gateways sending data, readings flowing end to end"
	@echo "make bench    benchmark table"
	@echo "make screenshots  README pictures of the console (docs/images), from a real run"
	@echo "make chaos    zero-loss run with faults injected (CHAOS_ARGS=--readings N)"
	@echo "make soak     10-minute concurrent soak of the HTTP doors (SOAK_ARGS=--duration N)"

# The venv is rebuilt whenever the lock file changes.
$(VENV)/.installed: requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --require-hashes -r requirements.lock
	@touch $@

# Browser libraries served by the services themselves (Swagger UI, the console's chart), pinned by
# web/package-lock.json; install scripts are not needed (and one only reports telemetry).
web/node_modules/.installed: web/package-lock.json
	cd web && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	@touch $@

# The browser tests drive Debian's chromium (browser downloads are impossible on a closed network).
chromium:
	@command -v chromium >/dev/null 2>&1 || apt-get install -y --no-install-recommends chromium

install: $(VENV)/.installed web/node_modules/.installed chromium

# The offline checks of the deployment files run the real tools: promtool (alert rules and their unit
# tests) and nginx -t (the TLS proxy). Debian's packages; their daemons are not started here.
checktools:
	@command -v promtool >/dev/null 2>&1 && command -v nginx >/dev/null 2>&1 || \
		apt-get install -y --no-install-recommends prometheus nginx-light

$(RUN)/env:
	@infra/local/env.sh

up: install $(RUN)/env
	@infra/local/deps.sh up
	@infra/local/services.sh up
	@set -a; . $(RUN)/env; set +a; $(PY) -m services.auth dev-users
	@set -a; . $(RUN)/env; set +a; echo "Console: http://127.0.0.1:$${QUERY_API_PORT:-8002}/console/ (sign in with a user of $(RUN)/dev-users.txt)"

down:
	@infra/local/services.sh down
	@infra/local/deps.sh down

status:
	@infra/local/deps.sh status
	@infra/local/services.sh status

test: up checktools
	set -a; . $(RUN)/env; set +a; $(PY) -m pytest $(PYTEST_ARGS)

test-unit: install
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy shared services tools
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml

fmt: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

demo: up
	set -a; . $(RUN)/env; set +a; $(PY) -m tools.demo

bench: up
	set -a; . $(RUN)/env; set +a; $(PY) -m tools.bench $(BENCH_ARGS)

# The README's pictures of the console (docs/images/console-*.png), from a real run.
screenshots: up
	set -a; . $(RUN)/env; set +a; $(PY) -m tools.screenshots

chaos: up
	set -a; . $(RUN)/env; set +a; $(PY) -m tools.chaos $(CHAOS_ARGS)

soak: up
	set -a; . $(RUN)/env; set +a; $(PY) -m tools.soak --half-max --token-ttl 60 $(SOAK_ARGS)

clean: down
	rm -rf $(RUN)

# Regenerate the hashed locks after changing pyproject.toml (needs uv: pip install uv).
lock:
	uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 -o requirements.lock
	uv pip compile pyproject.toml --generate-hashes --python-version 3.11 -o requirements-runtime.lock
