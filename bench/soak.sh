#!/usr/bin/env bash
# Memory soak: Clawser as shipped (the VM engine, durable ledger) under a fixed request rate
# for a fixed time, sampling the process's RSS. Issue 14, target 4: peak RSS at 64
# keep-alive connections, and RSS flat (within 10%) from the first minute to the last.
#
#   bench/soak.sh                          # 10 minutes at 1,500 req/s over 64 connections
#   DURATION=120 RATE=3000 CONNS=16 bench/soak.sh
#   PEERS="clawser clawser-nolog" bench/soak.sh  # also the ledger off, side by side (each
#                                                # peer gets its own load at RATE)
#
# Same set-up as compare.sh (nginx HTTPS upstream from bench/rig, oha, a release build).
# Prints RSS every 30 s and a summary; the samples are kept in
# bench/results/soak-<timestamp>/rss.tsv (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
PROJ=$(pwd)
DURATION=${DURATION:-600} RATE=${RATE:-1500} CONNS=${CONNS:-64}
command -v nginx >/dev/null 2>&1 || { export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq nginx; }
command -v oha >/dev/null 2>&1 || cargo install --locked oha --version 1.16.0
. bench/rig-setup.sh soak
printf '{"status":"ok","pad":"%0180d"}\n' 0 >"$rig/www/small.json"
"$rig/start.sh" upstream >/dev/null
PEERS=${PEERS:-clawser}
spec=""
for p in $PEERS; do
  case $p in
    clawser) spec+=" clawser::" ;;
    clawser-nolog) spec+=" clawser-nolog::CLAWSER_BENCH_NO_LEDGER=1" ;;
    *) echo "unknown peer $p (clawser, clawser-nolog)" >&2; exit 2 ;;
  esac
done
CLAWSER_PEERS="${spec# }" PROJ="$PROJ" "$rig/clawser-up.sh" >/dev/null
out="$PROJ/bench/results/soak-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out"
echo "soak: ${DURATION}s at ${RATE} req/s over ${CONNS} keep-alive connections, peers: $PEERS"
pids=() ohas=()
while read -r label url ca _; do
  cred=${url#*://}; cred=${cred%@*}; hostport=${url##*@}
  oha --no-tui --output-format json -z "${DURATION}s" -q "$RATE" -c "$CONNS" --cacert "$ca" -t 10s \
    -x "http://$hostport" --proxy-header "Proxy-Authorization: Basic $(printf %s "$cred" | base64 -w0)" \
    https://localhost:8443/small >"$out/$label.oha.json" &
  ohas+=($!)
  pids+=("$label:$(cat "$rig/run/$label.pid")")
  printf 'seconds\trss_kib\n' >"$out/$label.rss.tsv"
done <"$rig/run/clawser-peers.conf"
start=$(date +%s)
while kill -0 "${ohas[0]}" 2>/dev/null; do
  t=$(( $(date +%s) - start ))
  line="t=${t}s"
  for lp in "${pids[@]}"; do
    rss=$(awk '/^VmRSS/{print $2}' "/proc/${lp#*:}/status")
    printf '%s\t%s\n' "$t" "$rss" >>"$out/${lp%%:*}.rss.tsv"
    line+=" ${lp%%:*}=$((rss / 1024))MiB"
  done
  [ $(( t / 5 % 6 )) -eq 0 ] && echo "$line"
  sleep 5
done
wait "${ohas[@]}" || true
for lp in "${pids[@]}"; do
python3 - "$out" "${lp%%:*}" <<'PY'
import json, sys
out, label = sys.argv[1], sys.argv[2]
rows = [tuple(map(int, l.split())) for l in open(f"{out}/{label}.rss.tsv").read().splitlines()[1:] if l.strip()]
oha = json.load(open(f"{out}/{label}.oha.json"))
s = oha.get("summary", {})
codes = oha.get("statusCodeDistribution", {})
first = [r for t, r in rows if 60 <= t < 120] or [r for _, r in rows[:12]]
last = [r for t, r in rows if t >= rows[-1][0] - 60]
a, b = sum(first) / len(first), sum(last) / len(last)
print(f"{label}: {s.get('requestsPerSec', 0):,.0f} req/s, status codes {codes}; RSS peak "
      f"{max(r for _, r in rows) / 1024:.1f} MiB, mean of minute 2 {a / 1024:.1f} MiB, "
      f"of the last minute {b / 1024:.1f} MiB ({(b - a) / a * 100:+.1f}%)")
PY
done
