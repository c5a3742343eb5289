"""A small synchronous WebSocket chat client for end-to-end tests (the `websockets` library)."""
from __future__ import annotations

import base64
import json
import os
import socket
import time
import urllib.parse
from typing import Any, Dict, List, Optional

from websockets.sync.client import connect


class ChatClient:
    def __init__(self, url: str, origin: Optional[str] = None) -> None:
        self.ws = connect(url, origin=origin, ping_interval=None, open_timeout=10)
        self.inbox: List[Dict[str, Any]] = []

    def send(self, frame: Dict[str, Any]) -> None:
        self.ws.send(json.dumps(frame))

    def _pull(self, timeout: float) -> Optional[Dict[str, Any]]:
        try:
            raw = self.ws.recv(timeout=timeout)
        except TimeoutError:
            return None
        frame = json.loads(raw)
        self.inbox.append(frame)
        return frame

    def wait_for(self, predicate, timeout: float = 10.0) -> Dict[str, Any]:
        for frame in self.inbox:
            if predicate(frame):
                self.inbox.remove(frame)
                return frame
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            frame = self._pull(max(0.01, deadline - time.monotonic()))
            if frame is not None and predicate(frame):
                self.inbox.remove(frame)
                return frame
        raise AssertionError(f"no matching frame within {timeout}s; got {self.inbox}")

    def wait_type(self, frame_type: str, timeout: float = 10.0, **fields: Any) -> Dict[str, Any]:
        return self.wait_for(lambda f: f.get("type") == frame_type
                             and all(f.get(k) == v for k, v in fields.items()), timeout)

    def request(self, frame: Dict[str, Any], timeout: float = 10.0) -> Dict[str, Any]:
        req = os.urandom(6).hex()
        self.send({**frame, "req": req})
        return self.wait_for(lambda f: f.get("req") == req, timeout)

    def drain(self, quiet: float = 0.3) -> List[Dict[str, Any]]:
        while self._pull(quiet) is not None:
            pass
        frames, self.inbox = self.inbox, []
        return frames

    def close(self) -> None:
        self.ws.close()


def half_open_socket(ws_url: str, origin: Optional[str] = None) -> socket.socket:
    """Complete the WebSocket handshake by hand, then never send or read again:
    the TCP connection stays open and no close frame ever comes, as on a dead mobile link."""
    parsed = urllib.parse.urlparse(ws_url)
    sock = socket.create_connection((parsed.hostname, parsed.port), timeout=10)
    path = parsed.path + ("?" + parsed.query if parsed.query else "")
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {path} HTTP/1.1", f"Host: {parsed.hostname}:{parsed.port}", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    if origin:
        lines.append(f"Origin: {origin}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed during handshake")
        response += chunk
    if not response.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(response.split(b"\r\n", 1)[0].decode())
    return sock


def closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    """True once the server has closed the TCP connection (reads whatever it sent before)."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if sock.recv(65536) == b"":
                return True
    except socket.timeout:
        return False
    except ConnectionError:
        return True
    return False


def send_text_frame(sock: socket.socket, text: str) -> None:
    """Send one masked text frame over a socket from half_open_socket (which never reads replies)."""
    payload = text.encode()
    mask = os.urandom(4)
    if len(payload) < 126:
        header = bytes([0x81, 0x80 | len(payload)])
    elif len(payload) < 65536:
        header = bytes([0x81, 0x80 | 126]) + len(payload).to_bytes(2, "big")
    else:
        header = bytes([0x81, 0x80 | 127]) + len(payload).to_bytes(8, "big")
    sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
