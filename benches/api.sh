#!/usr/bin/env bash
# Docker API daemon benchmarks (not tests): the real docker CLI against `pelagos daemon`,
# and against Debian's dockerd when COMPARE_DOCKER_HOST names a running one (same CLI).
# Needs root, hyperfine, python3, the fixtures and a release build.
#   bash benches/api.sh            (after `make fixtures` and `cargo build --release`)
set -euo pipefail
cd "$(dirname "$0")/.."
P=${PELAGOS:-$PWD/target/release/pelagos}
FX=${FIXTURES:-$PWD/integration/fixtures/out}
RUNS=${RUNS:-50}
DOCKER=${DOCKER:-/usr/local/bin/docker}
command -v hyperfine >/dev/null || { apt-get install -y -qq hyperfine >/dev/null; }
work=$(mktemp -d /tmp/pelagos-api-bench.XXXXXX)
sock=$work/d.sock
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  $P --data-root "$work/data" --run-root "$work/run" rm -f bench-exec >/dev/null 2>&1 || true
  # This root's bridge and nftables table.
  $P --data-root "$work/data" --run-root "$work/run" network destroy-all >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
export PELAGOS_DATA_ROOT=$work/data PELAGOS_RUN_ROOT=$work/run PELAGOS_CONFIG=$work/daemon.json
# Containers here never need the outside: leave the host's ip_forward alone, resolve via loopback.
echo '{"ip-forward": false, "dns": ["127.0.0.1"]}' > "$PELAGOS_CONFIG"
$P load -q -i "$FX/busybox.tar"

echo "== daemon start to first ping"
python3 - "$P" "$sock" "$work/pid" <<'PY'
import os, socket, subprocess, sys, time
p, sock, pidfile = sys.argv[1:]
t0 = time.monotonic()
proc = subprocess.Popen([p, "daemon", "-H", "unix://" + sock], stdout=subprocess.DEVNULL)
while True:
    try:
        s = socket.socket(socket.AF_UNIX); s.connect(sock)
        s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
        if s.recv(64).startswith(b"HTTP/1.1 200"):
            break
    except OSError:
        time.sleep(0.0005)
print("start to first ping: %.1f ms" % ((time.monotonic() - t0) * 1000))
open(pidfile, "w").write(str(proc.pid))
PY
pid=$(cat "$work/pid")
export DOCKER_HOST=unix://$sock
rss() { awk '/VmRSS/ {printf "%.1f MiB\n", $2/1024}' /proc/$1/status; }
echo "idle daemon RSS: $(rss "$pid")"

median() { python3 -c 'import json,sys; print("%.1f" % (json.load(open(sys.argv[1]))["results"][0]["median"]*1000))' "$1"; }

bench_host() { # label
  echo "== [$1] docker run --rm busybox true ($RUNS runs)"
  hyperfine -N -w 5 -r "$RUNS" --export-json "$work/run.json" "$DOCKER run --rm busybox true" >/dev/null
  echo "median $(median "$work/run.json") ms"
  $DOCKER run -d --name bench-exec busybox sleep 600 >/dev/null
  echo "== [$1] docker exec bench-exec true ($RUNS runs)"
  hyperfine -N -w 5 -r "$RUNS" --export-json "$work/exec.json" "$DOCKER exec bench-exec true" >/dev/null
  echo "median $(median "$work/exec.json") ms"
  $DOCKER rm -f bench-exec >/dev/null
  echo "== [$1] API create -> start -> wait -> delete ($RUNS runs)"
  python3 - "${DOCKER_HOST#unix://}" "$RUNS" <<'PY'
import http.client, json, socket, statistics, sys, time
path, runs = sys.argv[1], int(sys.argv[2])
class C(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX); self.sock.connect(path)
def req(m, u, body=None):
    c = C("localhost"); c.request(m, u, body=body, headers={"Content-Type": "application/json"})
    r = c.getresponse(); d = r.read(); c.close(); return r.status, d
times = []
for _ in range(runs):
    t0 = time.monotonic()
    st, d = req("POST", "/v1.47/containers/create", json.dumps({"Image": "busybox", "Cmd": ["true"]}))
    cid = json.loads(d)["Id"]
    req("POST", f"/v1.47/containers/{cid}/start")
    req("POST", f"/v1.47/containers/{cid}/wait")
    req("DELETE", f"/v1.47/containers/{cid}")
    times.append(time.monotonic() - t0)
print("median %.1f ms" % (statistics.median(times) * 1000))
PY
}

bench_host pelagos
echo "daemon RSS after the runs: $(rss "$pid")"
if [ -n "${COMPARE_DOCKER_HOST:-}" ]; then
  export DOCKER_HOST=$COMPARE_DOCKER_HOST
  $DOCKER load -q -i "$FX/busybox.tar" >/dev/null
  bench_host dockerd
fi
