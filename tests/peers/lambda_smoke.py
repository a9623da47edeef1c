"""The Lambda smoke test: the release bootstraps that are deployed, each polling a Lambda
Runtime API served here (`RuntimeApi`), invoked with the sample events of events/ over a real
flow on moto with a loopback provider (tests/peers/schemathesis/provider_stub.py):

connections are created, read, changed, tested and audited; a client_credentials token is read
and refreshed; an authorization is started, called back and confirmed; the scheduled refresher
refreshes a due token (report: refreshed 1); run as the scheduler of the workers it queues the
due shards on SQS (moto) instead, and the refresh worker, handed those messages as an SQS
event, refreshes the token made due again; two connections are deleted with their tokens left
to the refresher (202), whose next run revokes them (report: deleted_connection_tokens_revoked
2); the deleted connection's token is then a 404.

The Runtime API is served here rather than by `cargo lambda watch --only-lambda-apis` because
that emulator sends `Lambda-Runtime-Deadline-Ms: 600000` (a duration), where Lambda sends the
deadline as epoch milliseconds: every invocation would start past its deadline. Here each
invocation gets the deadline of its function's timeout in infra/template.yaml.

Usage (from scripts/smoke-lambda, with the moto virtualenv's python, which has boto3):
lambda_smoke.py ROOT WORK_DIR. Everything listens on 127.0.0.1 only.
"""

import json
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import yaml

ROOT, WORK = sys.argv[1], sys.argv[2]
# Where cargo left the bootstraps and the keyport binary.
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
PLACEHOLDER_ID = "con_0123456789abcdef0123456789abcdef"
FUNCTIONS = ["connections", "authorize", "callback", "token", "refresher", "refresh-worker", "console"]
# Each running bootstrap: its name here, the function it is, and its own environment. The
# refresher runs twice: on its own (it refreshes every shard itself), and as the scheduler of
# the workers (it queues the due shards on SQS for the refresh worker).
INSTANCES = {name: (name, {}) for name in FUNCTIONS}
INSTANCES["scheduler"] = ("refresher", {"KEYPORT_REFRESH_QUEUE_URL": None})
TABLE = "keyport-smoke"
CALLBACK_URL = "https://keyport.example.com/oauth/callback"
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# The oidc-provider peer's console client (tests/peers/oidc/config.mjs) and its secret.
CONSOLE_CLIENT_ID = "keyport-console"
CONSOLE_CLIENT_SECRET = "s3cr:t+/=%&x?#y"
CONSOLE_CALLBACK = urllib.parse.urljoin(CALLBACK_URL, "/console/signin/callback")
# What every console response carries (shared/src/http/console/assets.rs).
CONSOLE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
               "connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; "
               "base-uri 'none'")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


NO_REDIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirect())


def consent_at_peer(authorization_url, callback):
    """Walks the peer's redirects as a browser would (it logs its test user in and consents on
    its own), with a cookie jar, until it sends the browser to `callback`: that query."""
    jar, url = {}, authorization_url
    for _ in range(20):
        if url.startswith(callback):
            return urllib.parse.urlsplit(url).query
        request = urllib.request.Request(url, headers={"Cookie": "; ".join(f"{k}={v}" for k, v in jar.items())})
        try:
            response = NO_REDIRECT.open(request, timeout=10)
        except urllib.error.HTTPError as redirect:
            response = redirect
        for header in response.headers.get_all("Set-Cookie") or []:
            name, _, value = header.split(";", 1)[0].partition("=")
            jar[name.strip()] = value.strip()
        location = response.headers.get("Location")
        if not (300 <= response.status < 400 and location):
            raise SystemExit(f"error: the OIDC peer stopped the sign-in with {response.status}")
        url = urllib.parse.urljoin(url, location)
    raise SystemExit("error: too many redirects at the OIDC peer")

def template_timeouts():
    """Each function's timeout in infra/template.yaml (its own, or the Globals'), by the folder
    its code is built from: the emulator gives each invocation that deadline."""

    class Template(yaml.SafeLoader):
        pass

    # CloudFormation's short forms (!Ref, !Sub, !GetAtt …) read as plain values.
    Template.add_multi_constructor("!", lambda loader, suffix, node: None)
    with open(os.path.join(ROOT, "infra/template.yaml"), encoding="utf-8") as f:
        template = yaml.load(f, Template)
    default = template["Globals"]["Function"]["Timeout"]
    return {
        os.path.basename(resource["Properties"]["CodeUri"]): resource["Properties"].get("Timeout", default)
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::Serverless::Function"
    }


processes = []
failures = []


