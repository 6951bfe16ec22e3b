# Sotto: one command to run it, one to test it. Everything missing is installed on the way.
SHELL := /bin/bash
.DEFAULT_GOAL := help
UV ?= $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
PY_PATHS := contracts/src libs/kit/src services/conversations/src services/portal-gateway/src \
            services/notifier/src services/audit/src tools/cli/src tests bench

.PHONY: help bootstrap infra infra-down run stop status logs lint test test-fast soak bench docs

help:
	@echo "make run     start RabbitMQ, FerretDB, the SMTP catcher and the four services"
	@echo "make stop    stop the services (make infra-down stops the servers too)"
	@echo "make test    lint, types, import rules and the whole test suite"
	@echo "make soak    long fault, load and fuzz variants"
	@echo "make bench   performance scenarios with same-run baselines"
	@echo "make docs    regenerate OpenAPI and AsyncAPI documents into docs/"

bootstrap:
	@command -v uv >/dev/null 2>&1 || [ -x "$(UV)" ] || python3 -m pip install --quiet uv
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
