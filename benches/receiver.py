#!/usr/bin/env python3
"""Loopback receiver for benches/footprint.sh.

Answers 200 to every POST (the postback endpoint is /postback/) and appends
one line per request to LOG: "<arrival unix time, ns> <body bytes> <path>".
Binds 127.0.0.1 on PORT (0 = any free port) and writes the port it got to
PORT_FILE once it listens.

usage: receiver.py LOG PORT_FILE [PORT]
"""

import http.server
import os
import sys
import time


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver would

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        arrived = time.time_ns()
        ok = self.path.split("?", 1)[0] == "/postback/"
        reply = b'{"status":"ok"}' if ok else b"not found"
        self.send_response(200 if ok else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)
        if ok:
            with open(self.server.log, "a") as f:
                f.write(f"{arrived} {len(body)} {self.path.split('?', 1)[0]}\n")

    def log_message(self, *args):
        pass


def main():
    log, port_file = sys.argv[1], sys.argv[2]
    port = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.log = log
    open(log, "a").close()
    with open(port_file + ".tmp", "w") as f:
        f.write(f"{server.server_address[1]}\n")
    os.replace(port_file + ".tmp", port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