class RuntimeApi(ThreadingHTTPServer):
    """The Lambda Runtime API (2018-06-01) of one function: `next` hands out one queued event
    with Lambda's headers (the deadline as epoch milliseconds), `response` and `error` answer
    it. https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html"""

    daemon_threads = True

    def __init__(self, timeout_seconds):
        super().__init__(("127.0.0.1", 0), RuntimeHandler)
        self.timeout_seconds = timeout_seconds
        self.events = queue.Queue()
        self.answers = {}
        self.answered = threading.Condition()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def address(self):
        return f"127.0.0.1:{self.server_address[1]}"

    def invoke(self, value):
        request_id = str(uuid.uuid4())
        self.events.put((request_id, value))
        with self.answered:
            if not self.answered.wait_for(lambda: request_id in self.answers, self.timeout_seconds + 10):
                raise SystemExit("error: an invocation got no answer within its timeout")
            kind, body = self.answers.pop(request_id)
        if kind != "response":
            raise SystemExit(f"error: the function answered an invocation with an error: {body[:500]}")
        return json.loads(body)


class RuntimeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass

    def reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path != "/2018-06-01/runtime/invocation/next":
            return self.reply(404)
        request_id, value = self.server.events.get()
        deadline_ms = int(time.time() * 1000) + self.server.timeout_seconds * 1000
        self.reply(200, json.dumps(value).encode(), [
            ("Content-Type", "application/json"),
            ("Lambda-Runtime-Aws-Request-Id", request_id),
            ("Lambda-Runtime-Deadline-Ms", str(deadline_ms)),
            ("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:smoke"),
            ("Lambda-Runtime-Trace-Id", f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Sampled=0"),
        ])

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode("utf-8", "replace")
        parts = self.path.strip("/").split("/")
        if parts[:3] == ["2018-06-01", "runtime", "invocation"] and len(parts) == 5 and parts[4] in ("response", "error"):
            with self.server.answered:
                self.server.answers[parts[3]] = (parts[4], body)
                self.server.answered.notify_all()
            return self.reply(202)
        if parts == ["2018-06-01", "runtime", "init", "error"]:
            print(f"FAIL  a function failed to start: {body[:500]}")
            failures.append("init")
            return self.reply(202)
        self.reply(404)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args, log, env=None):
    out = open(os.path.join(WORK, log), "ab")
    process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    processes.append(process)
    return process


def wait_for(url, what):
    """Polls until `url` answers at all (any HTTP status), at most 60 s."""
    for _ in range(600):
        try:
            NO_PROXY.open(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"error: {what} did not come up at {url}")


def check(what, condition, detail=""):
    if condition:
        print(f"ok    {what}")
    else:
        print(f"FAIL  {what}: {detail}")
        failures.append(what)


def event(file, connection_id=None, body=None, query=None):
    with open(os.path.join(ROOT, "events", file), encoding="utf-8") as f:
        text = f.read()
    if connection_id:
        text = text.replace(PLACEHOLDER_ID, connection_id)
    value = json.loads(text)
    if body is not None:
        value["body"] = json.dumps(body)
    if query is not None:
        value["rawQueryString"] = urllib.parse.urlencode(query)
        value["queryStringParameters"] = query
    return value


def invoke(function, value):
    """One invocation of `function`: its answer, as JSON."""
    return runtimes[function].invoke(value)


def http(function, file, status, **kwargs):
    """Invokes an HTTP function with an event; checks the status; returns the body (JSON when
    it is JSON)."""
    answer = invoke(function, event(file, **kwargs))
    got = answer.get("statusCode")
    body = answer.get("body") or ""
    check(f"{function} {file} -> {status}", got == status, f"got {got}: {body[:300]}")
    try:
        return json.loads(body) if body else None
    except ValueError:
        return body


def console_answer(value):
    """The console function's answer to an event: status, headers, cookies set, body."""
    answer = invoke("console", value)
    body = answer.get("body") or ""
    if answer.get("isBase64Encoded"):
        import base64
        body = base64.b64decode(body).decode("utf-8", "replace")
    headers = {k.lower(): v for k, v in (answer.get("headers") or {}).items()}
    return answer.get("statusCode"), headers, answer.get("cookies") or [], body


def with_cookies(value, cookies, query=None, path=None):
    """A console event carrying the browser's `cookies` (payload 2.0 lists them apart)."""
    value["cookies"] = [c.split(";", 1)[0] for c in cookies]
    if query is not None:
        value["rawQueryString"] = query
        value["queryStringParameters"] = dict(urllib.parse.parse_qsl(query))
    if path is not None:
        value["rawPath"] = path
        value["requestContext"]["http"]["path"] = path
    return value


