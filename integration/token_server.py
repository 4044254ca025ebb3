#!/usr/bin/env python3
"""A minimal anonymous token server for the distribution registry's `token` auth, as
Docker Hub's auth.docker.io works: any client gets a short-lived RS256 JWT granting the
scope it asks for. Test scaffolding only (pelagos' bearer-token test).

    token_server.py ADDR KEY.pem CERT.pem ISSUER SERVICE

The JWT carries the signing certificate in `x5c`; the registry trusts it through
`rootcertbundle`. Signing goes through the `openssl` CLI, so only the stdlib is needed.
"""
import base64
import json
import os
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

ADDR, KEY, CERT, ISSUER, SERVICE = sys.argv[1:6]


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def cert_der():
    out = subprocess.run(["openssl", "x509", "-in", CERT, "-outform", "DER"], check=True, capture_output=True)
    return base64.b64encode(out.stdout).decode()


X5C = cert_der()


def token(scopes):
    access = []
    for s in scopes:
        parts = s.split(":")
        if len(parts) >= 3:
            access.append({"type": parts[0], "name": ":".join(parts[1:-1]), "actions": parts[-1].split(",")})
    now = int(time.time())
    header = {"alg": "RS256", "typ": "JWT", "x5c": [X5C]}
    claims = {"iss": ISSUER, "sub": "", "aud": SERVICE, "exp": now + 300, "nbf": now - 10,
              "iat": now, "jti": b64(os.urandom(12)), "access": access}
    signing_input = (b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())).encode()
    sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", KEY], input=signing_input,
                         check=True, capture_output=True).stdout
    return signing_input.decode() + "." + b64(sig)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        url = urlparse(self.path)
        if url.path != "/token":
            self.send_error(404)
            return
        q = parse_qs(url.query)
        t = token(q.get("scope", []))
        body = json.dumps({"token": t, "access_token": t, "expires_in": 300}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        sys.stderr.write("token: " + (fmt % args) + "\n")


host, port = ADDR.rsplit(":", 1)
ThreadingHTTPServer((host, int(port)), Handler).serve_forever()
