#!/usr/bin/env bash
# Starts Clawser peers for compare.sh from a release build of a Clawser checkout
# (PROJ=path). Writes run/clawser-peers.conf (combine it with peers.conf for PEERS=...).
#   clawser         shipped policy pack, the build's default engine, durable ledger (as shipped)
#   clawser-nolog   same, ledger off (bench-only switch CLAWSER_BENCH_NO_LEDGER)
#   clawser-interp  the interpreter engine (the reference semantics), ledger on
# CLAWSER_PEERS="label:engine:ENV=value[,ENV=value...][:binary] ..." overrides the list (an
# empty engine is the build's default, the VM since session 14; the binary defaults to
# PROJ's release build; bench/ab.sh gives each peer its own). SHARDS=n among the variables is
# not passed on: it sets proxy.shards in the peer's config (0: the shared runtime).
set -euo pipefail
B="$(cd "$(dirname "$0")" && pwd)"; PROJ=${PROJ:?set PROJ to the project checkout}
BIN=$PROJ/target/release/clawser; [[ -x $BIN ]] || { echo "build $BIN first" >&2; exit 2; }
out=$B/run/clawser-peers.conf; : >"$out"
port=19090
for v in ${CLAWSER_PEERS:-"clawser::" "clawser-nolog::CLAWSER_BENCH_NO_LEDGER=1" "clawser-interp:interpreter:"}; do
  IFS=: read -r label engine envv bin <<<"$v"
  bin=${bin:-$BIN}
  shards=; vars=
  for kv in ${envv//,/ }; do
    case $kv in SHARDS=*) shards=${kv#SHARDS=} ;; *) vars="$vars $kv" ;; esac
  done
  d=$B/run/$label; rm -rf "$d"; mkdir -p "$d/policies"
  cp "$PROJ"/policies/*.rego "$PROJ"/policies/*.yaml "$d/policies/" 2>/dev/null || true
  cat >"$d/clawser.yaml" <<YAML
data_dir: $d/data
proxy: {listen: 127.0.0.1:$port$(grep -q allow_private "$PROJ/config.example.yaml" 2>/dev/null && echo ', allow_private: ["127.0.0.0/8", "::1"]')${shards:+, shards: $shards}}
admin: {listen: 127.0.0.1:$((port+1))}
ca: {dir: $d/certs}
policy: {dir: $d/policies${engine:+, engine: $engine}}
upstream: {extra_ca_files: [$B/certs/upstream-ca.pem]}
agents: [{id: bench, runtime: other, on_behalf_of: bench}]
YAML
  (cd "$d" && exec env $vars "$bin" serve -c "$d/clawser.yaml" >"$d/serve.log" 2>&1) &
  echo $! >"$B/run/$label.pid"
  for _ in $(seq 100); do curl -s "http://127.0.0.1:$((port+1))/healthz" >/dev/null && break; sleep 0.1; done
  url=$("$bin" env -c "$d/clawser.yaml" --agent bench --format json | python3 -c 'import json,sys;print(json.load(sys.stdin)["HTTPS_PROXY"])')
  printf '%-14s %s %s %s\n' "$label" "$url" "$d/certs/ca.pem" "run/$label.pid" >>"$out"
  port=$((port+10))
done
cat "$out" | sed -E 's#(://[^:]*):[^@]*@#\1:***@#'
