#!/usr/bin/env bash
# Same-run A/B of Clawser builds: is a change worth keeping? Each peer is a git revision (or
# `work`, the working tree) built in release mode, optionally with one environment variable;
# all peers run side by side against one nginx HTTPS upstream and are measured in
# interleaved rounds, so a noisy machine hits every peer alike.
#
#   bench/ab.sh HEAD~1 work                       # before and after, keep-alive 16, 4 rounds
#   C=1 ROUNDS=6 bench/ab.sh main work
#   bench/ab.sh work work:CLAWSER_BENCH_NO_LEDGER=1   # what the ledger costs
#   bench/ab.sh work work:MIMALLOC_ALLOW_THP=1         # an allocator setting
#   SOAK=240 RATE=1000 C=64 bench/ab.sh HEAD~1 work   # RSS and live heap under a fixed rate
#   C=64 bench/ab.sh work:SHARDS=0 work:SHARDS=2   # SHARDS=n sets proxy.shards in the config
#   ENGINE=interpreter bench/ab.sh HEAD~1 work        # every peer on one policy engine
#                                                 # (default: each build's own default)
#
# Prints one line per peer and round (req/s, p50, CPU ms per request from /proc, peak RSS),
# the medians, and each peer's ledger group commits (by appenders / by the writer thread);
# with SOAK, RSS and clawser_heap_live_bytes every 30 s instead (builds from before a
# counter show "?"). Revisions are built once each, in git worktrees under
# target/ab/, with this checkout's target directory (only the crate itself is rebuilt), and
# kept as target/ab/clawser-<sha>. The worktrees sit inside this checkout, so its
# .cargo/config.toml applies to every revision: peers differ in code, not build settings
# (compare allocator settings with environment variables, as above). Needs what compare.sh
# needs (nginx, oha); run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
PROJ=$(pwd)
[ $# -ge 1 ] || { sed -n '2,19p' "$0"; exit 2; }
ROUNDS=${ROUNDS:-4} DUR=${DUR:-8s} C=${C:-16}
command -v nginx >/dev/null 2>&1 || { export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq nginx; }
command -v oha >/dev/null 2>&1 || cargo install --locked oha --version 1.16.0
. bench/rig-setup.sh ab
mkdir -p target/ab
# Revisions build in this checkout's target directory (shared dependencies), which replaces
# target/release/clawser: keep the working tree's build aside first.
cp target/release/clawser target/ab/clawser-work
bin_for() { # rev -> path of its release binary
  if [ "$1" = work ]; then echo "$PROJ/target/ab/clawser-work"; return; fi
  local sha; sha=$(git rev-parse --short=12 "$1^{commit}")
  local out="$PROJ/target/ab/clawser-$sha"
  if [ ! -x "$out" ]; then
    local wt="$PROJ/target/ab/wt-$sha"
    rm -rf "$wt"; git worktree add -q --detach "$wt" "$sha"
    (cd "$wt" && CARGO_TARGET_DIR="$PROJ/target" cargo build --release --quiet --bin clawser) >&2
    cp "$PROJ/target/release/clawser" "$out"
    git worktree remove --force "$wt"
  fi
  echo "$out"
}
printf '{"status":"ok","pad":"%0180d"}\n' 0 >"$rig/www/small.json"
"$rig/start.sh" upstream >/dev/null
# Peers are clawser-p1, clawser-p2, ... (bench/rig/clawser-up.sh starts them; the rig's
# clean-up stops them).
declare -A URL CA PID ADMIN DATA
labels=() peers="" n=0
for spec in "$@"; do
  rev=${spec%%:*} envv=""; [[ $spec == *:* ]] && envv=${spec#*:}
  n=$((n + 1)); peers+=" clawser-p$n:${ENGINE:-}:$envv:$(bin_for "$rev")"
done
CLAWSER_PEERS="${peers# }" PROJ="$PROJ" "$rig/clawser-up.sh" >/dev/null
n=0
while read -r peer url ca pidf; do
  n=$((n + 1)); label="$n:${!n}"
  URL[$label]=$url CA[$label]=$ca PID[$label]=$(cat "$rig/$pidf") DATA[$label]=$rig/run/$peer/data
  port=${url##*:}; ADMIN[$label]=$((port + 1))
  labels+=("$label")
done <"$rig/run/clawser-peers.conf"
oha_to() { # label, oha arguments...: oha through that peer
  local label=$1 url=${URL[$1]} cred hp; shift
  cred=${url#*://}; cred=${cred%@*}; hp=${url##*@}
  oha --no-tui --output-format json --cacert "${CA[$label]}" -x "http://$hp" --proxy-header \
    "Proxy-Authorization: Basic $(printf %s "$cred" | base64 -w0)" "$@" https://127.0.0.1:8443/small
}
rss() { awk '/^VmRSS/{printf "%d", $2 / 1024}' "/proc/$1/status"; }
if [ -n "${SOAK:-}" ]; then
  echo "soak: ${SOAK}s at ${RATE:-1000} req/s per peer over $C connections; MiB: RSS (live heap)"
  ohas=()
  for l in "${labels[@]}"; do
    oha_to "$l" -z "${SOAK}s" -q "${RATE:-1000}" -c "$C" >"$rig/run/soak-${l%%:*}.json" &
    ohas+=($!)
  done
  for t in $(seq 0 30 "$SOAK"); do
    line="t=${t}s"
    for l in "${labels[@]}"; do
      live=$(curl -s -H "Authorization: Bearer $(cat "${DATA[$l]}/admin.token")" "http://127.0.0.1:${ADMIN[$l]}/metrics" |
        awk '/^clawser_heap_live_bytes /{printf "%d", $2 / 1048576}')
      line+="  $l=$(rss "${PID[$l]}")(${live:-?})"
    done
    echo "$line"
    [ "$t" -lt "$SOAK" ] && sleep 30
  done
  wait "${ohas[@]}" || true
  exit 0
fi
echo "keep-alive $C, $ROUNDS interleaved rounds of $DUR"
rows=$rig/run/rows.tsv; : >"$rows"
for r in $(seq "$ROUNDS"); do
  for l in "${labels[@]}"; do
    pid=${PID[$l]}
    [ "$r" = 1 ] && oha_to "$l" -z 2s -c "$C" >/dev/null
    t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    oha_to "$l" -z "$DUR" -c "$C" >"$rig/run/r.json"
    t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    hwm=$(awk '/^VmHWM/{printf "%d", $2 / 1024}' "/proc/$pid/status")
    python3 - "$rig/run/r.json" "$l" "$r" "$t0" "$t1" "$hwm" "$(getconf CLK_TCK)" >>"$rows" <<'PY'
import json, sys
f, label, r, t0, t1, hwm, tck = sys.argv[1:]
d = json.load(open(f))
n = sum(d["statusCodeDistribution"].values()) or 1
ok = d["statusCodeDistribution"].get("200", 0)
cpu = (float(t1) - float(t0)) / float(tck) * 1000 / n
print(f'{label}\t{r}\t{d["summary"]["requestsPerSec"]:.0f}\t{d["latencyPercentiles"]["p50"] * 1000:.3f}\t{cpu:.4f}\t{hwm}\t{n - ok}')
PY
    tail -1 "$rows" | awk -F'\t' '{printf "%-40s r%s  %6s req/s  p50 %s ms  CPU %s ms/req  peak RSS %s MiB  non-200 %s\n", $1, $2, $3, $4, $5, $6, $7}'
  done
done
python3 - "$rows" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
print("\nmedians over rounds:")
for label in dict.fromkeys(r[0] for r in rows):
    mine = [r for r in rows if r[0] == label]
    med = lambda i: statistics.median(float(r[i]) for r in mine)
    print(f"{label:<40} {med(2):8.0f} req/s  p50 {med(3):.3f} ms  CPU {med(4):.4f} ms/req  peak RSS {max(int(r[5]) for r in mine)} MiB")
PY
echo "ledger group commits (by appenders / by the writer thread; builds from before the counter: ?)"
for l in "${labels[@]}"; do
  curl -s -H "Authorization: Bearer $(cat "${DATA[$l]}/admin.token")" "http://127.0.0.1:${ADMIN[$l]}/metrics" |
    awk -v l="$l" '/^clawser_ledger_groups_total/{split($1, a, "\""); n[a[2]] = $2}
      END {printf "%-40s %s / %s\n", l, (n["appender"] == "" ? "?" : n["appender"]), (n["writer"] == "" ? "?" : n["writer"])}'
done
