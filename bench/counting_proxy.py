"""A DynamoDB counting proxy: sits between any client and a DynamoDB-compatible store over HTTP.

It forwards every request unchanged and counts, per operation (X-Amz-Target), the calls and the
items the store returned (``Count`` of a Query or Scan, 1 for a GetItem that found its item, the
items of a BatchGetItem). It knows nothing of the app in front of it, so its counts are an
independent check of what an access pattern costs.

    proxy = CountingProxy("http://127.0.0.1:4566").start()   # proxy.url is the endpoint to use
    proxy.reset(); ...; proxy.calls["Query"], proxy.items_read
"""
from __future__ import annotations

import http.client
import json
import threading
import urllib.parse
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, Tuple

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}


def items_returned(operation: str, response: Dict) -> int:
    if operation in ("Query", "Scan"):
        return int(response.get("Count", 0))
    if operation == "GetItem":
        return 1 if response.get("Item") else 0
    if operation == "BatchGetItem":
        return sum(len(items) for items in response.get("Responses", {}).values())
    return 0


class CountingProxy:
    def __init__(self, upstream: str, host: str = "127.0.0.1") -> None:
        parsed = urllib.parse.urlsplit(upstream)
        self._upstream: Tuple[str, int] = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self.calls: Counter = Counter()
        self.items: Counter = Counter()
        self.read_units = 0.0  # as DynamoDB bills the reads, from the sizes of the items returned
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, 0), self._handler_class())
        self._server.daemon_threads = True

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def items_read(self) -> int:
        return sum(self.items.values())

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.items.clear()
            self.read_units = 0.0

    def start(self) -> "CountingProxy":
        threading.Thread(target=self._server.serve_forever, daemon=True, name="counting-proxy").start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _record(self, operation: str, status: int, request: bytes, body: bytes) -> None:
        from bench.metering import read_units

        found, units = 0, 0.0
        if status == 200 and body:
            try:
                response = json.loads(body)
                found = items_returned(operation, response)
                units = read_units(operation, json.loads(request or b"{}"), response)
            except ValueError:
                pass
        with self._lock:
            self.calls[operation] += 1
            self.items[operation] += found
            self.read_units += units

    def _handler_class(self) -> type:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # every DynamoDB API call is a POST
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                upstream = http.client.HTTPConnection(*proxy._upstream, timeout=30)
                try:
                    upstream.request("POST", self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    payload = response.read()
                    status, reply_headers = response.status, response.getheaders()
                finally:
                    upstream.close()
                target = self.headers.get("X-Amz-Target", "")
                proxy._record(target.rsplit(".", 1)[-1], status, body, payload)
                self.send_response(status)
                for name, value in reply_headers:
                    if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        return Handler
