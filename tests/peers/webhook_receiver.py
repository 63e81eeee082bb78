#!/usr/bin/env python3
"""A Standard Webhooks receiver for trunkd's interop tests (SPEC 5.4).

An independent implementation of the verification scheme (stdlib only):
the key is the base64 after "whsec_"; the signed content is
"{webhook-id}.{webhook-timestamp}.{body}"; webhook-signature holds
space-separated "v1,<base64 HMAC-SHA256>" entries; the timestamp must be
within 5 minutes of now.

  webhook_receiver.py --port P --secret whsec_... --out events.jsonl [--fail-first N]

Answers 500 to the first N requests (whatever they carry), then 204 to
every correctly signed one (appending {"webhook_id", "timestamp", "event"}
as one JSON line to --out) and 401 to any other (appended to --out.invalid).
Listens on 127.0.0.1 only; exits on SIGTERM.
"""

import argparse
import base64
import hashlib
import hmac
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOLERANCE_SECONDS = 5 * 60


def verify(key, msg_id, timestamp, body, header):
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False, "bad timestamp"
    if abs(time.time() - ts) > TOLERANCE_SECONDS:
        return False, "timestamp outside tolerance"
    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for entry in (header or "").split(" "):
        version, _, sig = entry.partition(",")
        if version == "v1" and hmac.compare_digest(sig, expected):
            return True, ""
    return False, "no valid v1 signature"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--secret", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--fail-first", type=int, default=0)
    args = ap.parse_args()
    if not args.secret.startswith("whsec_"):
        sys.exit("secret must start with whsec_")
    key = base64.b64decode(args.secret[len("whsec_"):])
    lock = threading.Lock()
    state = {"requests": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            with lock:
                state["requests"] += 1
                n = state["requests"]
            if n <= args.fail_first:
                self.send_response(500)
                self.send_header("content-length", "0")
                self.end_headers()
                return
            msg_id = self.headers.get("webhook-id", "")
            timestamp = self.headers.get("webhook-timestamp", "")
            ok, why = verify(key, msg_id, timestamp, body, self.headers.get("webhook-signature"))
            line = {"webhook_id": msg_id, "timestamp": timestamp}
            if ok:
                line["event"] = json.loads(body)
                path = args.out
            else:
                line["reason"] = why
                line["body"] = body.decode("utf-8", "replace")
                path = args.out + ".invalid"
            with lock, open(path, "a") as f:
                f.write(json.dumps(line) + "\n")
            self.send_response(204 if ok else 401)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, fmt, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever()


if __name__ == "__main__":
    main()
