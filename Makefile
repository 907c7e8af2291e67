# StreetLoop developer tasks. Everything needed is installed by these targets
# (Python deps into .venv, PostgreSQL/PostGIS from OS packages); nothing is
# assumed to be installed by hand except a Python >= 3.12 (see scripts/python.sh).
#
#   make venv        .venv with `pip install -e '.[dev]'` (re-run when pyproject.toml changes)
#   make pg-install  PostgreSQL + PostGIS from apt if missing (skipped when DATABASE_URL is set)
#   make browser-install  Debian's chromium from apt if missing (the screens' browser tests drive it)
#   make test        lint, typecheck, then pytest against a project-local cluster (or $DATABASE_URL)
#   make lint        ruff check + ruff format --check (what CI enforces)
#   make format      ruff format + the safe ruff fixes, in place
#   make typecheck   mypy with the configuration in pyproject.toml
#   make demo        migrate, seed, run worker + gunicorn on 127.0.0.1:${PORT:-5000}
#   make db-start / db-stop / db-status / db-psql
#   make clean       remove caches;  make distclean  also .venv and the local cluster
#
#   Variables: PYTHON=/path/to/python3.12  PYTEST_ARGS='-k foo -x'  PORT (5000)
#              STREETLOOP_PGPORT (54329)  STREETLOOP_PGDATA (.pgdata)  DATABASE_URL

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.ONESHELL:
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

VENV        := .venv
VENV_PY     := $(VENV)/bin/python
STAMP       := $(VENV)/.installed
PG          := scripts/pg.sh
PYTEST_ARGS ?=

.PHONY: help venv pg-install browser-install test lint format typecheck demo db-start db-stop db-status db-psql clean distclean

help:
	@sed -n 's/^#   //p' $(firstword $(MAKEFILE_LIST))

# A phony target with its own freshness check (instead of a file rule) so a
# broken or too-old .venv is rebuilt even when the stamp looks up to date.
venv:
	@if [ -x "$(VENV_PY)" ] && ! "$(VENV_PY)" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
		echo "make: $(VENV) is broken or uses Python < 3.12; recreating it"
		rm -rf "$(VENV)"
	fi
	if [ ! -x "$(VENV_PY)" ]; then
		python=$$(scripts/python.sh)
		echo "make: creating $(VENV) with $$python ($$("$$python" -V 2>&1))"
		rm -rf "$(VENV)"
		if ! "$$python" -m venv "$(VENV)"; then
			echo "make: '$$python -m venv' failed (Debian/Ubuntu system Python: apt-get install python3-venv)" >&2
			exit 1
		fi
	fi
	if [ ! -f "$(STAMP)" ] || [ pyproject.toml -nt "$(STAMP)" ]; then
		echo "make: installing StreetLoop and dependencies into $(VENV)"
		"$(VENV_PY)" -m pip install --disable-pip-version-check -q --upgrade pip
		"$(VENV_PY)" -m pip install --disable-pip-version-check -q -e '.[dev]'
		touch "$(STAMP)"
	fi

# OS packages are installed before any server is started (an upgrade must not
# replace binaries under a running postmaster); pg.sh install is a no-op when
# the server binaries and PostGIS are already present.
pg-install:
	@if [ -n "$${DATABASE_URL:-}" ]; then
		echo "make: DATABASE_URL is set; skipping PostgreSQL installation"
	else
		$(PG) install
	fi

# The browser stage drives Debian's chromium; Playwright's own browser download is never
# used (nor reachable from a city's network). Skipped when the run leaves the stage out.
browser-install:
	@if [[ "$(PYTEST_ARGS)" == *"not browser"* ]]; then
		echo "make: the browser stage is deselected; skipping chromium"
	else
		scripts/browser.sh install
	fi

# Lint and types first: a finding fails the run before any database is started.
test: venv lint typecheck pg-install browser-install
	@if [ -n "$${DATABASE_URL:-}" ]; then
		echo "make: using DATABASE_URL from the environment"
		exec "$(VENV_PY)" -m pytest $(PYTEST_ARGS)
	fi
	started=0
	trap 'if [ $$started = 1 ]; then $(PG) stop || true; fi' EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	if ! $(PG) status >/dev/null; then
		$(PG) start
		started=1
	fi
	DATABASE_URL=$$($(PG) url postgres)
	export DATABASE_URL
	echo "make: DATABASE_URL=$$DATABASE_URL"
	rc=0
	"$(VENV_PY)" -m pytest $(PYTEST_ARGS) || rc=$$?
	exit $$rc

lint: venv
	@"$(VENV)/bin/ruff" check .
	"$(VENV)/bin/ruff" format --check .

format: venv
	@"$(VENV)/bin/ruff" format .
	"$(VENV)/bin/ruff" check --fix .

typecheck: venv
	@"$(VENV)/bin/mypy"

demo: venv pg-install
	@exec scripts/demo.sh

db-start: pg-install
	@$(PG) start

db-stop:
	@$(PG) stop

db-status:
	@$(PG) status || true

db-psql:
	@$(PG) psql

clean:
	@find . -path ./.venv -prune -o -path ./.pgdata -prune -o -path ./.git -prune -o \
		-type d \( -name __pycache__ -o -name .pytest_cache -o -name '*.egg-info' \) -print0 | xargs -0 rm -rf
	rm -rf build dist .pytest_cache

distclean: clean
	@$(PG) destroy
	rm -rf "$(VENV)"
