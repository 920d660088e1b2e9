#!/usr/bin/env bash
# Interleaved side-by-side comparison of every peer in peers.conf (or PEERS=file).
# usage: [ROUND0=0 (offset for round numbers, to merge sets)] ./compare.sh [ROUNDS=3] [DURATION=10s] [SCENARIOS="ka1 ka16 ka64 noka16 big4"] [ONLY="direct squid-bump"]
# Order: for round: for scenario: for peer (peer order rotated every round), 1 s pause between runs.
# Needs the servers up (./start.sh all; your own proxy started separately).
# Results: results/<timestamp>/{runs.jsonl,raw/,summary.md}
set -euo pipefail
B="$(cd "$(dirname "$0")" && pwd)"; cd "$B"
ROUNDS=${ROUNDS:-3}; ROUND0=${ROUND0:-0}; DURATION=${DURATION:-10s}; SCENARIOS=${SCENARIOS:-"ka1 ka16 ka64 noka16 big4"}
PEERS=${PEERS:-$B/peers.conf}; OUT=${OUT:-$B/results/$(date +%Y%m%d-%H%M%S)}
mapfile -t lines < <(grep -vE '^\s*(#|$)' "$PEERS")
if [[ -n ${ONLY:-} ]]; then
  keep=(); for l in "${lines[@]}"; do for o in $ONLY; do [[ ${l%% *} == "$o" ]] && keep+=("$l"); done; done
  lines=("${keep[@]}"); fi
n=${#lines[@]}; mkdir -p "$OUT"
echo "rounds=$ROUNDS duration=$DURATION scenarios='$SCENARIOS' peers=$n out=$OUT"
{ date; uname -a; nproc; oha --version; nginx -v 2>&1; squid -v | head -1
  sed -E 's#(://[^:]*):[^@]*@#\1:***@#' "$PEERS"; } > "$OUT/env.txt" 2>&1 || true
peer_args() {  # label url ca pidfile -> args for run.sh
  read -r label url ca pidf <<<"$1"
  [[ $ca != /* ]] && ca=$B/$ca; [[ $pidf != - && $pidf != /* ]] && pidf=$B/$pidf
  args=("$url" "$ca" --label "$label" --out "$OUT" --duration "$DURATION")
  [[ $pidf != - ]] && args+=(--pidfile "$pidf"); return 0
}
# warm-up: fills MITM cert caches / JIT-free paths; not recorded
for l in "${lines[@]}"; do peer_args "$l"
  OUT=/tmp/bench-warmup "$B/run.sh" "${args[@]:0:4}" --out /tmp/bench-warmup --duration 2s --scenarios ka16 >/dev/null; done
rm -rf /tmp/bench-warmup
for r in $(seq 1 "$ROUNDS"); do
  for sc in $SCENARIOS; do
    for i in $(seq 0 $((n-1))); do
      peer_args "${lines[$(( (i + r - 1) % n ))]}"
      "$B/run.sh" "${args[@]}" --scenarios "$sc" --round "$((r + ROUND0))"
      sleep 1
    done
  done
done
python3 "$B/scripts/summarize.py" "$OUT/runs.jsonl" | tee "$OUT/summary.md"
