#!/usr/bin/python3
"""Docker-Hub-like token issuer for distribution's `auth: token` mode (frun tests only).

usage: token-issuer.py --listen 127.0.0.1:5003 --key key.pem --cert cert.pem
                       [--issuer frun-test-issuer] [--service registry.test]
                       [--user frun --password secret]

GET  /token?service=S&scope=repository:NAME:pull[,push]&scope=...   (optionally Basic auth)
POST /token  (form: grant_type=password, username, password, service, scope; OAuth2 style)

Policy (like Docker Hub):
  - wrong credentials                  -> 401
  - anonymous, repository not private/* -> "pull" only (push etc. are dropped)
  - anonymous, private/*                -> token with no access for it (registry answers 401)
  - frun:secret                         -> every requested action (pull, push, delete, *),
                                           on any repository; also registry:catalog:*
Answer: {"token", "access_token", "expires_in": 300, "issued_at"}. The JWT is RS256 with
the DER certificate in the `x5c` header; claims iss, sub, aud (= requested service),
exp, nbf, iat, jti, access.
Every request is logged on stderr (one line each), and counted at GET /stats (JSON).
"""

import argparse
import base64
import datetime
import json
import secrets
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization

EXPIRES_IN = 300
ALLOWED_ACTIONS = ("pull", "push", "delete", "*")


def parse_scope(s):
    """repository:NAME:pull,push -> (type, name, [actions]). NAME may contain ':' (ports)."""
    parts = s.split(":")
    if len(parts) < 3:
        return None
    typ, actions = parts[0], parts[-1]
    name = ":".join(parts[1:-1])
    return typ, name, [a for a in actions.split(",") if a]


class Issuer:
    def __init__(self, key_pem, cert_pem, issuer, service, user, password):
        self.key = serialization.load_pem_private_key(key_pem, password=None)
        cert = x509.load_pem_x509_certificate(cert_pem)
        self.x5c = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
        self.issuer, self.service = issuer, service
        self.user, self.password = user, password
        self.lock = threading.Lock()
        self.stats = {"requests": 0, "issued": 0, "denied": 0}

    def grant(self, authed, scopes):
        access = []
        for s in scopes:
            p = parse_scope(s)
            if p is None:
                continue
            typ, name, actions = p
            if typ == "repository":
                if authed:
                    allowed = [a for a in actions if a in ALLOWED_ACTIONS]
                elif name.startswith("private/"):
                    allowed = []
                else:
                    allowed = [a for a in actions if a == "pull"]
            elif typ == "registry" and name == "catalog" and authed:
                allowed = [a for a in actions if a == "*"]
            else:
                allowed = []
            if allowed:
                # merge with an earlier grant for the same resource
                for a in access:
                    if a["type"] == typ and a["name"] == name:
                        a["actions"] = sorted(set(a["actions"]) | set(allowed))
                        break
                else:
                    access.append({"type": typ, "name": name, "actions": allowed})
        return access

    def token(self, subject, service, access):
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": service,
            "exp": now + EXPIRES_IN,
            "nbf": now - 1,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": access,
        }
        tok = jwt.encode(claims, self.key, algorithm="RS256",
                         headers={"typ": "JWT", "x5c": self.x5c})
        issued = datetime.datetime.fromtimestamp(now, datetime.timezone.utc)
        return {"token": tok, "access_token": tok, "expires_in": EXPIRES_IN,
                "issued_at": issued.strftime("%Y-%m-%dT%H:%M:%SZ")}


class Handler(BaseHTTPRequestHandler):
    server_version = "frun-token-issuer/1"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (time.strftime("%H:%M:%S"), fmt % args))

    def _send(self, code, obj, extra_headers=()):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra_headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _basic(self):
        h = self.headers.get("Authorization", "")
        if not h.lower().startswith("basic "):
            return None
        try:
            u, _, p = base64.b64decode(h[6:].strip()).decode().partition(":")
        except Exception:
            return ("", "\0invalid")
        return u, p

    def _issue(self, creds, service, scopes):
        iss = self.server.issuer
        with iss.lock:
            iss.stats["requests"] += 1
        if creds is not None and creds != (iss.user, iss.password):
            with iss.lock:
                iss.stats["denied"] += 1
            self.log_message("token DENIED user=%r scopes=%r", creds[0], scopes)
            return self._send(401, {"details": "incorrect username or password"},
                              [("WWW-Authenticate", 'Basic realm="frun-test-issuer"')])
        authed = creds is not None
        access = iss.grant(authed, scopes)
        with iss.lock:
            iss.stats["issued"] += 1
        subject = creds[0] if authed else ""
        self.log_message("token user=%r service=%r scopes=%r -> %r", subject, service, scopes, access)
        self._send(200, iss.token(subject, service or iss.service, access))

    def do_GET(self):
        u = urllib.parse.urlsplit(self.path)
        if u.path == "/stats":
            return self._send(200, self.server.issuer.stats)
        if u.path != "/token":
            return self._send(404, {"details": "not found"})
        q = urllib.parse.parse_qs(u.query)
        scopes = [s for v in q.get("scope", []) for s in v.split(" ") if s]
        self._issue(self._basic(), q.get("service", [""])[0], scopes)

    def do_POST(self):
        u = urllib.parse.urlsplit(self.path)
        if u.path != "/token":
            return self._send(404, {"details": "not found"})
        n = int(self.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(self.rfile.read(n).decode())
        creds = self._basic()
        if form.get("grant_type", [""])[0] == "password":
            creds = (form.get("username", [""])[0], form.get("password", [""])[0])
        elif form.get("grant_type", [""])[0] == "refresh_token":
            return self._send(400, {"details": "refresh tokens are not supported"})
        scopes = [s for v in form.get("scope", []) for s in v.split(" ") if s]
        self._issue(creds, form.get("service", [""])[0], scopes)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", default="127.0.0.1:5003")
    ap.add_argument("--key", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--issuer", default="frun-test-issuer")
    ap.add_argument("--service", default="registry.test")
    ap.add_argument("--user", default="frun")
    ap.add_argument("--password", default="secret")
    a = ap.parse_args()
    host, _, port = a.listen.rpartition(":")
    with open(a.key, "rb") as f:
        key = f.read()
    with open(a.cert, "rb") as f:
        cert = f.read()
    srv = ThreadingHTTPServer((host, int(port)), Handler)
    srv.daemon_threads = True
    srv.issuer = Issuer(key, cert, a.issuer, a.service, a.user, a.password)
    sys.stderr.write("token issuer listening on %s\n" % a.listen)
    sys.stderr.flush()
    srv.serve_forever()


if __name__ == "__main__":
    main()
