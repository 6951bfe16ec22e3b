# Sotto: one command to run it, one to test it. Everything missing is installed on the way.
SHELL := /bin/bash
.DEFAULT_GOAL := help
# Looked up where it is used, so a uv that `make uv` has just installed is found.
UV ?= $(shell command -v uv 2>/dev/null || { [ -x $(HOME)/.local/bin/uv ] && echo $(HOME)/.local/bin/uv; } || echo python3 -m uv)
PY_PATHS := contracts/src libs/kit/src services/conversations/src services/portal-gateway/src \
            services/notifier/src services/audit/src tools/cli/src tests bench

.PHONY: help uv bootstrap infra infra-down run stop status logs lint test test-fast soak bench docs

help:
	@echo "make run     start RabbitMQ, FerretDB, the SMTP catcher and the four services"
	@echo "make stop    stop the services (make infra-down stops the servers too)"
	@echo "make test    lint, types, import rules and the whole test suite"
	@echo "make soak    long fault, load and fuzz variants"
	@echo "make bench   performance scenarios with same-run baselines"
	@echo "make docs    regenerate OpenAPI and AsyncAPI documents into docs/"

# pip first; a Debian system Python refuses it (PEP 668) or has no pip: then a user install, else
# uv's own installer (both put uv in ~/.local/bin).
uv:
	@command -v uv >/dev/null 2>&1 || [ -x "$(HOME)/.local/bin/uv" ] \
		|| python3 -m pip install --quiet uv 2>/dev/null \
		|| python3 -m pip install --quiet --user --break-system-packages uv 2>/dev/null \
		|| curl -LsSf https://astral.sh/uv/install.sh | sh

bootstrap: uv
	@$(UV) sync --all-packages --locked --quiet

infra: bootstrap
	@scripts/infra up

infra-down:
	@scripts/services down || true
	@scripts/infra down

run: infra
	@scripts/services up

stop:
	@scripts/services down

status:
	@scripts/infra status; scripts/services status

logs:
	@scripts/services logs

lint: bootstrap
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy $(PY_PATHS)
	.venv/bin/lint-imports

test: lint infra
	.venv/bin/pytest -m "not soak" -q

test-fast: bootstrap infra
	.venv/bin/pytest -m "not soak" -q -x --ff

soak: bootstrap infra
	.venv/bin/pytest -m soak -q

bench: bootstrap infra
	.venv/bin/python -m bench

docs: bootstrap
	.venv/bin/python -m scripts.gen_docs
