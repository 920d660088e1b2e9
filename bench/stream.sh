#!/usr/bin/env bash
# Streaming through Clawser (issue 14, target 7): time to the first server-sent event, direct
# and through Clawser, and RSS while a 1 GiB download flows through it.
#
#   bench/stream.sh                 # MIB=1024
#
# The upstream is bench/rig/stream.py (Python, HTTPS): /sse sends its first event at once and
# four more 50 ms apart, so a proxy that buffered the stream would show ~200 ms, not ~1 ms.
set -euo pipefail
cd "$(dirname "$0")/.."
PROJ=$(pwd)
MIB=${MIB:-1024}
. bench/rig-setup.sh stream
port=18443
python3 "$rig/stream.py" serve "$rig/certs/upstream.pem" "$rig/certs/upstream.key" "$port" 2>/dev/null &
extra_pids+=($!)
for _ in $(seq 50); do curl -s --cacert "$rig/certs/upstream-ca.pem" -o /dev/null "https://localhost:$port/sse" && break; sleep 0.1; done
CLAWSER_PEERS="clawser::" PROJ="$PROJ" "$rig/clawser-up.sh" >/dev/null
read -r _ url ca _ <"$rig/run/clawser-peers.conf"
pid=$(cat "$rig/run/clawser.pid")
echo "== time to the first event (keep-alive connection, 20 requests, ms)"
printf 'direct   %s\n' "$(python3 "$rig/stream.py" ttfe "https://localhost:$port/sse" "$rig/certs/upstream-ca.pem")"
printf 'clawser  %s\n' "$(python3 "$rig/stream.py" ttfe "https://localhost:$port/sse" "$ca" "$url")"
echo "== ${MIB} MiB download through Clawser"
before=$(awk '/^VmRSS/{print $2}' "/proc/$pid/status")
peak=$before
curl -s -o /dev/null -w '%{size_download} bytes in %{time_total} s\n' -x "$url" --cacert "$ca" \
  "https://localhost:$port/big?mib=$MIB" &
cpid=$!
while kill -0 "$cpid" 2>/dev/null; do
  r=$(awk '/^VmRSS/{print $2}' "/proc/$pid/status"); [ "$r" -gt "$peak" ] && peak=$r
  sleep 0.2
done
wait "$cpid"
echo "Clawser RSS before $((before / 1024)) MiB, peak during the download $((peak / 1024)) MiB"
