# Headrace: every target bootstraps what it needs and is safe to run again.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HEADRACE_HOME ?= $(CURDIR)/.headrace
# the project's virtualenv is the active one for `dg` (else it warns that they differ)
export VIRTUAL_ENV := $(CURDIR)/$(VENV)
# pytest workers of `make test` (pytest-xdist; 0: one process). Most of the suite waits on brokers,
# databases and subprocesses, so two workers share the two cores well; a module stays on one worker.
PYTEST_WORKERS ?= 2
# the port of the Dagster UI (`make dev DAGSTER_PORT=3001`)
DAGSTER_PORT ?= 3000

.PHONY: install services demo dev test test-long lint bench bench-peers peers-install chaos kafka-up kafka-down kafka-status postgres-up postgres-down validate clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

kafka-up: install
	$(BIN)/headrace kafka up
kafka-down: install
	$(BIN)/headrace kafka down
kafka-status: install
	$(BIN)/headrace kafka status

postgres-up:
	bash infra/postgres/setup.sh
postgres-down:
	bash infra/postgres/setup.sh stop

validate: install
	$(BIN)/headrace validate connectors

demo: install
	$(BIN)/headrace demo

dev: install kafka-up
	DAGSTER_HOME=$(HEADRACE_HOME)/dagster $(BIN)/headrace dagster-home && \
	DAGSTER_HOME=$(HEADRACE_HOME)/dagster $(BIN)/dg dev -w workspace.yaml -p $(DAGSTER_PORT)

lint: install
	$(BIN)/ruff check .

# The suite: bootstraps PostgreSQL (Debian packages), a browser, local Kafka and the schema registry,
# then runs every test but the long variants (marked `long`; each has a shorter sibling that runs here).
test: install services
	$(BIN)/ruff check .
	$(BIN)/headrace validate connectors
	DAGSTER_HOME=$(HEADRACE_HOME)/dagster-validate $(BIN)/headrace dagster-home && \
	DAGSTER_HOME=$(HEADRACE_HOME)/dagster-validate $(BIN)/dg check defs
	$(BIN)/pytest -q -ra -m "not long" -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# The long variants only (about 3 minutes): a broker killed with -9 mid-run, run-worker kills on SQLite
# storage, the peers' long cases.
test-long: install services
	$(BIN)/pytest -q -ra -m long -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

services: install
	bash infra/postgres/setup.sh
	bash infra/browser/setup.sh
	$(BIN)/headrace kafka up
	bash infra/schema-registry/setup.sh

# The chaos suite at full scale (issue 11; docs/chaos.md): every scenario enforced (--runxfail), 2M rows, 4 kills.
chaos: install
	bash infra/postgres/setup.sh
	$(BIN)/headrace kafka up
	HEADRACE_CHAOS=full $(BIN)/pytest -q -ra -s --runxfail --timeout 3600 tests/chaos $(PYTEST_ARGS)

bench: install
	bash infra/postgres/setup.sh
	$(BIN)/headrace kafka up
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# Headrace against its peers (issue 17; bench/peers/): Kafka Connect + Debezium (Maven Central, plugin path
# under $(HEADRACE_HOME)/peers/connect) and dlt + Quix Streams (their own virtualenv under
# $(HEADRACE_HOME)/peers/venv). Not part of `make test` (tests/peers/ runs a 10k-row smoke variant there).
peers-install: install
	$(BIN)/python -m bench.peers.install

bench-peers: install
	bash infra/postgres/setup.sh
	$(BIN)/headrace kafka up
	$(BIN)/python -m bench.peers.run $(PEERS_ARGS)

clean:
	-$(BIN)/headrace kafka down
	-bash infra/schema-registry/setup.sh stop
	-bash infra/postgres/setup.sh stop
	rm -rf $(HEADRACE_HOME)
