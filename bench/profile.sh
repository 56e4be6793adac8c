#!/usr/bin/env bash
# Instructions per command under callgrind (repeatable, unlike wall time):
#   bench/profile.sh [N] [command args...]
# Starts redis-server with quota and the ceiling module (bench/ceiling)
# under valgrind on a free port, builds the 4-level benchmark tree in key t,
# then, for each command, zeroes the counters, runs it N times
# (redis-benchmark -c 4 -P 16) and dumps a profile. Without a command it
# runs the standard set: INCRBY, the two ceiling commands and quota's
# RESERVE BRIEF, CHARGE CHECK BRIEF and full RESERVE.
# Prints per command:
#   module  instructions inside the module's command handler
#           (RedisModuleCommandDispatcher, inclusive: Redis's reply and
#           replication calls counted, network and parsing not)
#   server  instructions in the whole server (network, parsing, dispatch,
#           the handler, writing the replies; what throughput follows)
# and the profile file, for `callgrind_annotate --inclusive=yes FILE`.
# PLAN=1 builds the same tree from a plan (QUOTA.PLAN SET bench, one pattern
# per level with the same 8 policies, and QUOTA.ASSIGN t bench), so every
# command runs on a tree that follows a plan; it stops with a message on a
# build without QUOTA.PLAN. QUOTA_MODULE and QUOTA_CEILING profile another build.
# GRANTS=N sets the leaf's credits policy (search/qr/canary) to LIMIT 0 and
# gives it N grants (QUOTA.GRANT … ID gI PRIORITY I%101, every other one
# FOR 400d) after the tree is built, so reservations meet N grants and every
# CHARGE and COMMIT draws from one; compare with a run without GRANTS (the
# plain tree, where they pass on the policy's own limit and draw nothing).
# ACCESS=1 adds make bench's access rules after the tree is built (QUOTA.DENY
# of 5 entries at /, QUOTA.ALLOW of 20 at search, an INFLIGHT requests policy
# on search/qr/canary) and SERVICE chat MODEL m7 (which passes them) to the
# standard set's quota commands; compare with a run without ACCESS.
# The standard set ends with QUOTA.COMMIT: N holds are placed first (RESERVE
# … ID cI, not counted), then committed, each once (redis-py pipelines).
# QUOTA_ARGS adds module arguments (QUOTA_ARGS='USAGE_HOURS 0 USAGE_DAYS 0'
# profiles with usage over time off; compare with a run with the defaults).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-5000}; shift || true
PATH_ARGS=(PATH search/qr/canary)
COST=(COST credits 1 requests 1)
REQ=()
[ -z "${ACCESS:-}" ] || REQ=(SERVICE chat MODEL m7)
if [ $# -gt 0 ]; then
  COMMANDS=("$*")
else
  COMMANDS=(
    "INCRBY counter 1"
    "CEILING.BRIEF t ${PATH_ARGS[*]} TTL 600000 BRIEF ${COST[*]}"
    "CEILING.FULL t ${PATH_ARGS[*]} TTL 600000 ${COST[*]}"
    "QUOTA.RESERVE t ${PATH_ARGS[*]} TTL 600000 BRIEF ${REQ[*]} ${COST[*]}"
    "QUOTA.CHARGE t ${PATH_ARGS[*]} CHECK BRIEF ${REQ[*]} ${COST[*]}"
    "QUOTA.RESERVE t ${PATH_ARGS[*]} TTL 600000 ${REQ[*]} ${COST[*]}"
    "QUOTA.COMMIT t cI"
  )
fi
CEILING=${QUOTA_CEILING:-$PWD/target/release/libquota_ceiling.so}
MODULE=${QUOTA_MODULE:-$PWD/target/release/libquota.so}
[ -f "$CEILING" ] || cargo build --release --locked -p quota-ceiling >&2
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
OUT=$(mktemp -d)
valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.out" \
  redis-server --port "$PORT" --save '' --loadmodule "$MODULE" TEST_CLOCK yes MAX_HOLDS 10000000 ${QUOTA_ARGS:-} \
  --loadmodule "$CEILING" > "$OUT/log" 2>&1 &
SERVER=$!
for _ in $(seq 100); do redis-cli -p "$PORT" PING >/dev/null 2>&1 && break; sleep 0.1; done
if [ -n "${PLAN:-}" ]; then
  POLICIES='{"credits": {"metric": "credits", "limit": "1000000000000", "window": "month"}, "requests": {"metric": "requests", "limit": "1000000000000", "mode": "block"}}'
  JSON="{\"paths\": {\"/\": $POLICIES, \"search\": $POLICIES, \"search/qr\": $POLICIES, \"search/qr/canary\": $POLICIES}}"
  reply=$(redis-cli -p "$PORT" QUOTA.PLAN SET bench "$JSON" 2>&1)
  if [ "$reply" != "1" ]; then
    echo "PLAN=1: this build cannot set the plan ($reply)" >&2
    redis-cli -p "$PORT" SHUTDOWN NOSAVE >/dev/null 2>&1 || true
    wait
    exit 2
  fi
  redis-cli -p "$PORT" QUOTA.ASSIGN t bench >/dev/null
else
  for p in / search search/qr search/qr/canary; do
    redis-cli -p "$PORT" QUOTA.SET t "$p" credits METRIC credits LIMIT 1000000000000 WINDOW month >/dev/null
    redis-cli -p "$PORT" QUOTA.SET t "$p" requests METRIC requests LIMIT 1000000000000 MODE block >/dev/null
  done
fi
if [ -n "${GRANTS:-}" ]; then
  redis-cli -p "$PORT" QUOTA.SET t search/qr/canary credits METRIC credits LIMIT 0 WINDOW month >/dev/null
  python3 - "$PORT" "$GRANTS" <<'PY'
import sys
import redis
r = redis.Redis(port=int(sys.argv[1]))
n = int(sys.argv[2])
for start in range(0, n, 1000):
    p = r.pipeline(transaction=False)
    for i in range(start, min(start + 1000, n)):
        p.execute_command("QUOTA.GRANT", "t", "search/qr/canary", "credits", "1000000000", "ID", f"g{i}",
                          "PRIORITY", str(i % 101), *(["FOR", "400d"] if i % 2 else []))
    p.execute()
PY
fi
if [ -n "${ACCESS:-}" ]; then
  python3 - "$PORT" <<'PY'
import sys
import redis
sys.path.insert(0, "bench")
import bench
r = redis.Redis(port=int(sys.argv[1]))
r.execute_command("QUOTA.SET", "t", bench.PATH, "inflight", "METRIC", "requests", "LIMIT", "1000000000000", "INFLIGHT")
for command, level, entries in (("QUOTA.DENY", "/", bench.ACCESS_DENY), ("QUOTA.ALLOW", "search", bench.ACCESS_ALLOW)):
    for service, model in entries:
        r.execute_command(command, "t", level, "SERVICE", service, *(["MODEL", model] if model else []))
PY
fi
i=0
for command in "${COMMANDS[@]}"; do
  i=$((i + 1))
  if [ "$command" = "QUOTA.COMMIT t cI" ]; then
    # Each hold committed once: place N of them first (not counted).
    python3 - "$PORT" "$N" "reserve" "${PATH_ARGS[@]}" "${REQ[@]}" "${COST[@]}" <<'PY'
import sys
import redis
port, n, verb, rest = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4:]
r = redis.Redis(port=port)
for start in range(0, n, 1000):
    p = r.pipeline(transaction=False)
    for i in range(start, min(start + 1000, n)):
        p.execute_command("QUOTA.RESERVE", "t", *rest[:2], "TTL", "600000", "ID", f"c{i}", "BRIEF", *rest[2:])
    p.execute()
