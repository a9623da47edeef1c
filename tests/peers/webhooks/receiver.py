"""A webhook receiver for the tests: verifies every delivery with the Standard Webhooks
reference library (not Keyport's code) and writes one JSON line per request to WEBHOOK_LOG.

Listens on 127.0.0.1 (WEBHOOK_PORT, or a free port), prints the port on its first line.
The signing secret is read from WEBHOOK_SECRET_FILE at each request (the tests learn it only
once the subscription exists, and change it on rotation). While WEBHOOK_DOWN_FILE exists it
answers 503 without verifying: a receiver that is down.
"""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

LOG = os.environ["WEBHOOK_LOG"]
SECRET_FILE = os.environ["WEBHOOK_SECRET_FILE"]
DOWN_FILE = os.environ["WEBHOOK_DOWN_FILE"]


def record(entry):
    with open(LOG, "a", encoding="utf-8") as log:
        log.write(json.dumps(entry) + "\n")


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {name.lower(): value for name, value in self.headers.items()}
        seen = {
            "webhook_id": headers.get("webhook-id"),
            "webhook_timestamp": headers.get("webhook-timestamp"),
            "signatures": len(headers.get("webhook-signature", "").split()),
        }
        if os.path.exists(DOWN_FILE):
            record({**seen, "answer": 503})
            self.answer(503)
            return
        try:
            with open(SECRET_FILE, encoding="utf-8") as secret:
                payload = Webhook(secret.read().strip()).verify(body, headers)
        except (WebhookVerificationError, OSError) as refused:
            record({**seen, "answer": 400, "refused": str(refused)})
            self.answer(400)
            return
        record({**seen, "answer": 204, "verified": True, "payload": payload})
        self.answer(204)

    def answer(self, status):
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def main():
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("WEBHOOK_PORT", "0"))), Receiver)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
