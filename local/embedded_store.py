"""The local stack's DynamoDB-compatible store, started on a free loopback port.

- ``dynalite`` (the default): dynalite, DynamoDB on LevelDB, in a Node child process
  (local/dynalite/server.js, which adds the TransactWriteItems dynalite lacks). With a folder its
  tables survive restarts; it answers several times faster than moto's server
  (bench/local_store.py). Installed by `make setup`: Node.js and npm from apt, dynalite pinned in
  local/dynalite/package-lock.json and installed with `npm ci`.
- ``moto``: moto's server, in this process and in memory (nothing survives a restart), with
  local/atomic_moto.py making each request atomic. For machines without Node and for comparison.

No silent fallback from one to the other: a store that quietly forgets everything on restart is
the surprise the data folder exists to end.
"""
from __future__ import annotations

import logging
import pathlib
import queue
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass
from typing import Callable, Optional

STORES = ("dynalite", "moto")
DYNALITE_DIR = pathlib.Path(__file__).resolve().parent / "dynalite"
START_TIMEOUT_S = 30.0

log = logging.getLogger("local.store")


class StoreUnavailable(RuntimeError):
    """The store cannot start here; the message says what to do."""


@dataclass
class EmbeddedStore:
    kind: str
    endpoint: str
    stop: Callable[[], None]


def start_store(kind: str, host: str, folder: Optional[pathlib.Path]) -> EmbeddedStore:
    """Start the store; ``folder`` keeps dynalite's tables (None: in memory)."""
    if kind == "dynalite":
        return start_dynalite(host, folder)
    if kind == "moto":
        return start_moto(host)
    raise ValueError(f"unknown store {kind!r}; one of {', '.join(STORES)}")


def start_dynalite(host: str, folder: Optional[pathlib.Path]) -> EmbeddedStore:
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        raise StoreUnavailable(
            "The embedded DynamoDB (dynalite) needs Node.js, which is not installed. `make setup` installs it "
            "(Node.js and npm from apt, then `npm ci` in local/dynalite/). Or run with --store moto (in memory: "
            "nothing is kept across restarts), or --dynamodb-endpoint URL for a store of your own.")
    if not (DYNALITE_DIR / "node_modules" / "dynalite" / "package.json").exists():
        raise StoreUnavailable(
            "dynalite is not installed: run `make setup` (or `npm ci` in local/dynalite/). "
            "Or run with --store moto (in memory) or --dynamodb-endpoint URL.")
    command = [node, str(DYNALITE_DIR / "server.js"), "--host", host, "--port", "0"]
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        command += ["--path", str(folder)]
    # stdin stays open: the server exits when it closes, so it never outlives the stack.
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    port = _await_listening(process)
    endpoint = f"http://{_url_host(host)}:{port}"
    _await_answer(endpoint, process)

    def stop() -> None:
        if process.poll() is None:
            process.terminate()  # SIGTERM: the server closes LevelDB cleanly
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdin:
            process.stdin.close()

    return EmbeddedStore("dynalite", endpoint, stop)


def _await_listening(process: subprocess.Popen) -> int:
    """The port from the server's "listening host:port" line; its output after that goes to the log."""
    lines: "queue.Queue[Optional[str]]" = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip())
        lines.put(None)

    threading.Thread(target=pump, name="dynalite-output", daemon=True).start()
    said = []
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            line = None
        if line is None:
            process.kill()
            process.wait()
            raise StoreUnavailable("dynalite did not start:\n  " + "\n  ".join(said or ["(no output)"]))
        if line.startswith("listening "):
            threading.Thread(target=_forward, args=(lines,), name="dynalite-log", daemon=True).start()
            return int(line.rsplit(":", 1)[1])
        said.append(line)


def _forward(lines: "queue.Queue[Optional[str]]") -> None:
    while (line := lines.get()) is not None:
        log.warning("dynalite: %s", line)


def _await_answer(endpoint: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            with urllib.request.urlopen(endpoint, timeout=2) as response:  # dynalite answers GET / with "healthy"
                response.read()
                return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise StoreUnavailable(f"dynalite at {endpoint} does not answer")
            time.sleep(0.05)


def start_moto(host: str) -> EmbeddedStore:
    from moto.server import ThreadedMotoServer

    from local import atomic_moto

    atomic_moto.install()
    with socket.socket() as sock:
        sock.bind((host, 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    return EmbeddedStore("moto", f"http://{_url_host(host)}:{port}", server.stop)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
