#!/usr/bin/env bash
# Instructions per proxied request, counted by callgrind: a figure that does not move with
# the machine's load, for changes too small for a timed A/B to show (a few percent). Each
# binary serves keep-alive HTTPS requests through one connection, on one runtime thread,
# durable ledger on, shipped policy pack; the count is (instructions after N2 requests -
# after N1) / (N2 - N1), so start-up and warm-up cancel out. The ledger's SHA-256 runs a
# different code path under valgrind (no SHA extensions), so its share is overstated.
#
#   bench/instr.sh                                # the working tree's release build
#   bench/instr.sh target/ab/clawser-<sha> target/release/clawser
#   N1=200 N2=1200 bench/instr.sh                 # the defaults
#
# Prints one line per binary and a call-graph dump per binary under bench/results/instr-*/
# (callgrind_annotate --inclusive=yes FILE). Needs valgrind, nginx and oha; run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
PROJ=$(pwd)
N1=${N1:-200} N2=${N2:-1200}
command -v valgrind >/dev/null 2>&1 || { export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq valgrind; }
command -v nginx >/dev/null 2>&1 || { export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq nginx; }
command -v oha >/dev/null 2>&1 || cargo install --locked oha --version 1.16.0
. bench/rig-setup.sh instr
[ $# -ge 1 ] || set -- "$PROJ/target/release/clawser"
printf '{"status":"ok","pad":"%0180d"}\n' 0 >"$rig/www/small.json"
"$rig/start.sh" upstream >/dev/null
out="$PROJ/bench/results/instr-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out"
d=$rig/run/instr
mkdir -p "$d/policies"
cp "$PROJ"/policies/*.rego "$PROJ"/policies/*.yaml "$d/policies/"
cat >"$d/clawser.yaml" <<YAML
data_dir: $d/data
proxy: {listen: 127.0.0.1:19700, allow_private: ["127.0.0.0/8"], unix_socket: ""}
admin: {listen: 127.0.0.1:19701}
ca: {dir: $d/certs}
policy: {dir: $d/policies}
upstream: {extra_ca_files: [$rig/certs/upstream-ca.pem]}
agents: [{id: bench, runtime: other, on_behalf_of: bench}]
YAML
total() { # binary, requests -> instructions from the zeroed counters to the dump
  local bin=$1 n=$2 vp cred url
  rm -rf "$d/data" "$d/certs" "$d"/cg.out*
  (cd "$d" && exec env TOKIO_WORKER_THREADS=1 valgrind --tool=callgrind --callgrind-out-file="$d/cg.out" \
    "$bin" serve -c "$d/clawser.yaml" >"$d/serve.log" 2>&1) &
  vp=$!
  for _ in $(seq 300); do curl -s http://127.0.0.1:19701/healthz >/dev/null && break; sleep 0.2; done
  url=$("$bin" env -c "$d/clawser.yaml" --agent bench --format json |
    python3 -c 'import json,sys;print(json.load(sys.stdin)["HTTPS_PROXY"])')
  cred=${url#*://}; cred=${cred%@*}
  req() {
    oha --no-tui --output-format json -n "$1" -c 1 --cacert "$d/certs/ca.pem" -x http://127.0.0.1:19700 \
      --proxy-header "Proxy-Authorization: Basic $(printf %s "$cred" | base64 -w0)" https://127.0.0.1:8443/small
  }
  req 20 >/dev/null
  callgrind_control -z "$vp" >/dev/null 2>&1
  if ! req "$n" | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(d["statusCodeDistribution"] != {"200": int(sys.argv[1])})' "$n"; then
    echo "$bin: not every request was answered 200 (see $d/serve.log)" >&2
    kill "$vp" 2>/dev/null; return 1
  fi
  callgrind_control -d "$vp" >/dev/null 2>&1
  kill "$vp"; wait "$vp" 2>/dev/null || true
  awk '/^totals:/{print $2}' "$d/cg.out.1"
}
for bin in "$@"; do
  bin=$(realpath "$bin")
  t1=$(total "$bin" "$N1") || exit 1
  t2=$(total "$bin" "$N2") || exit 1
  name=$(basename "$bin")
  cp "$d/cg.out.1" "$out/callgrind-$name.out"
  echo "$bin: $(( (t2 - t1) / (N2 - N1) )) instructions per request ($N1 and $N2 requests: $t1, $t2)"
done
echo "call graphs: $out/callgrind-*.out (callgrind_annotate --inclusive=yes FILE)"
