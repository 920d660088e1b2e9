#!/usr/bin/env bash
# Proxy throughput and latency against direct, measured in one run on this machine.
#
#   bench/run.sh                 # the VM engine (the default)
#   ENGINE=interpreter bench/run.sh   # the interpreter engine
#   DURATION=20s bench/run.sh
#   SCENARIOS='ka64:-c 64;new64:-c 64 --disable-keepalive' bench/run.sh   # name:oha args, ';'-separated
#   OHA_NICE=15 bench/run.sh     # run oha at lower CPU priority (shared-core experiments)
#
# A local HTTPS upstream (examples/bench_upstream.rs) is loaded with oha directly and
# through Clawser (CONNECT + TLS interception + policy + upstream TLS), with keep-alive at
# 1 and 16 connections and with a new connection per request at 16. Prints req/s, p50/p99
# and the ratio to direct; a second instance with the ledger off (bench-only switch
# CLAWSER_BENCH_NO_LEDGER) gives the ledger's cost. Figures compare only within one run.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
ENGINE=${ENGINE:-vm}

command -v oha >/dev/null 2>&1 || cargo install --locked oha
cargo build --release --quiet --bin clawser --example bench_upstream

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

target/release/examples/bench_upstream "$work/upstream-ca.pem" >"$work/upstream.port" &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/upstream.port" ] && break; sleep 0.05; done
up_port=$(cat "$work/upstream.port")

start_clawser() { # name [env assignment]: starts an instance, sets proxy_<name>, auth_<name>
  local name=$1; shift
  local dir="$work/$name"
  mkdir -p "$dir"
  cat >"$dir/clawser.yaml" <<YAML
data_dir: $dir/data
proxy: {listen: 127.0.0.1:0, allow_private: [127.0.0.0/8]}
admin: {listen: 127.0.0.1:0}
ca: {dir: $work/certs}
policy: {dir: $work/policies, engine: $ENGINE}
upstream: {extra_ca_files: [$work/upstream-ca.pem], http2: ${UPSTREAM_H2:-true}}
log: {level: ${LOG_LEVEL:-info}}
agents: [{id: bench, runtime: other, on_behalf_of: bench}]
YAML
  local bin="target/release/clawser -c $dir/clawser.yaml"
  env "$@" $bin serve 2>"$dir/serve.log" &
  pids+=($!)
  for _ in $(seq 200); do [ -s "$dir/data/server.json" ] && break; sleep 0.05; done
  local proxy token env_json
  proxy=$(python3 -c "import json;print(json.load(open('$dir/data/server.json'))['proxy'])")
  env_json=$($bin env --agent bench --format json)
  token=$(python3 -c "import json,sys;u=json.loads(sys.argv[1])['HTTPS_PROXY'];print(u.split('//')[1].split('@')[0].split(':',1)[1])" "$env_json")
  printf -v "proxy_$name" '%s' "$proxy"
  printf -v "auth_$name" '%s' "$(printf 'bench:%s' "$token" | base64 -w0)"
}
start_clawser on
start_clawser off CLAWSER_BENCH_NO_LEDGER=1
bundle="$work/on/data/ca-bundle.pem"
url="https://localhost:$up_port/"

run() { # name, extra oha args...
  local out="$work/$1.json"; shift
  ${OHA_NICE:+nice -n "$OHA_NICE"} oha -z "$DURATION" --no-tui --output-format json "$@" >"$out"
}
IFS=';' read -ra specs <<<"${SCENARIOS:-ka1:-c 1;ka16:-c 16;new16:-c 16 --disable-keepalive}"
names=()
for c in "${specs[@]}"; do
  names+=("${c%%:*}")
done
for c in "${specs[@]}"; do
  name=${c%%:*}; args=${c#*:}
  # shellcheck disable=SC2086
  run "direct-$name" $args --cacert "$work/upstream-ca.pem" "$url"
  # shellcheck disable=SC2086
  run "proxy-$name" $args -x "http://$proxy_on" --proxy-header "Proxy-Authorization: Basic $auth_on" --cacert "$bundle" "$url"
  # shellcheck disable=SC2086
  run "noledger-$name" $args -x "http://$proxy_off" --proxy-header "Proxy-Authorization: Basic $auth_off" --cacert "$bundle" "$url"
done

python3 - "$work" "$ENGINE" "$DURATION" "${names[@]}" <<'PY'
import json, sys
work, engine, duration, *scenarios = sys.argv[1:]
def load(n):
    d = json.load(open(f"{work}/{n}.json"))
    s = d["summary"]; p = d["latencyPercentiles"]
    ok = d.get("statusCodeDistribution", {})
    return s["requestsPerSec"], p["p50"] * 1e3, p["p99"] * 1e3, s["successRate"], ok
print(f"engine={engine} duration={duration} (latencies in ms; ratio = proxy / direct)")
print(f"{'scenario':<34}{'direct req/s':>13}{'proxy req/s':>13}{'ratio':>7}{'direct p50':>11}{'proxy p50':>10}{'+p50':>8}{'direct p99':>11}{'proxy p99':>10}{'no-ledger req/s':>16}{'ledger cost':>12}")
labels = {"ka1": "keep-alive, 1 connection", "ka16": "keep-alive, 16 connections", "new16": "new connection per request, 16"}
for k in scenarios:
    label = labels.get(k, k)
    d, p, n = load(f"direct-{k}"), load(f"proxy-{k}"), load(f"noledger-{k}")
    print(f"{label:<34}{d[0]:>13.0f}{p[0]:>13.0f}{p[0]/d[0]:>7.2f}{d[1]:>11.3f}{p[1]:>10.3f}{p[1]-d[1]:>8.3f}{d[2]:>11.3f}{p[2]:>10.3f}{n[0]:>16.0f}{1-p[0]/n[0]:>11.0%}")
    if p[3] < 1.0 or set(p[4]) - {"200"}:
        print(f"  warning: proxy run success rate {p[3]:.3f}, statuses {p[4]}")
PY
