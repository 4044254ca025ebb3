#!/usr/bin/env bash
# Starts/stops two local OCI registries (Debian's docker-registry, the CNCF distribution
# registry) on loopback for the pull/push tests: an open one on $PELAGOS_TEST_REGISTRY and
# one with htpasswd basic auth (user pelagos, password pelagos-secret) on the next port.
# State lives in $REGISTRY_DIR.
#   bash integration/registry.sh start|stop
set -euo pipefail
ADDR=${PELAGOS_TEST_REGISTRY:-127.0.0.1:5055}
DIR=${REGISTRY_DIR:-/tmp/pelagos-test-registry}
case "${1:-}" in
start)
    command -v docker-registry >/dev/null && command -v htpasswd >/dev/null || {
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry apache2-utils >/dev/null
    }
    "$0" stop >/dev/null 2>&1 || true
    rm -rf "$DIR" && mkdir -p "$DIR/data" "$DIR/data-auth"
    htpasswd -Bbn pelagos pelagos-secret > "$DIR/htpasswd"
    AUTH_ADDR="${ADDR%:*}:$(( ${ADDR#*:} + 1 ))"
    for which in open auth; do
        if [ $which = open ]; then addr=$ADDR; data=$DIR/data; auth=""; else
            addr=$AUTH_ADDR; data=$DIR/data-auth
            auth="auth: {htpasswd: {realm: pelagos-test, path: $DIR/htpasswd}}"
        fi
        cat > "$DIR/$which.yml" <<CFG
version: 0.1
storage:
  filesystem:
    rootdirectory: $data
  delete:
    enabled: true
http:
  addr: $addr
log:
  level: warn
$auth
CFG
        nohup docker-registry serve "$DIR/$which.yml" > "$DIR/$which.log" 2>&1 &
        echo $! > "$DIR/$which.pid"
        up=""
        for _ in $(seq 1 100); do
            if (exec 3<>"/dev/tcp/${addr%:*}/${addr#*:}") 2>/dev/null; then up=1; break; fi
            sleep 0.1
        done
        [ -n "$up" ] || { echo "registry $which did not start:" >&2; cat "$DIR/$which.log" >&2; exit 1; }
        echo "registry ($which) up on $addr"
    done
    ;;
stop)
    for which in open auth; do
        [ -f "$DIR/$which.pid" ] && kill "$(cat "$DIR/$which.pid")" 2>/dev/null || true
        rm -f "$DIR/$which.pid"
    done
    ;;
*) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
