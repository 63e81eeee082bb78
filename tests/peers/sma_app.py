#!/usr/bin/env python3
"""A SIP media application for trunkd's interop tests (SPEC 6), stdlib only.

  sma_app.py --port P --script steps.json --log events.jsonl [--secret whsec_...]
             [--media DIR]

The script is a JSON list of steps, used one per request, in order:
  {"expect": "NEW_INBOUND_CALL", "answer": {...}}   answer 200 with this JSON
  {"expect": ..., "answer": "500"}                  answer HTTP 500
  {"expect": ..., "answer": "garbage"}              answer 200 with a body that is not JSON
  {"expect": ..., "sleep": 2.5, "answer": ...}      wait that long first
Once the script is used up every request gets 200 {"SchemaVersion":"1.0","Actions":[]}.

Every request is appended to --log as one JSON line:
  {"step": i, "expected": "...", "signature_ok": true|false|null,
   "webhook_id": "...", "content_type": "...", "event": {...the body...}}
With --secret the Standard Webhooks signature is verified independently
(HMAC-SHA256 over "{id}.{timestamp}.{body}" with the base64 key after
"whsec_"); signature_ok is null without --secret. Listens on 127.0.0.1 only.

With --media, GET /media/<name> serves DIR/<name> (audio for URL sources;
404 if missing) and appends the path as one line to <log>.gets.
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

EMPTY = {"SchemaVersion": "1.0", "Actions": []}


def verify(key, msg_id, timestamp, body, header):
    if msg_id is None or timestamp is None:
        return False
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs(time.time() - ts) > 300:
        return False
    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for entry in (header or "").split(" "):
        version, _, sig = entry.partition(",")
        if version == "v1" and hmac.compare_digest(sig, expected):
            return True
    return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--script", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--secret")
    ap.add_argument("--media")
    args = ap.parse_args()
    with open(args.script) as f:
        steps = json.load(f)
    key = None
    if args.secret:
        if not args.secret.startswith("whsec_"):
            sys.exit("secret must start with whsec_")
        key = base64.b64decode(args.secret[len("whsec_"):])
    lock = threading.Lock()
    state = {"next": 0}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_GET(self):
            with lock:
                with open(args.log + ".gets", "a") as out:
                    out.write(self.path + "\n")
            name = self.path.removeprefix("/media/")
            data = None
            if args.media and self.path.startswith("/media/") and "/" not in name:
                try:
                    with open(os.path.join(args.media, name), "rb") as f:
                        data = f.read()
                except OSError:
                    pass
            if data is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "audio/wav")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n)
            sig_ok = None
            if key is not None:
                sig_ok = verify(
                    key,
                    self.headers.get("webhook-id"),
                    self.headers.get("webhook-timestamp"),
                    body,
                    self.headers.get("webhook-signature"),
                )
            try:
                event = json.loads(body)
            except ValueError:
                event = {"unparsed": body.decode("utf-8", "replace")}
            with lock:
                i = state["next"]
                state["next"] += 1
                step = steps[i] if i < len(steps) else {"answer": EMPTY}
                with open(args.log, "a") as out:
                    out.write(
                        json.dumps(
                            {
                                "step": i,
                                "expected": step.get("expect"),
                                "signature_ok": sig_ok,
                                "webhook_id": self.headers.get("webhook-id"),
                                "content_type": self.headers.get("content-type"),
                                "event": event,
                            }
                        )
                        + "\n"
                    )
            if "sleep" in step:
                time.sleep(float(step["sleep"]))
            answer = step.get("answer", EMPTY)
            status = 200
            if answer == "500":
                status, payload = 500, b"oops"
            elif answer == "garbage":
                payload = b"this is not JSON {"
            else:
                payload = json.dumps(answer).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except OSError:
                # trunkd gave up waiting (a timeout): nothing to answer.
                pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()


if __name__ == "__main__":
    main()
