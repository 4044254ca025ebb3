#!/usr/bin/env bash
# Starts/stops a local OCI registry (Debian's docker-registry, the CNCF distribution
# registry) on loopback for the pull/push tests. State lives in $REGISTRY_DIR.
#   bash integration/registry.sh start|stop
set -euo pipefail
ADDR=${PELAGOS_TEST_REGISTRY:-127.0.0.1:5055}
DIR=${REGISTRY_DIR:-/tmp/pelagos-test-registry}
case "${1:-}" in
start)
    command -v docker-registry >/dev/null || {
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry >/dev/null
    }
    "$0" stop >/dev/null 2>&1 || true
    rm -rf "$DIR" && mkdir -p "$DIR/data"
    cat > "$DIR/config.yml" <<CFG
version: 0.1
storage:
  filesystem:
    rootdirectory: $DIR/data
  delete:
    enabled: true
http:
  addr: $ADDR
log:
  level: warn
CFG
    nohup docker-registry serve "$DIR/config.yml" > "$DIR/log" 2>&1 &
    echo $! > "$DIR/pid"
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/${ADDR%:*}/${ADDR#*:}") 2>/dev/null; then
            echo "registry up on $ADDR"
            exit 0
        fi
        sleep 0.1
    done
    echo "registry did not start:" >&2; cat "$DIR/log" >&2; exit 1
    ;;
stop)
    [ -f "$DIR/pid" ] && kill "$(cat "$DIR/pid")" 2>/dev/null || true
    rm -f "$DIR/pid"
    ;;
*) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
