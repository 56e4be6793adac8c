#!/usr/bin/env bash
# Instructions per command under callgrind (repeatable, unlike wall time):
#   bench/profile.sh [N] [command args...]
# Starts redis-server with the module under valgrind on a free port, builds
# the 4-level benchmark tree, runs N commands and prints Ir per command.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-5000}; shift || true
CMD=("$@")
[ ${#CMD[@]} -gt 0 ] || CMD=(QUOTA.RESERVE t PATH search/qr/canary TTL 600000 BRIEF COST credits 1 requests 1)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
OUT=$(mktemp -d)
valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.out" --toggle-collect='*RedisModuleCommandDispatcher*' \
  redis-server --port "$PORT" --save '' --loadmodule "$PWD/target/release/libquota.so" TEST_CLOCK yes MAX_HOLDS 10000000 \
  > "$OUT/log" 2>&1 &
for _ in $(seq 100); do redis-cli -p "$PORT" PING >/dev/null 2>&1 && break; sleep 0.1; done
for p in / search search/qr search/qr/canary; do
  redis-cli -p "$PORT" QUOTA.SET t "$p" credits METRIC credits LIMIT 1000000000000 WINDOW month >/dev/null
  redis-cli -p "$PORT" QUOTA.SET t "$p" requests METRIC requests LIMIT 1000000000000 MODE block >/dev/null
done
redis-benchmark -p "$PORT" -c 4 -n "$N" -P 16 "${CMD[@]}" >/dev/null 2>&1
redis-cli -p "$PORT" SHUTDOWN NOSAVE >/dev/null 2>&1 || true
wait
TOTAL=$(callgrind_annotate "$OUT/cg.out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1}')
echo "$(( TOTAL / (N + 8) )) instructions per command (${CMD[*]})"
echo "profile: $OUT/cg.out"
