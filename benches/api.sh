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
# The daemon's monitor spawner (a fork server; most of its pages are shared with the daemon).
sleep 0.2
for sp in $(pgrep -P "$pid" -f __spawner); do
  awk '/^Rss/ {r=$2} /^Pss:/ {p=$2} /^Private_Dirty/ {d=$2} END {printf "monitor spawner: RSS %.1f MiB, PSS %.1f MiB, private %.1f MiB\n", r/1024, p/1024, d/1024}' /proc/$sp/smaps_rollup
done

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
    st, d = req("POST", "/containers/create", json.dumps({"Image": "busybox", "Cmd": ["true"]}))
    cid = json.loads(d)["Id"]
    req("POST", f"/containers/{cid}/start")
    req("POST", f"/containers/{cid}/wait")
    req("DELETE", f"/containers/{cid}")
    times.append(time.monotonic() - t0)
print("median %.1f ms" % (statistics.median(times) * 1000))
PY
  echo "== [$1] 8 concurrent workers, full lifecycle (create/start/wait/delete) for 5 s"
  python3 - "${DOCKER_HOST#unix://}" <<'PY'
import http.client, json, socket, sys, threading, time
path = sys.argv[1]
class C(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX); self.sock.connect(path)
def req(m, u, body=None):
    c = C("localhost"); c.request(m, u, body=body, headers={"Content-Type": "application/json"})
    r = c.getresponse(); d = r.read(); c.close(); return r.status, d
done, errors, stop = [0], [0], time.monotonic() + 5
lock = threading.Lock()
def worker():
    while time.monotonic() < stop:
        st, d = req("POST", "/containers/create", json.dumps({"Image": "busybox", "Cmd": ["true"]}))
        if st != 201:
            with lock: errors[0] += 1
            continue
        cid = json.loads(d)["Id"]
        ok = req("POST", f"/containers/{cid}/start")[0] == 204
        ok &= json.loads(req("POST", f"/containers/{cid}/wait")[1]).get("StatusCode") == 0
        ok &= req("DELETE", f"/containers/{cid}")[0] == 204
        with lock:
            if ok: done[0] += 1
            else: errors[0] += 1
t0 = time.monotonic()
ts = [threading.Thread(target=worker) for _ in range(8)]
for t in ts: t.start()
for t in ts: t.join()
el = time.monotonic() - t0
print("%.1f containers/s (%d in %.1f s, %d errors)" % (done[0] / el, done[0], el, errors[0]))
PY
  echo "== [$1] docker logs of 200 MB"
  $DOCKER run -d --name bench-logs busybox sh -c \
    'yes 0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklm | head -c 200000000' >/dev/null
  $DOCKER wait bench-logs >/dev/null
  python3 - "$DOCKER" <<'PY'
import os, statistics, subprocess, sys, time
# Medians of 5 (LOG_RUNS) reads of the whole log, like the medians above: a single 1-2 s run swings
# with whatever else the VM's host is doing.
def into_pipe():
    t0 = time.monotonic()
    p = subprocess.Popen([sys.argv[1], "logs", "bench-logs"], stdout=subprocess.PIPE)
    n = 0
    while True:
        b = p.stdout.read(1 << 20)
        if not b: break
        n += len(b)
    p.wait()
    if n != 200000000:
        sys.exit("docker logs into a pipe: LOST BYTES: %d of 200000000" % n)
    return time.monotonic() - t0
# Into /dev/null (as `docker logs c >/dev/null`). Into a pipe the CLI's write(2) per
# 100-byte line wakes the reader each time, and that dominates.
def into_devnull():
    t0 = time.monotonic()
    subprocess.run([sys.argv[1], "logs", "bench-logs"], stdout=subprocess.DEVNULL, check=True)
    return time.monotonic() - t0
for name, f in (("into a pipe (lossless)", into_pipe), ("into /dev/null", into_devnull)):
    runs = [200000000 / f() / 1e6 for _ in range(int(os.environ.get("LOG_RUNS", "5")))]
    print("%s: median %.0f MB/s (runs: %s)" % (name, statistics.median(runs), " ".join("%.0f" % r for r in runs)))
PY
  python3 - "${DOCKER_HOST#unix://}" <<'PY'
import socket, sys, time
# The same log over the raw API (no docker CLI, whose per-frame write to stdout dominates
# for short lines).
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
t0 = time.monotonic()
s.sendall(b"GET /containers/bench-logs/logs?stdout=1&stderr=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
n = 0
while True:
    b = s.recv(1 << 20)
    if not b: break
    n += len(b)
el = time.monotonic() - t0
print("raw API: %d bytes (frames + chunking) in %.2f s: %.0f MB/s" % (n, el, n / el / 1e6))
PY
  $DOCKER rm -f bench-logs >/dev/null
  echo "== [$1] docker build (legacy builder): COPY + RUN + CMD, no cache ($((RUNS / 10 + 3)) runs)"
  local ctx=$work/build-ctx
  mkdir -p "$ctx"
  head -c 1000000 /dev/urandom > "$ctx/blob"
  printf 'FROM busybox\nCOPY blob /blob\nRUN md5sum /blob > /sum\nCMD ["cat", "/sum"]\n' > "$ctx/Dockerfile"
  hyperfine -N -w 1 -r $((RUNS / 10 + 3)) --export-json "$work/build.json" \
    "$DOCKER build -q -t bench-build $ctx" >/dev/null 2>&1
  echo "median $(median "$work/build.json") ms"
  $DOCKER rmi -f bench-build >/dev/null 2>&1 || true
}

bench_host pelagos
# What grows after the runs is mostly the binary's code pages (file-backed, shared with
# the spawner and monitors), not the heap.
echo "daemon RSS after the runs: $(rss "$pid") ($(awk '/RssAnon/ {a=$2} /RssFile/ {f=$2} END {printf "anonymous %.1f MiB, file %.1f MiB", a/1024, f/1024}' /proc/$pid/status))"
echo "== [pelagos] daemon memory per running container (50 x docker run -d sleep)"
before=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
for i in $(seq 50); do $DOCKER run -d --name "bench-idle-$i" busybox sleep 600 >/dev/null; done
after=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
echo "daemon RSS $((before / 1024)) MiB -> $((after / 1024)) MiB: $(( (after - before) / 50 )) KiB per container"
# Each container's monitor (Docker's counterpart is a containerd-shim per container).
for c in $($DOCKER ps -q --filter name=bench-idle); do
  m=$(awk '{print $4}' /proc/$($DOCKER inspect -f '{{.State.Pid}}' "$c")/stat)
  cat /proc/$m/smaps_rollup
done | awk '/^Pss:/ {p+=$2; n++} /^Private_Dirty/ {d+=$2} END {printf "per container monitor: PSS %d KiB, private %d KiB (mean of %d)\n", p/n, d/n, n}'
$DOCKER rm -f $($DOCKER ps -aq --filter name=bench-idle) >/dev/null
if [ -n "${COMPARE_DOCKER_HOST:-}" ]; then
  export DOCKER_HOST=$COMPARE_DOCKER_HOST
  $DOCKER load -q -i "$FX/busybox.tar" >/dev/null
  for d in dockerd containerd; do
    for p in $(pgrep -x $d); do echo "$d RSS before its runs: $(rss "$p")"; done
  done
  bench_host dockerd
fi
