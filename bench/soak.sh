#!/usr/bin/env bash
# Memory soak: Clawser as shipped (interpreter, durable ledger) under a fixed request rate
# for a fixed time, sampling the process's RSS. Issue 14, target 4: peak RSS at 64
# keep-alive connections, and RSS flat (within 10%) from the first minute to the last.
#
#   bench/soak.sh                          # 10 minutes at 1,500 req/s over 64 connections
#   DURATION=120 RATE=3000 CONNS=16 bench/soak.sh
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
cargo build --release --quiet --bin clawser
rig=$(mktemp -d /tmp/clawser-soak.XXXXXX)
cp -r bench/rig/. "$rig/"
chmod 755 "$rig"
cleanup() {
  "$rig/stop.sh" upstream >/dev/null 2>&1 || true
  [ -f "$rig/run/clawser.pid" ] && kill "$(cat "$rig/run/clawser.pid")" 2>/dev/null || true
}
trap cleanup EXIT
(cd "$rig" && ./gen-certs.sh >/dev/null 2>&1)
mkdir -p "$rig/www" "$rig/run" "$rig/results"
printf '{"status":"ok","pad":"%0180d"}\n' 0 >"$rig/www/small.json"
"$rig/start.sh" upstream >/dev/null
CLAWSER_PEERS="clawser:interpreter:" PROJ="$PROJ" "$rig/clawser-up.sh" >/dev/null
read -r _ url ca _ <"$rig/run/clawser-peers.conf"
pid=$(cat "$rig/run/clawser.pid")
cred=${url#*://}; cred=${cred%@*}; hostport=${url##*@}
out="$PROJ/bench/results/soak-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out"
echo "soak: ${DURATION}s at ${RATE} req/s over ${CONNS} keep-alive connections, pid $pid"
oha --no-tui --output-format json -z "${DURATION}s" -q "$RATE" -c "$CONNS" --cacert "$ca" -t 10s \
  -x "http://$hostport" --proxy-header "Proxy-Authorization: Basic $(printf %s "$cred" | base64 -w0)" \
  https://localhost:8443/small >"$out/oha.json" &
oha_pid=$!
printf 'seconds\trss_kib\n' >"$out/rss.tsv"
start=$(date +%s)
while kill -0 "$oha_pid" 2>/dev/null; do
  t=$(( $(date +%s) - start ))
  rss=$(awk '/^VmRSS/{print $2}' "/proc/$pid/status")
  printf '%s\t%s\n' "$t" "$rss" >>"$out/rss.tsv"
  [ $((t % 30)) -eq 0 ] && echo "t=${t}s rss=$((rss / 1024)) MiB"
  sleep 5
done
wait "$oha_pid" || true
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
rows = [tuple(map(int, l.split())) for l in open(f"{out}/rss.tsv").read().splitlines()[1:] if l.strip()]
oha = json.load(open(f"{out}/oha.json"))
s = oha.get("summary", {})
codes = oha.get("statusCodeDistribution", {})
first = [r for t, r in rows if 60 <= t < 120] or [r for _, r in rows[:12]]
last = [r for t, r in rows if t >= rows[-1][0] - 60]
a, b = sum(first) / len(first), sum(last) / len(last)
print(f"requests/s {s.get('requestsPerSec', 0):,.0f}, status codes {codes}")
print(f"RSS peak {max(r for _, r in rows) / 1024:.1f} MiB; mean of minute 2 {a / 1024:.1f} MiB, "
      f"of the last minute {b / 1024:.1f} MiB ({(b - a) / a * 100:+.1f}%)")
PY
