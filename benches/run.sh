#!/usr/bin/env bash
# Start-latency, exec and monitor-memory benchmark (not a test): pelagos against crun and
# runc on the same busybox rootfs when they are installed. Needs root and hyperfine.
#   bash benches/run.sh            (after `make fixtures` and `cargo build --release`)
set -euo pipefail
cd "$(dirname "$0")/.."
P=${PELAGOS:-$PWD/target/release/pelagos}
FX=${FIXTURES:-$PWD/integration/fixtures/out}
RUNS=${RUNS:-100}
command -v hyperfine >/dev/null || { apt-get install -y -qq hyperfine >/dev/null; }
work=$(mktemp -d /tmp/pelagos-bench.XXXXXX)
trap '$P --data-root $work/data --run-root $work/run rm -f bench-exec >/dev/null 2>&1 || true; $P --data-root $work/data --run-root $work/run network destroy-all >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
export PELAGOS_DATA_ROOT=$work/data PELAGOS_RUN_ROOT=$work/run PELAGOS_CONFIG=$work/daemon.json
# Containers here never need the outside: leave the host's ip_forward alone, resolve via loopback.
echo '{"ip-forward": false, "dns": ["127.0.0.1"]}' > "$PELAGOS_CONFIG"
$P load -q -i "$FX/busybox.tar"

median() { # hyperfine JSON -> median in ms
  python3 -c 'import json,sys; print("%.2f" % (json.load(open(sys.argv[1]))["results"][0]["median"]*1000))' "$1"
}

echo "== pelagos run --rm busybox true ($RUNS runs)"
hyperfine -N -w 10 -r "$RUNS" --export-json "$work/p.json" "$P run --rm busybox true" >/dev/null
p_ms=$(median "$work/p.json"); echo "pelagos: median $p_ms ms"

# The same rootfs as an OCI bundle for crun/runc (extracting with tar is fine here: this is
# benchmark scaffolding, not product code).
bundle=$work/bundle; mkdir -p "$bundle/rootfs"
cp -a "$work/data/image/layers/"*/diff/. "$bundle/rootfs/"
for rt in crun runc; do
  command -v $rt >/dev/null || { echo "$rt: not installed (apt-get install $rt)"; continue; }
  (cd "$bundle" && rm -f config.json && $rt spec >/dev/null 2>&1)
  python3 - "$bundle/config.json" <<'PY'
import json,sys
p=sys.argv[1]; c=json.load(open(p))
c["process"]["args"]=["true"]; c["process"]["terminal"]=False
json.dump(c,open(p,"w"))
PY
  if ! out=$($rt run --bundle "$bundle" bench-$rt 2>&1); then
    echo "$rt: cannot run here: $out"; continue
  fi
  hyperfine -N -w 10 -r "$RUNS" --export-json "$work/$rt.json" "$rt run --bundle $bundle bench-$rt" >/dev/null
  r_ms=$(median "$work/$rt.json")
  echo "$rt: median $r_ms ms   (pelagos/$rt = $(python3 -c "print('%.2f' % ($p_ms/$r_ms))"))"
done

echo "== pelagos exec"
$P run -d --name bench-exec busybox sleep 600 >/dev/null
hyperfine -N -w 10 -r "$RUNS" --export-json "$work/e.json" "$P exec bench-exec true" >/dev/null
echo "pelagos exec: median $(median "$work/e.json") ms"

echo "== monitor memory"
id=$($P inspect -f '{{.Id}}' bench-exec)
mpid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["MonitorPid"])' "$work/data/containers/$id/state.json")
grep -E 'VmRSS|RssAnon|RssFile' /proc/$mpid/status
