#!/usr/bin/env python3
"""A misbehaving JSON-RPC endpoint for the chain engine's tests: a loopback proxy in front of
a real node that answers everything honestly except eth_call (and eth_estimateGas), which it
  flip    answers with one bit of the result flipped (a lying node),
  revert  answers with a revert (error 3, "execution reverted: proxy"),
  hang    answers after 30 s (a stuck node).
  honest  passes through.
or, in mode noreceipt, never has a transaction's receipt (eth_getTransactionReceipt answers null),
or, in mode underpriced, refuses the first eth_sendRawTransaction as geth does when another
transaction with its nonce is pending ("replacement transaction underpriced"), then passes through.
Prints its URL on the first line of stdout; serves until stdin closes.
  rpc_proxy.py MODE UPSTREAM_URL
"""
import json
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODE, UPSTREAM = sys.argv[1], sys.argv[2]
TAMPERED = {"eth_call", "eth_estimateGas"}


def forward(req):
    r = urllib.request.Request(UPSTREAM, json.dumps(req).encode(), {"content-type": "application/json"})
    return json.load(urllib.request.urlopen(r, timeout=60))


SENT = []


def one(req):
    if MODE == "underpriced":
        if req.get("method") == "eth_sendRawTransaction" and not SENT:
            SENT.append(1)
            return {"jsonrpc": "2.0", "id": req.get("id"), "error": {"code": -32000, "message": "replacement transaction underpriced"}}
        return forward(req)
    if MODE == "noreceipt":
        if req.get("method") == "eth_getTransactionReceipt":
            return {"jsonrpc": "2.0", "id": req.get("id"), "result": None}
        return forward(req)
    if req.get("method") not in TAMPERED or MODE == "honest":
        return forward(req)
    if MODE == "hang":
        time.sleep(30)
        return forward(req)
    if MODE == "revert":
        return {"jsonrpc": "2.0", "id": req.get("id"), "error": {"code": 3, "message": "execution reverted: proxy",
                "data": "0x08c379a0" + "20".rjust(64, "0") + "5".rjust(64, "0") + b"proxy".hex().ljust(64, "0")}}
    ans = forward(req)
    res = ans.get("result")
    if isinstance(res, str) and len(res) > 2:
        last = int(res[-1], 16) ^ 1
        ans["result"] = res[:-1] + format(last, "x")
    return ans


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        ans = [one(r) for r in req] if isinstance(req, list) else one(req)
        data = json.dumps(ans).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
srv.daemon_threads = True
threading.Thread(target=srv.serve_forever, daemon=True).start()
print(f"http://127.0.0.1:{srv.server_address[1]}", flush=True)
sys.stdin.read()
