#!/usr/bin/env bash
# Starts/stops three local OCI registries (Debian's docker-registry, the CNCF distribution
# registry) on loopback for the pull/push tests: an open one on $PELAGOS_TEST_REGISTRY, one
# with htpasswd basic auth (user pelagos, password pelagos-secret) on the next port, and one
# with anonymous bearer-token auth (like Docker Hub) on the port after, whose token server
# (integration/token_server.py) listens on the port after that.
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
    rm -rf "$DIR" && mkdir -p "$DIR/data" "$DIR/data-auth" "$DIR/data-token"
    htpasswd -Bbn pelagos pelagos-secret > "$DIR/htpasswd"
    HOST=${ADDR%:*}; PORT=${ADDR#*:}
    AUTH_ADDR="$HOST:$(( PORT + 1 ))"
    TOKEN_ADDR="$HOST:$(( PORT + 2 ))"
    ISSUER_ADDR="$HOST:$(( PORT + 3 ))"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=pelagos-test-token \
        -keyout "$DIR/token.key" -out "$DIR/token.crt" >/dev/null 2>&1
    nohup python3 "$(dirname "$0")/token_server.py" "$ISSUER_ADDR" "$DIR/token.key" \
        "$DIR/token.crt" pelagos-test-issuer pelagos-test > "$DIR/token-server.log" 2>&1 &
    echo $! > "$DIR/token-server.pid"
    for which in open auth token; do
        case $which in
        open) addr=$ADDR; data=$DIR/data; auth="" ;;
        auth) addr=$AUTH_ADDR; data=$DIR/data-auth
            auth="auth: {htpasswd: {realm: pelagos-test, path: $DIR/htpasswd}}" ;;
        token) addr=$TOKEN_ADDR; data=$DIR/data-token
            auth="auth: {token: {realm: 'http://$ISSUER_ADDR/token', service: pelagos-test, issuer: pelagos-test-issuer, rootcertbundle: $DIR/token.crt}}" ;;
        esac
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
    for which in open auth token token-server; do
        [ -f "$DIR/$which.pid" ] && kill "$(cat "$DIR/$which.pid")" 2>/dev/null || true
        rm -f "$DIR/$which.pid"
    done
    ;;
*) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
