# Routing ML — the two commands are `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
DEMO_ITEMS ?= 5000
DEMO_PROFILE ?= seal
HOST ?= 127.0.0.1
PORT ?= 8000
# `make run` uses production settings (DEBUG off; SECRET_KEY generated once into var/secret_key;
# ALLOWED_HOSTS from the environment) over plain HTTP; HTTPS=true behind a TLS proxy, DEBUG=true for development.
HTTPS ?= false

.PHONY: run test setup deps dev-deps migrate demo bench bench-training bench-predictions bench-quality lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.deps: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev-deps: requirements-dev.txt requirements.txt $(VENV)/.deps
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

# The engine's compiled leaf scan (Cython, built in place with the machine's C compiler). Without it the
# neighbour search falls back to numpy: the same answers, a batch's search ~1.7x as long. A machine
# without a compiler still runs (a warning here and in /health); the test suite insists on the build.
LEAFSCAN := training/engine/_leafscan$(shell $(PYTHON) -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")
$(LEAFSCAN): training/engine/_leafscan.pyx $(VENV)/.deps
	@# Unlinked first: a running worker keeps the old file mapped, and overwriting it in place would crash it.
	rm -f $@
	$(BIN)/cythonize -i -q $< || echo "WARNING: the compiled leaf scan did not build (is gcc installed?): neighbour search falls back to numpy, same answers, slower" >&2
	rm -rf build

deps: $(VENV)/.deps $(LEAFSCAN)
dev-deps: $(VENV)/.dev-deps $(LEAFSCAN)

## setup: everything `run` needs before the servers start (idempotent)
setup: deps
	$(PY) manage.py migrate --no-input
	$(PY) manage.py collectstatic --no-input -v 0
	$(PY) manage.py seed_demo_erp --items $(DEMO_ITEMS) --profile $(DEMO_PROFILE) --if-empty
	$(PY) manage.py ensure_admin
	$(PY) manage.py train --sync --activate --if-no-model
	$(PY) manage.py run_quality_cycle --sync --if-none

## run: set up, then serve the web app and the task cluster in the foreground (Ctrl-C stops both)
run: setup
	HTTPS=$(HTTPS) HOST=$(HOST) PORT=$(PORT) PY=$(PY) BIN=$(BIN) bash scripts/serve.sh

## test: promtool rule tests, the whole suite on SQLite, then the `postgres` tests again on PostgreSQL when TEST_POSTGRES_URL is set,
## and the `scaleout` suite (PostgreSQL + Redis + two clusters + gunicorn) when TEST_REDIS_URL is set too
test: $(VENV)/.dev-deps $(LEAFSCAN)
	@if command -v promtool >/dev/null 2>&1; then \
		echo "== Prometheus alert rules: promtool test rules deploy/prometheus/alerts.test.yml"; \
		cd deploy/prometheus && promtool test rules alerts.test.yml && promtool check config prometheus.yml >/dev/null; \
	else \
		echo "promtool is not installed (Debian package prometheus): the alert-rule tests were skipped; .ci/run installs it."; \
	fi
	$(BIN)/pytest
	@if [ -n "$$TEST_POSTGRES_URL" ]; then \
		echo "== the same database-facing tests on PostgreSQL ($$TEST_POSTGRES_URL)"; \
		DATABASE_URL="$$TEST_POSTGRES_URL" $(BIN)/pytest -m postgres || exit 1; \
		if [ -n "$$TEST_REDIS_URL" ]; then \
			echo "== scale-out: PostgreSQL + Redis broker, a default and a training cluster, gunicorn ($$TEST_REDIS_URL)"; \
			DATABASE_URL="$$TEST_POSTGRES_URL" $(BIN)/pytest -m scaleout || exit 1; \
		else \
			echo "TEST_REDIS_URL is not set: the scale-out suite (pytest -m scaleout) was skipped; .ci/run sets it up."; \
		fi; \
	else \
		echo "TEST_POSTGRES_URL is not set: the PostgreSQL pass (pytest -m postgres) was skipped; .ci/run sets it up."; \
	fi

lint: $(VENV)/.dev-deps
	$(BIN)/ruff check .

## bench: the speed figures quoted in the README (full scale: BENCH_ITEMS=325000)
BENCH_ITEMS ?= 325000
BENCH_DIR ?= var/bench
# Items per demo factory profile in bench_profiles (model vs plain kNN, generated in memory).
BENCH_PROFILE_ITEMS ?= 20000
# Production settings (DEBUG off: no SQL logging), plain HTTP on loopback.
BENCH_ENV = DATABASE_URL=sqlite:///$(abspath $(BENCH_DIR))/bench.sqlite3 MODEL_ROOT=$(abspath $(BENCH_DIR))/models \
	DEBUG=false SECRET_KEY=bench-only-this-key-is-not-secret-0123456789 SECURE_SSL_REDIRECT=false
bench: deps
	mkdir -p $(BENCH_DIR)
	$(BENCH_ENV) $(PY) manage.py migrate --no-input -v 0
	$(BENCH_ENV) $(PY) manage.py seed_demo_erp --items $(BENCH_ITEMS) --seed 0 --if-empty
	$(BENCH_ENV) $(PY) manage.py bench_training --activate
	$(BENCH_ENV) $(PY) manage.py bench_profiles --items $(BENCH_PROFILE_ITEMS)
	# Predictions twice: known items read from the neighbour table (as served once the cluster has built it),
	# then searched (NEIGHBOUR_TABLE=false: how items described by attributes, and a version's first minute, are served).
	$(BENCH_ENV) NEIGHBOUR_TABLE=true $(PY) manage.py neighbour_table
	$(BENCH_ENV) NEIGHBOUR_TABLE=true $(PY) manage.py bench_predictions
	$(BENCH_ENV) NEIGHBOUR_TABLE=false $(PY) manage.py bench_predictions --no-peer
	$(BENCH_ENV) $(PY) manage.py bench_quality
	rm -f $(BENCH_DIR)/import.sqlite3*
	$(BENCH_ENV) DATABASE_URL=sqlite:///$(abspath $(BENCH_DIR))/import.sqlite3 $(PY) manage.py migrate --no-input -v 0
	$(BENCH_ENV) DATABASE_URL=sqlite:///$(abspath $(BENCH_DIR))/import.sqlite3 $(PY) manage.py bench_import

clean:
	rm -rf var/db.sqlite3* var/models var/quality_reports var/staticfiles
