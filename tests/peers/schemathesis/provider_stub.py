"""A loopback stand-in for every OAuth provider, for scripts/schemathesis.

Keyport runs with HTTP_PROXY/HTTPS_PROXY/ALL_PROXY pointing here, so every outbound request it
makes, whatever host the connection names, arrives at this one process on 127.0.0.1:

- plain http requests arrive in absolute form (`GET http://any.host/path`) and are answered as
  a provider would answer them: discovery documents naming the issuer asked for, tokens for the
  authorization_code, client_credentials, password and refresh_token grants (a token URL under
  `/expiring/` gives tokens with `expires_in: 0`), `invalid_grant` for the made-up code of a
  connection test, 200 for revocation;
- https requests arrive as `CONNECT host:443`; they are refused (403), so no byte goes further
  and Keyport sees an unreachable provider. The fuzzer is pointed at http URLs on this stub
  instead (see schemathesis.toml in the script).

It never resolves or connects to anything itself. Usage: provider_stub.py PORT_FILE LOG_FILE;
it listens on a free loopback port and writes the port to PORT_FILE once it is listening.
"""

import json
import os
import secrets
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

WELL_KNOWN_OIDC = "/.well-known/openid-configuration"
WELL_KNOWN_RFC8414 = "/.well-known/oauth-authorization-server"


class Provider(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "keyport-provider-stub"

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        # Method and target only: no headers, no bodies (they carry client secrets).
        self.server.log.write("%s %s\n" % (self.command, self.target()))
        self.server.log.flush()

    def log_request(self, code="-", size="-"):
        # Each handler logs its request once, on arrival; the answer is not logged again.
        pass

    def target(self):
        """The origin and path asked for, from the absolute form or from the Host header."""
        if self.path.startswith("http://") or self.path.startswith("https://"):
            parts = urlsplit(self.path)
            return "%s://%s%s" % (parts.scheme, parts.netloc, parts.path)
        return "http://%s%s" % (self.headers.get("Host", "127.0.0.1"), urlsplit(self.path).path)

    def answer(self, status, document=None):
        body = b"" if document is None else json.dumps(document).encode()
        self.send_response(status)
        if document is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_CONNECT(self):
        self.log_message("")
        self.send_response(403)
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def do_GET(self):
        self.log_message("")
        url = self.target()
        parts = urlsplit(url)
        origin = "%s://%s" % (parts.scheme, parts.netloc)
        if parts.path.endswith(WELL_KNOWN_OIDC):
            issuer = url[: -len(WELL_KNOWN_OIDC)]
        elif parts.path.startswith(WELL_KNOWN_RFC8414):
            issuer = origin + parts.path[len(WELL_KNOWN_RFC8414) :]
        else:
            return self.answer(404, {"error": "not_found"})
        self.answer(
            200,
            {
                "issuer": issuer,
                "authorization_endpoint": origin + "/authorize",
                "token_endpoint": origin + "/token",
                "revocation_endpoint": origin + "/revoke",
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "code_challenge_methods_supported": ["S256"],
            },
        )

    def do_POST(self):
        self.log_message("")
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(length).decode("utf-8", "replace"))
        grant = (form.get("grant_type") or [""])[0]
        if "token" in form and not grant:
            return self.answer(200)  # RFC 7009 revocation
        if grant == "authorization_code" and form.get("code") == ["keyport-connection-test"]:
            return self.answer(400, {"error": "invalid_grant", "error_description": "unknown code"})
        if grant not in ("authorization_code", "client_credentials", "password", "refresh_token"):
            return self.answer(400, {"error": "unsupported_grant_type"})
        # A token endpoint under /expiring/ hands out tokens that are due for a refresh at once.
        lifetime = 0 if "/expiring/" in urlsplit(self.target()).path else 3600
        token = {"access_token": secrets.token_urlsafe(24), "token_type": "Bearer", "expires_in": lifetime}
        if grant != "client_credentials":
            token["refresh_token"] = secrets.token_urlsafe(24)
        self.answer(200, token)

    def _refuse(self):
        self.log_message("")
        self.answer(405, {"error": "method_not_allowed"})

    do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _refuse


def main():
    port_file, log_file = sys.argv[1], sys.argv[2]
    server = ThreadingHTTPServer(("127.0.0.1", 0), Provider)
    server.daemon_threads = True
    server.log = open(log_file, "a", encoding="utf-8")
    with open(port_file + ".tmp", "w", encoding="utf-8") as f:
        f.write(str(server.server_address[1]))
    os.replace(port_file + ".tmp", port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