PY
    callgrind_control --zero "$SERVER" >/dev/null 2>&1
    python3 - "$PORT" "$N" <<'PY'
import sys
import redis
port, n = int(sys.argv[1]), int(sys.argv[2])
r = redis.Redis(port=port)
for start in range(0, n, 16):
    p = r.pipeline(transaction=False)
    for i in range(start, min(start + 16, n)):
        p.execute_command("QUOTA.COMMIT", "t", f"c{i}")
    p.execute()
PY
  else
    callgrind_control --zero "$SERVER" >/dev/null 2>&1
    # shellcheck disable=SC2086 # the command is words
    redis-benchmark -p "$PORT" -c 4 -n "$N" -P 16 $command >/dev/null 2>&1
  fi
  callgrind_control --dump="command $i" "$SERVER" >/dev/null 2>&1
done
redis-cli -p "$PORT" SHUTDOWN NOSAVE >/dev/null 2>&1 || true
wait
printf '%8s %8s  %s\n' module server command
i=0
for command in "${COMMANDS[@]}"; do
  i=$((i + 1))
  file="$OUT/cg.out.$i"
  total=$(callgrind_annotate "$file" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1}')
  module=$(callgrind_annotate --inclusive=yes "$file" 2>/dev/null \
    | awk '/:RedisModuleCommandDispatcher / && !n++ {gsub(",","",$1); print $1}')
  printf '%8d %8d  %s\n' $(( ${module:-0} / N )) $(( total / N )) "$command"
  echo "          profile: $file"
done
