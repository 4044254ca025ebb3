#!/usr/bin/env bash
# Network cost per container (not a test): `pelagos run --rm busybox true` with
# --network none, on the default bridge and on a user network (embedded DNS), plus the same
# with a published port (firewall batch). The difference to `none` is the set-up +
# tear-down cost of the network. Needs root, hyperfine, the fixtures and a release build.
#   bash benches/network.sh        (after `make fixtures` and `cargo build --release`)
set -euo pipefail
cd "$(dirname "$0")/.."
P=${PELAGOS:-$PWD/target/release/pelagos}
FX=${FIXTURES:-$PWD/integration/fixtures/out}
RUNS=${RUNS:-100}
command -v hyperfine >/dev/null || { apt-get install -y -qq hyperfine >/dev/null; }
work=$(mktemp -d /tmp/pelagos-netbench.XXXXXX)
export PELAGOS_DATA_ROOT=$work/data PELAGOS_RUN_ROOT=$work/run PELAGOS_CONFIG=$work/daemon.json
# Containers here never need the outside: resolve through loopback, leave ip_forward alone.
echo '{"ip-forward": false, "dns": ["127.0.0.1"]}' > "$PELAGOS_CONFIG"
trap '$P network destroy-all >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
$P load -q -i "$FX/busybox.tar"
$P network create benchnet >/dev/null

median() { # hyperfine JSON -> median in ms
  python3 -c 'import json,sys; print("%.2f" % (json.load(open(sys.argv[1]))["results"][0]["median"]*1000))' "$1"
}
bench() { # name, extra run flags
  hyperfine -N -w 10 -r "$RUNS" --export-json "$work/$1.json" "$P run --rm $2 busybox true" >/dev/null
  median "$work/$1.json"
}

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
none=$(bench none "--network none")
bridge=$(bench bridge "")
user=$(bench user "--network benchnet")
port=$(bench port "-p 127.0.0.1::80")
python3 - "$none" "$bridge" "$user" "$port" <<'PY'
import sys
none, bridge, user, port = map(float, sys.argv[1:])
print(f"run --rm, --network none:        {none:6.2f} ms median")
print(f"run --rm, default bridge:        {bridge:6.2f} ms  (network set-up + tear-down {bridge-none:+.2f} ms)")
print(f"run --rm, user network (DNS):    {user:6.2f} ms  ({user-none:+.2f} ms)")
print(f"run --rm, bridge + -p ::80:      {port:6.2f} ms  ({port-none:+.2f} ms)")
PY
