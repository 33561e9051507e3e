#!/usr/bin/env python3
"""A checkpoint host on 127.0.0.1 for tests/checkpoint.rs, serving FOLDER:

  /<file>      the file, with its Content-Length (good.pt, html.pt, truncated.pt, other.pt)
  /cut/<file>  announces the whole file's length, sends 40% of it and closes the connection
  /missing     404 Not Found
  /hang        accepts the request and never answers

Every request's path is appended to LOG. Prints the port, then serves until killed.

    checkpoint_server.py FOLDER LOG
"""

from __future__ import annotations

import http.server
import sys
import threading
from pathlib import Path

FOLDER, LOG = Path(sys.argv[1]), Path(sys.argv[2])


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        with open(LOG, "a") as log:
            log.write(self.path + "\n")
        if self.path == "/hang":
            threading.Event().wait()
        cut = self.path.startswith("/cut/")
        path = FOLDER / self.path.removeprefix("/cut").lstrip("/")
        if self.path == "/missing" or not path.is_file():
            self.send_error(404, "Not Found")
            return
        body = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "text/html" if path.name.startswith("html") else "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) * 2 // 5] if cut else body)
        self.close_connection = True

    def log_message(self, *args) -> None:
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(server.server_address[1], flush=True)
server.serve_forever()
