#!/usr/bin/env bash
# Clawser against squid ssl-bump (the intercepting proxy users would otherwise run), in the
# same run, on the same nginx HTTPS upstream, with the same load generator (oha), with
# direct traffic as the limit. One command, as root on Debian 12:
#
#   bench/compare.sh                         # 3 interleaved rounds of 8 s: ka1 ka16 noka16 big4
#   ROUNDS=5 DURATION=10s bench/compare.sh
#   SCENARIOS="ka16 ka64" bench/compare.sh
#   COMPARE_PEERS="clawser:: clawser-1w::TOKIO_WORKER_THREADS=1" bench/compare.sh
#
# Installs what it needs from Debian (nginx, squid-openssl) and crates.io (oha), builds
# Clawser in release mode, runs the rig in bench/rig/ (adapted from the team's shared
# bench rig) from a scratch copy, and prints one table: req/s (MiB/s for big), p50/p99,
# ratios to squid-bump and to direct, CPU per request and peak RSS of each proxy process.
# The rows are kept as JSON Lines (runs.jsonl) and the table as summary.md in
# bench/results/<timestamp>/. Peers: direct, squid-bump, clawser (as shipped: the VM engine,
# which runs the shipped pack, durable ledger, info-level decision lines), clawser-nolog
# (ledger off, bench-only switch), so the ledger's share is in the same run, and
# clawser-interp (policy.engine: interpreter, the reference semantics). COMPARE_PEERS replaces
# the Clawser peers: "label:engine:ENV=value[,ENV=value...]" each (bench/rig/clawser-up.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
PROJ=$(pwd)
export ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-8s} SCENARIOS=${SCENARIOS:-"ka1 ka16 noka16 big4"}

need=()
command -v nginx >/dev/null 2>&1 || need+=(nginx)
[ -x /usr/lib/squid/security_file_certgen ] || need+=(squid-openssl)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${need[@]}"
fi
command -v oha >/dev/null 2>&1 || cargo install --locked oha --version 1.16.0
. bench/rig-setup.sh bench
head -c 1048576 /dev/urandom >"$rig/www/1m.bin"
python3 - "$rig/www/small.json" <<'PY'
import json, sys
d = {"id": 12345, "status": "ok", "service": "bench-upstream", "items": [{"k": "alpha", "v": 1}],
     "message": "small JSON payload for proxy overhead benchmarking", "pad": ""}
s = json.dumps(d, separators=(",", ":")); d["pad"] = "x" * (200 - len(s) - 1)
open(sys.argv[1], "w").write(json.dumps(d, separators=(",", ":")) + "\n")
PY
# nginx's status port is 8081, Clawser's default admin port: the peers get other ports.
"$rig/start.sh" upstream squid-bump
CLAWSER_PEERS="${COMPARE_PEERS:-clawser:: clawser-nolog::CLAWSER_BENCH_NO_LEDGER=1 clawser-interp:interpreter:}" \
  PROJ="$PROJ" "$rig/clawser-up.sh" >/dev/null
{
  printf '%-14s %s %s %s\n' direct direct certs/upstream-ca.pem -
  printf '%-14s %s %s %s\n' squid-bump http://127.0.0.1:13128 certs/squid-ca.pem run/squid-bump.pid
  cat "$rig/run/clawser-peers.conf"
} >"$rig/run/peers.conf"
out="$PROJ/bench/results/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out"
(cd "$rig" && PEERS=run/peers.conf OUT="$out" ./compare.sh >/dev/null)
python3 "$rig/scripts/summarize.py" "$out/runs.jsonl" squid-bump >"$out/summary-vs-squid.md"
echo "== ratios to squid-bump (same run) =="
cat "$out/summary-vs-squid.md"
echo
echo "== ratios to direct (same run) =="
cat "$out/summary.md"
echo
echo
# Target 3 allows Clawser one durable write per request over squid's added latency: the
# cost of one on this disk, where the peers' ledgers were (same run).
python3 "$rig/fsync.py" "$rig/run" 1000 | tee "$out/fsync.txt"
echo "rows: $out/runs.jsonl"
