#!/usr/bin/env bash
# Pull benchmark (not a test) against a loopback registry: pelagos vs skopeo (and dockerd
# when one is running on its default socket), same registry, same images.
#   1. debian:bookworm minbase (one ~50 MB gzip layer; built by integration/fixtures/debian.sh)
#   2. 150 MB of random data in 3 layers (incompressible: measures transfer + hashing + unpack)
# Each pelagos run starts from an empty store. Needs root, skopeo, docker-registry, hyperfine.
#   bash benches/pull.sh            (after `cargo build --release`)
set -euo pipefail
cd "$(dirname "$0")/.."
P=${PELAGOS:-$PWD/target/release/pelagos}
RUNS=${RUNS:-5}
FX=${BENCH_FIXTURES:-/var/tmp/pelagos-bench-fx}
export PELAGOS_TEST_REGISTRY=${PELAGOS_BENCH_REGISTRY:-127.0.0.1:5065}
export REGISTRY_DIR=${BENCH_REGISTRY_DIR:-/tmp/pelagos-bench-registry}
REG=$PELAGOS_TEST_REGISTRY
for t in hyperfine skopeo docker-registry; do
  command -v $t >/dev/null || apt-get install -y -qq $t >/dev/null
done
work=$(mktemp -d /var/tmp/pelagos-pull-bench.XXXXXX)
trap 'bash integration/registry.sh stop >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
bash integration/registry.sh start >/dev/null

mkdir -p "$FX"
bash integration/fixtures/debian.sh "$FX"
if [[ ! -s $FX/random3.tar ]]; then
  python3 - "$work" <<'PY'
import os, sys, tarfile, io
work = sys.argv[1]
for i in range(3):
    with tarfile.open(f"{work}/rand{i}.tar", "w", format=tarfile.GNU_FORMAT) as t:
        data = os.urandom(50 * 1000 * 1000)
        info = tarfile.TarInfo(f"random{i}.bin"); info.size = len(data); info.mtime = 1704067200
        t.addfile(info, io.BytesIO(data))
PY
  python3 integration/fixtures/mkimage.py rootfs --layer "$work/rand0.tar" --layer "$work/rand1.tar" \
    --layer "$work/rand2.tar" --tag pelagos-bench/random3:latest --out "$FX/random3.tar" >/dev/null
fi

# Earlier runs' stores are moved aside, not deleted, until the end: ext4 slows inode
# allocation down for seconds after many deletions (`recently_deleted` dominated a profile),
# which would measure the previous run's `rm -rf` instead of the pull.
mkdir -p "$work/old"

median() { python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][0]; print("%.0f ms (min %.0f, max %.0f)" % (r["median"]*1000, r["min"]*1000, r["max"]*1000))' "$1"; }

for img in debian random3; do
  [[ -s $FX/$img.tar ]] || { echo "$img: fixture missing (debootstrap could not run?)"; continue; }
  ref=$REG/pelagos-bench/$img:latest
  # gzip layers, as registries serve them (skopeo compresses the archive's plain tars).
  skopeo copy -q --dest-tls-verify=false "docker-archive:$FX/$img.tar" "docker://$ref"
  size=$(skopeo inspect --tls-verify=false --raw "docker://$ref" | python3 -c 'import json,sys; print(sum(l["size"] for l in json.load(sys.stdin)["layers"]))')
  echo "== $img: $((size / 1000000)) MB compressed, $RUNS runs each"
  hyperfine -N -w 1 -r "$RUNS" --export-json "$work/p.json" \
    --prepare "bash -c 'mv $work/root $work/old/\$RANDOM\$RANDOM 2>/dev/null || true'" \
    "$P --data-root $work/root --run-root $work/run pull -q $ref" >/dev/null
  echo "pelagos pull:           $(median "$work/p.json")"
  hyperfine -N -w 1 -r "$RUNS" --export-json "$work/s.json" \
    --prepare "bash -c 'mv $work/sk $work/old/\$RANDOM\$RANDOM 2>/dev/null || true'" \
    "skopeo copy -q --src-tls-verify=false docker://$ref oci:$work/sk:x" >/dev/null
  echo "skopeo copy (no unpack): $(median "$work/s.json")"
  if [[ -S /var/run/docker.sock ]] && command -v docker >/dev/null; then
    hyperfine -N -w 1 -r "$RUNS" --export-json "$work/d.json" \
      --prepare "docker rmi -f $ref" "docker pull -q $ref" >/dev/null 2>&1 \
      && echo "dockerd pull:           $(median "$work/d.json")"
  fi
done
