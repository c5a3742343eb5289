"""Start the real local stack (`python -m local`) in a subprocess for end-to-end tests."""
from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional

import requests

ROOT = pathlib.Path(__file__).resolve().parents[2]

# What tests/conftest.py sets for in-process unit tests must not leak into the stack.
_UNIT_TEST_ENV = ("KEFU_TABLE_PREFIX", "KEFU_WS_MANAGEMENT_ENDPOINT", "KEFU_DYNAMODB_ENDPOINT",
                  "KEFU_CONSOLE_ORIGINS", "KEFU_SITE_CACHE_SECONDS", "AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN")


# End-to-end tests drive sessions, sends and page views from one address far faster than people do;
# the limits themselves are tested in tests/security/. A test's own ``env`` overrides these.
LIFTED_LIMITS = {name: "1000000" for name in ("KEFU_SESSION_LIMIT", "KEFU_RATE_LIMIT", "KEFU_TYPING_LIMIT",
                                              "KEFU_PAGE_VIEW_LIMIT", "KEFU_LOGIN_IP_LIMIT")}


class RunningStack:
    def __init__(self, extra_args: Optional[List[str]] = None, env: Optional[Dict[str, str]] = None,
                 root: Optional[pathlib.Path] = None, data_dir: Optional[pathlib.Path] = None) -> None:
        """``root``: the checkout whose code the stack runs (default: this one). ``data_dir``: the
        data folder (default: a fresh temporary one, deleted on stop; never the checkout's own)."""
        child_env = {**LIFTED_LIMITS, **{k: v for k, v in os.environ.items() if k not in _UNIT_TEST_ENV}}
        child_env.update(env or {})
        self.lines: List[str] = []
        self._temporary_data = None if data_dir else tempfile.TemporaryDirectory(prefix="kefu-stack-data-")
        self.data_dir = data_dir or pathlib.Path(self._temporary_data.name)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "local", "--port", "0", "--data-dir", str(self.data_dir), *(extra_args or [])],
            cwd=root or ROOT, env=child_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )
        self.info = self._wait_for_info(timeout=60)
        self.base = self.info["demo_url"].rsplit("/demo/", 1)[0]

    def _wait_for_info(self, timeout: float) -> Dict[str, Any]:
        found: Dict[str, Any] = {}
        ready = threading.Event()

        def pump() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                self.lines.append(line.rstrip())
                if line.startswith("LOCAL_INFO "):
                    found.update(json.loads(line[len("LOCAL_INFO "):]))
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(timeout) or not found:
            self.stop()
            raise RuntimeError("the local stack did not start:\n" + "\n".join(self.lines[-40:]))
        return found

    def log_text(self) -> str:
        return "\n".join(self.lines)

    def rest(self, method: str, path: str, token: Optional[str] = None, **kwargs: Any) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return requests.request(method, self.info["api_url"] + path, headers=headers, timeout=10, **kwargs)

    def visitor(self, **fields: Any) -> Dict[str, Any]:
        response = self.rest("POST", "/v1/visitor/session", json={"site_id": self.info["site_id"], **fields},
                             headers={"Origin": self.base})
        response.raise_for_status()
        return response.json()

    def agent(self) -> Dict[str, Any]:
        response = self.rest("POST", "/v1/agent/session", json={
            "site_id": self.info["site_id"], "email": self.info["agent_email"],
            "password": self.info["agent_password"]})
        response.raise_for_status()
        return response.json()

    def ws_url(self, token: str) -> str:
        return f"{self.info['websocket_url']}?token={token}"

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self._temporary_data is not None:
            self._temporary_data.cleanup()
            self._temporary_data = None


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")
