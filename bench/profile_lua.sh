#!/usr/bin/env bash
# Instructions per command of the Lua library under callgrind (repeatable, unlike wall time):
#   bench/profile_lua.sh [N] [FCALL args...]
# Starts redis-server under valgrind on a free port (no module), loads lua/quota.lua with
# quota-load --file, builds the 4-level benchmark tree with quota_set, runs N commands
# (redis-benchmark -c 4 -P 16) and prints Ir per command, counting only what the command
# dispatcher runs (call()): the server's event loop and networking are left out.
# The default command is quota_reserve ... BRIEF; NAIVE=1 runs bench/bench.py's naive
# 4-level script instead, for scale. GRANTS=N sets the leaf's credits policy to LIMIT 0 and
# gives it N grants (as bench/profile.sh does), so quota_reserve meets N grants and
# quota_charge draws from one (e.g. GRANTS=5000 bench/profile_lua.sh 2000 FCALL quota_charge 1 t
# PATH search/qr/canary CHECK BRIEF COST credits 1 requests 1; without GRANTS for the plain tree).
# COMMIT=1 measures quota_commit ... COST credits 1 requests 1 of N holds placed first.
# ACCESS=1 adds make bench's access rules (5 deny entries at /, 20 allow at search, an INFLIGHT
# requests policy on search/qr/canary) and SERVICE chat MODEL m7 to the default command.
# LEDGER=N loads the library with --set ledger_len=N (every write checks the ledger key and
# appends its entries).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000}; shift || true
CMD=("$@")
REQ=()
[ -z "${ACCESS:-}" ] || REQ=(SERVICE chat MODEL m7)
[ ${#CMD[@]} -gt 0 ] || CMD=(FCALL quota_reserve 1 t PATH search/qr/canary TTL 600000 BRIEF "${REQ[@]}" COST credits 1 requests 1)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
OUT=$(mktemp -d)
valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.out" ${TOGGLE---toggle-collect=call} \
  "${SERVER:-redis-server}" --port "$PORT" --save '' --appendonly no > "$OUT/log" 2>&1 &
VG=$!
for _ in $(seq 300); do redis-cli -p "$PORT" PING >/dev/null 2>&1 && break; sleep 0.1; done
"${QUOTA_LOADER:-target/release/quota-load}" --file "${LIB:-lua/quota.lua}" --set max_holds=10000000 ${LEDGER:+--set ledger_len=$LEDGER} "redis://127.0.0.1:$PORT" >/dev/null
for p in / search search/qr search/qr/canary; do
  redis-cli -p "$PORT" FCALL quota_set 1 t "$p" credits METRIC credits LIMIT 1000000000000 WINDOW month >/dev/null
  redis-cli -p "$PORT" FCALL quota_set 1 t "$p" requests METRIC requests LIMIT 1000000000000 MODE block >/dev/null
done
if [ -n "${GRANTS:-}" ]; then
  redis-cli -p "$PORT" FCALL quota_set 1 t search/qr/canary credits METRIC credits LIMIT 0 WINDOW month >/dev/null
  python3 - "$PORT" "$GRANTS" <<'PY'
import sys
import redis
r = redis.Redis(port=int(sys.argv[1]))
n = int(sys.argv[2])
for start in range(0, n, 1000):
    p = r.pipeline(transaction=False)
    for i in range(start, min(start + 1000, n)):
        p.execute_command("FCALL", "quota_grant", 1, "t", "search/qr/canary", "credits", "1000000000", "ID", f"g{i}",
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
r.execute_command("FCALL", "quota_set", 1, "t", bench.PATH, "inflight", "METRIC", "requests", "LIMIT", "1000000000000",
                  "INFLIGHT")
for fn, level, entries in (("quota_deny", "/", bench.ACCESS_DENY), ("quota_allow", "search", bench.ACCESS_ALLOW)):
    for service, model in entries:
        r.execute_command("FCALL", fn, 1, "t", level, "SERVICE", service, *(["MODEL", model] if model else []))
PY
fi
if [ "${NAIVE:-}" = 1 ]; then
  SHA=$(redis-cli -p "$PORT" SCRIPT LOAD "$(python3 -c 'import sys; sys.path.insert(0, "bench"); import bench; print(bench.NAIVE_LUA)')")
  for l in / search search/qr search/qr/canary; do redis-cli -p "$PORT" HSET bench:limits "bench:used:$l" 1000000000000 >/dev/null; done
  CMD=(EVALSHA "$SHA" 4 bench:used:/ bench:used:search bench:used:search/qr bench:used:search/qr/canary 1 __rand_int__)
fi
if [ "${COMMIT:-}" = 1 ]; then
  # COMMIT=1: N reservations placed first (ids h0, h1, ...), then each committed once, pipelined by
  # redis-py (only the server's command dispatch is counted, so the client does not matter).
  CMD=(FCALL quota_commit 1 t "h<i>" COST credits 1 requests 1)
  python3 - "$PORT" "$N" "$VG" <<'PY'
import subprocess
import sys
import redis
port, n, vg = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
r = redis.Redis(port=port)
def run(make):
    for start in range(0, n, 1000):
        p = r.pipeline(transaction=False)
        for i in range(start, min(start + 1000, n)):
            p.execute_command(*make(i))
        p.execute()
run(lambda i: ("FCALL", "quota_reserve", 1, "t", "PATH", "search/qr/canary", "ID", f"h{i}", "TTL", "600000", "BRIEF",
               "COST", "credits", "2", "requests", "1"))
subprocess.run(["callgrind_control", "-z", vg], check=True, stdout=subprocess.DEVNULL)
run(lambda i: ("FCALL", "quota_commit", 1, "t", f"h{i}", "COST", "credits", "1", "requests", "1"))
PY
else
# one call first (the library builds itself on its first call), then the counters start from zero
redis-cli -p "$PORT" "${CMD[@]}" >/dev/null
callgrind_control -z "$VG" >/dev/null
redis-benchmark -p "$PORT" -c 4 -n "$N" -P 16 -r 1000000 "${CMD[@]}" >/dev/null 2>&1
fi
redis-cli -p "$PORT" SHUTDOWN NOSAVE >/dev/null 2>&1 || true
wait
TOTAL=$(callgrind_annotate "$OUT/cg.out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1}')
echo "$(( TOTAL / N )) instructions per command (${CMD[*]})"
echo "profile: $OUT/cg.out"
