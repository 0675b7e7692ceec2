#!/usr/bin/env python3
"""A loopback HTTP/1.1 server for the CurlHTTP tests: prints its port, then serves
POST/PUT /echo (echoes the body, chunked or not), GET /bytes?n=N (N bytes),
GET /flaky?id=X&fail=K (503 for the first K requests with that id, then 200)."""
import sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse, parse_qs

counts, lock = {}, threading.Lock()

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass

    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def send(self, code, data, chunked=None):
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        if chunked is not None: self.send_header("X-Was-Chunked", chunked)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        data = self.body()
        self.send(200, data, str(self.headers.get("Transfer-Encoding", "") == "chunked").lower())
    do_PUT = do_POST

    def do_GET(self):
        u = urlparse(self.path); q = parse_qs(u.query)
        if u.path == "/bytes":
            self.send(200, b"x" * int(q["n"][0]))
        elif u.path == "/flaky":
            with lock:
                n = counts[q["id"][0]] = counts.get(q["id"][0], 0) + 1
            self.send(503 if n <= int(q["fail"][0]) else 200, b"attempt %d" % n)
        else:
            self.send(404, b"no such path")

srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(srv.server_address[1], flush=True)
threading.Thread(target=lambda: (sys.stdin.read(), srv.shutdown()), daemon=True).start()
srv.serve_forever()
