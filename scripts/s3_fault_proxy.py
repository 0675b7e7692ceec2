#!/usr/bin/env python3
"""A fault-injecting HTTP proxy on 127.0.0.1 for the s3:// fault tests.

Forwards every request unchanged (the Host header too, so SigV4 signatures still verify) to
UPSTREAM, and for a fraction RATE of requests injects one fault class instead:

    reset     close the connection with a TCP reset before answering
    500       answer 500 InternalError
    503       answer 503 SlowDown
    stall     send the headers and a few bytes, then nothing for STALL seconds, then close
    truncate  send the headers (full Content-Length) and half the body, then close
    delay     wait STALL seconds, then forward the request (a slow, not a broken, server)
    none      forward everything

Prints one JSON line {"endpoint": "http://127.0.0.1:PORT"} and serves until its standard
input closes, so a crashed test never leaves it running.

    s3_fault_proxy.py UPSTREAM FAULT RATE [--stall SECONDS] [--seed N]
"""
import argparse
import http.client
import json
import random
import socket
import struct
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("upstream")
    ap.add_argument("fault", choices=["reset", "500", "503", "stall", "truncate", "delay", "none"])
    ap.add_argument("rate", type=float)
    ap.add_argument("--stall", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--stats", help="write the final counts (JSON) to this file when stopping")
    args = ap.parse_args()
    up = urlparse(args.upstream)
    rng = random.Random(args.seed)
    lock = threading.Lock()
    counts = {"requests": 0, "faults": 0}

    def roll() -> bool:
        with lock:
            counts["requests"] += 1
            hit = args.fault != "none" and rng.random() < args.rate
            counts["faults"] += hit
            return hit

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):  # quiet
            pass

        def reset(self) -> None:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True

        def error(self, status: int, code: str) -> None:
            body = f"<?xml version=\"1.0\"?><Error><Code>{code}</Code><Message>injected</Message></Error>".encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def handle_any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            fault = roll()
            if fault and args.fault == "reset":
                return self.reset()
            if fault and args.fault == "500":
                return self.error(500, "InternalError")
            if fault and args.fault == "503":
                return self.error(503, "SlowDown")
            if fault and args.fault == "delay":
                time.sleep(args.stall)
            conn = http.client.HTTPConnection(up.hostname, up.port, timeout=60)
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for k, v in self.headers.items():
                if k.lower() not in HOP:
                    conn.putheader(k, v)
            conn.endheaders(body if body else None)
            resp = conn.getresponse()
            data = resp.read()
            conn.close()
            self.send_response_only(resp.status, resp.reason)
            for k, v in resp.getheaders():
                if k.lower() not in HOP and k.lower() not in ("server", "date"):
                    self.send_header(k, v)
            self.end_headers()
            if self.command == "HEAD":
                return
            if fault and args.fault == "stall" and len(data) > 16:
                self.wfile.write(data[:16])
                self.wfile.flush()
                time.sleep(args.stall)
                return self.reset()
            if fault and args.fault == "truncate" and len(data) > 1:
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                return self.reset()
            self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(json.dumps({"endpoint": f"http://127.0.0.1:{server.server_address[1]}"}), flush=True)
    # Stops at EOF on stdin or on SIGTERM. SIGTERM matters: another child of the test process
    # may have inherited the write end of our stdin pipe, so EOF alone can never come.
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def watch_stdin() -> None:
        while sys.stdin.buffer.read(65536):
            pass
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    stop.wait()
    with lock:
        final = json.dumps(counts)
    if args.stats:
        with open(args.stats + ".tmp", "w") as f:
            f.write(final)
        os.replace(args.stats + ".tmp", args.stats)
    print(final, file=sys.stderr, flush=True)
    os._exit(0)  # daemon threads may sit in a stalled response; do not wait for them


if __name__ == "__main__":
    main()
