# Sourced by compare.sh, soak.sh and stream.sh (from the checkout's root), with a name for
# the scratch folder: builds Clawser in release mode, copies bench/rig/ to a scratch folder
# ($rig) with fresh certificates, and on exit stops the rig's servers, the Clawser peers and
# any process whose pid the caller adds to extra_pids.
cargo build --release --quiet --bin clawser
rig=$(mktemp -d "/tmp/clawser-$1.XXXXXX")
cp -r bench/rig/. "$rig/"
chmod 755 "$rig"
extra_pids=()
cleanup() {
  "$rig/stop.sh" squid-bump upstream >/dev/null 2>&1 || true
  for f in "$rig"/run/clawser*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
  # Peers with labels of their own (COMPARE_PEERS, CLAWSER_PEERS) too.
  if [ -f "$rig/run/clawser-peers.conf" ]; then
    while read -r _ _ _ pidf; do
      [ -f "$rig/$pidf" ] && kill "$(cat "$rig/$pidf")" 2>/dev/null || true
    done <"$rig/run/clawser-peers.conf"
  fi
  for p in "${extra_pids[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
(cd "$rig" && ./gen-certs.sh >/dev/null 2>&1)
mkdir -p "$rig/www" "$rig/run" "$rig/results"