def report():
    answer = invoke("refresher", event("refresher-scheduled.json"))
    print(f"      refresher report: {json.dumps(answer)}")
    return answer


try:
    # The AWS services, the provider and the table.
    moto_port = free_port()
    start([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)], "moto.log")
    moto = f"http://127.0.0.1:{moto_port}"
    wait_for(f"{moto}/moto-api/", "moto")
    aws_env = {
        "AWS_ENDPOINT_URL": moto,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    os.environ.update(aws_env)
    key_id = boto3.client("kms").create_key()["KeyMetadata"]["KeyId"]
    subprocess.run(
        [os.path.join(TARGET, "debug/keyport"), "create-table", "--table", TABLE],
        check=True,
        cwd=ROOT,
    )
    stub_port_file = os.path.join(WORK, "stub.port")
    start([sys.executable, os.path.join(ROOT, "tests/peers/schemathesis/provider_stub.py"), stub_port_file,
           os.path.join(WORK, "stub.log")], "stub.out")
    for _ in range(300):
        if os.path.exists(stub_port_file):
            break
        time.sleep(0.1)
    stub = f"http://127.0.0.1:{open(stub_port_file).read().strip()}"

    queue_url = boto3.client("sqs").create_queue(QueueName="keyport-smoke-work")["QueueUrl"]

    # The console's identity provider: the oidc-provider peer with the console's client, and
    # the client secret where the template keeps it (a secret named as CloudFormation names it).
    peer = subprocess.Popen(
        ["node", os.path.join(ROOT, "tests/peers/oidc/server.mjs")],
        cwd=os.path.join(ROOT, "tests/peers/oidc"),
        env={**os.environ, "PORT": "0", "CONSOLE_REDIRECT_URIS": CONSOLE_CALLBACK},
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(os.path.join(WORK, "oidc.log"), "ab"),
    )
    processes.append(peer)
    ready = peer.stdout.readline().decode().strip()
    if not ready.startswith("READY "):
        raise SystemExit(f"error: the OIDC peer did not start (said {ready!r})")
    issuer = f"http://127.0.0.1:{ready.split()[1]}"
    console_secret_arn = boto3.client("secretsmanager").create_secret(
        Name="ConsoleSignInSecret-smoke", SecretString=CONSOLE_CLIENT_SECRET)["ARN"]
    INSTANCES["console"] = ("console", {
        "KEYPORT_CONSOLE_OIDC_ISSUER": issuer,
        "KEYPORT_CONSOLE_OIDC_CLIENT_ID": CONSOLE_CLIENT_ID,
        "KEYPORT_CONSOLE_OIDC_CLIENT_SECRET_ARN": console_secret_arn,
        # The claim the peer lists roles in (the API's roles claim, which the console reads).
        "KEYPORT_ROLES_CLAIM": "roles",
        "KEYPORT_REFRESH_QUEUE_URL": None,
    })

    # Each function: its Runtime API, and its release bootstrap polling it.
    timeouts = template_timeouts()
    runtimes = {}
    for instance, (function, own_env) in INSTANCES.items():
        runtimes[instance] = RuntimeApi(timeouts[function])
        env = {
            "PATH": os.environ["PATH"],
            **aws_env,
            "AWS_LAMBDA_RUNTIME_API": runtimes[instance].address,
            "AWS_LAMBDA_FUNCTION_NAME": f"keyport-smoke-{function}",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_STREAM_NAME": f"smoke/{function}",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/keyport-smoke-{function}",
            "KEYPORT_TABLE": TABLE,
            "KEYPORT_KMS_KEY_ID": key_id,
            "KEYPORT_CALLBACK_URL": CALLBACK_URL,
            # The provider is a loopback stub over http.
            "KEYPORT_LOCAL_DEVELOPMENT": "true",
            # A delete leaves every token to the refresher: the deletion's second half runs.
            "KEYPORT_DELETE_IN_LINE_TOKENS": "0",
            "RUST_LOG": "info",
        }
        env.update({name: value or queue_url for name, value in own_env.items()})
        start([os.path.join(TARGET, "lambda", function, "bootstrap")], f"{instance}.log", env=env)

    # The connections function: providers, two connections on the stub, every route of its own.
    http("connections", "providers-list.json", 200)
    machine = http("connections", "connections-create.json", 201, body={
        "name": "smoke machine", "provider": "custom", "grant_type": "client_credentials",
        "client_id": "smoke", "client_secret": "smoke-secret", "token_url": f"{stub}/token",
        "revocation_url": f"{stub}/revoke", "scopes": "api:read", "invited_roles": ["bots"],
    })["id"]
    interactive = http("connections", "connections-create.json", 201, body={
        "name": "smoke interactive", "provider": "custom", "grant_type": "authorization_code",
        "client_id": "smoke", "client_secret": "smoke-secret",
        "authorization_url": f"{stub}/authorize", "token_url": f"{stub}/token",
        "revocation_url": f"{stub}/revoke", "scopes": "api:read,offline_access",
        "invited_roles": ["bots"],
    })["id"]
    listed = http("connections", "connections-list.json", 200)
    check("both connections are listed",
          {c["id"] for c in listed["connections"]} == {machine, interactive}, listed)
    http("connections", "connections-get.json", 200, connection_id=machine)
    http("connections", "connections-update.json", 200, connection_id=machine,
         body={"description": "changed by the smoke test"})
    tested = http("connections", "connections-test.json", 200, connection_id=machine)
    check("the connection test reaches the provider", tested["ok"] is True, tested)
    audit = http("connections", "connections-audit.json", 200, connection_id=machine)
    check("the audit trail records the create", any(e["action"] == "connection_created" for e in audit["events"]), audit)

    # The token function over the client_credentials connection.
    token = http("token", "token-get.json", 200, connection_id=machine)
    check("a token is handed out", bool(token.get("access_token")), "no access_token")
    http("token", "token-refresh.json", 200, connection_id=machine)
    mine = http("token", "me-connections.json", 200)

    # An authorization: started, called back at the callback function, confirmed.
    started = http("authorize", "authorize-start.json", 200, connection_id=interactive)
    state = urllib.parse.parse_qs(urllib.parse.urlsplit(started["authorization_url"]).query)["state"][0]
    page = http("callback", "callback.json", 200, query={"code": "smoke-code", "state": state})
    completion = re.search(r'id="keyport-completion">([^<]+)<', page)
    check("the callback page carries the completion value", completion is not None, page[:300])
    confirmed = http("callback", "oauth-complete.json", 200, body={"completion": completion.group(1)})
    check("the confirmation places the grant", confirmed.get("connection_id") == interactive, confirmed)
    http("token", "token-get.json", 200, connection_id=interactive)

    # Time passes over the authorized token (the table is edited as an hour would): it is due.
    table = boto3.resource("dynamodb").Table(TABLE)
    item_key = {"pk": f"CONN#{interactive}", "sk": "TOKEN#shared"}

    def make_due():
        """The token expiring in a minute and due a second ago, in its document and in its
        due-index key (due time, then the token's key)."""
        item = table.get_item(Key=item_key, ConsistentRead=True)["Item"]
        doc = json.loads(item["doc"])
        now = datetime.now(timezone.utc)
        doc["expires_at"] = (now + timedelta(seconds=60)).isoformat().replace("+00:00", "Z")
        doc["refresh_due_at"] = (now - timedelta(seconds=1)).isoformat().replace("+00:00", "Z")
        item["doc"] = json.dumps(doc)
        item["due_at"] = (now - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ") + item["due_at"][item["due_at"].index("#"):]
        table.put_item(Item=item)
        return doc["expires_at"]

    make_due()
    first = report()
    check("the refresher refreshed the due token", first.get("refreshed") == 1 and first.get("failed") == 0, first)

    # Fanned out: the scheduler queues the due shards, the worker refreshes what they hold.
    was_expiring = make_due()
    scheduled = invoke("scheduler", event("refresher-scheduled.json"))
    print(f"      scheduler report: {json.dumps(scheduled)}")
    check("the scheduler queued every due shard and refreshed nothing itself",
          scheduled.get("work_queued", 0) > 1 and scheduled.get("refreshed") == 0, scheduled)
    sqs = boto3.client("sqs")
    records = []
    while len(records) < scheduled.get("work_queued", 0):
        received = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not received:
            break
        records.extend(received)
    sample = event("refresh-work.json")["Records"][0]
    work = {"Records": [dict(sample, messageId=m["MessageId"], body=m["Body"], receiptHandle=m["ReceiptHandle"]) for m in records]}
    worked = invoke("refresh-worker", work)
    check("the worker did every shard's work", len(records) == scheduled.get("work_queued") and worked.get("batchItemFailures") == [], worked)
    refreshed = json.loads(table.get_item(Key=item_key, ConsistentRead=True)["Item"]["doc"])
    check("the worker refreshed the due token", refreshed["expires_at"] > was_expiring, refreshed["expires_at"])

    # Deletes: each connection holds a token; both are left to the refresher.
    for connection_id in (machine, interactive):
        deleting = http("connections", "connections-delete.json", 202, connection_id=connection_id)
        check("the delete answers what it did", deleting.get("status") == "deleting" and deleting.get("tokens_revoked") == 0, deleting)
    http("connections", "connections-get.json", 404, connection_id=machine)
    http("token", "token-get.json", 404, connection_id=machine)
    second = report()
    check("the refresher revoked the deleted connections' tokens",
          second.get("deleted_connection_tokens_revoked") == 2 and second.get("refreshed") == 0, second)
    revoked = sum(1 for line in open(os.path.join(WORK, "stub.log")) if line.startswith("POST") and line.rstrip().endswith("/revoke"))
    check("the provider saw both revocations", revoked == 2, f"{revoked} revocations")
    left = table.query(KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": f"CONN#{interactive}"})["Items"]
    check("no token row is left", all(not i["sk"].startswith("TOKEN#") for i in left), [i["sk"] for i in left])
    # The console: its sample events, then a sign-in through the identity provider.
    status, headers, _, page_body = console_answer(event("console-page.json"))
    check("console console-page.json -> 200 under the strict policy",
          status == 200 and headers.get("content-security-policy") == CONSOLE_CSP
          and "/console/assets/console.js" in page_body, f"{status} {headers}")
    status, headers, _, _ = console_answer(event("console-asset.json"))
    check("console console-asset.json -> 200, a script under the strict policy",
          status == 200 and headers.get("content-type", "").startswith("text/javascript")
          and headers.get("content-security-policy") == CONSOLE_CSP, f"{status} {headers}")
    status, _, _, body = console_answer(event("console-session.json"))
    check("console console-session.json -> 200, nobody signed in, the identity provider only",
          status == 200 and json.loads(body) == {"signed_in": False, "sign_in": {"oidc": True, "links": False}}, body[:300])
    status, headers, binding, body = console_answer(event("console-signin.json"))
    location = headers.get("location", "")
    params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))
    check("console console-signin.json -> 303 to the issuer with PKCE S256",
          status == 303 and location.startswith(f"{issuer}/auth?") and params.get("code_challenge_method") == "S256"
          and params.get("client_id") == CONSOLE_CLIENT_ID and params.get("redirect_uri") == CONSOLE_CALLBACK
          and any(c.startswith("keyport_console_signin=") and "Secure" in c for c in binding),
          f"{status} {location} {binding} {body[:200]}")
    query = consent_at_peer(location, CONSOLE_CALLBACK)
    status, headers, cookies, body = console_answer(
        with_cookies(event("console-signin.json"), binding, query=query, path="/console/signin/callback"))
    session_cookies = [c for c in cookies if c.startswith("__Secure-keyport_console=")]
    check("the console's callback starts a session (a __Secure- HttpOnly cookie)",
          status == 303 and headers.get("location") == "/console/" and len(session_cookies) == 1
          and "HttpOnly" in session_cookies[0], f"{status} {cookies} {body[:200]}")
    status, _, _, body = console_answer(with_cookies(event("console-session.json"), session_cookies))
    session = json.loads(body) if status == 200 else {}
    check("the session is the identity provider's person with the ID token's roles",
          session.get("signed_in") is True and session.get("subject") == "test-user"
          and session.get("roles") == ["bots", "keyport-admins"] and session.get("administrator") is True and session.get("via") == "oidc", body[:300])
    status, _, cookies, body = console_answer(
        with_cookies(event("console-signin.json"), binding, query=query, path="/console/signin/callback"))
    check("a replayed callback is refused and starts no session",
          status == 400 and not any(c.startswith("__Secure-keyport_console=") for c in cookies), f"{status} {cookies}")

    # No function logged a secret or a token it handled.
    secrets_seen = ["smoke-secret", token["access_token"], completion.group(1), CONSOLE_CLIENT_SECRET,
                    session_cookies[0].split(";", 1)[0].split("=", 1)[1] if session_cookies else "no session",
                    session.get("csrf_token") or "no csrf token"]
    leaked = [
        name for name in INSTANCES
        if any(secret in open(os.path.join(WORK, f"{name}.log"), encoding="utf-8", errors="replace").read()
               for secret in secrets_seen)
    ]
    check("no function log holds a secret or a token", not leaked, leaked)
finally:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()

if failures:
    print(f"smoke test: {len(failures)} check(s) failed", file=sys.stderr)
    sys.exit(1)
print("smoke test: the release bootstraps answered a real flow")
