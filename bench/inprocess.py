"""The local gateway with every function called in this process, for benchmarks that meter the app.

The local stack runs each function in worker processes of its own (local/lambda_runtime.py), as
Lambda does; a bench that counts the app's DynamoDB units and times its CPU per invocation needs
the calls in its own process, where it can wrap them. ``in_process()`` swaps the gateway's runtime
for this one for as long as it is active; nothing else about the stack changes. Only benchmarks
use it: it shares module state between functions, which Lambda never does.
"""
from __future__ import annotations

import asyncio
import contextlib
import importlib
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, Iterator, List, Optional

from local.functions import Deployment
from local.lambda_runtime import FunctionError
from local.lambda_worker import LambdaContext, error_payload


class InProcessRuntime:
    """LambdaRuntime's surface (invoke, provision, reload, close), calling handlers on threads."""

    def __init__(self, deployment: Deployment, **_: Any) -> None:
        self.deployment = deployment
        self.redirect: Optional[Dict[str, str]] = None
        self.stream_tables: Dict[str, List[str]] = {}
        self.on_stream_writes: Optional[Callable[[List[Dict[str, Any]]], None]] = None
        self._pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="in-process")

    async def invoke(self, function_name: str, event: Any) -> Any:
        spec = self.deployment.functions[function_name]
        handler = self.resolve(spec.handler)
        deadline_ms = int((time.time() + spec.timeout_s) * 1000)
        context = LambdaContext(function_name, spec.memory_mb, str(uuid.uuid4()), deadline_ms)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, handler, event, context)
        except Exception as exc:
            raise FunctionError(error_payload(exc)) from exc

    def resolve(self, handler: str) -> Callable[[Any, Any], Any]:
        """A Chalice handler through the app's handler_map (where benches wrap them); the app
        itself (REST) through ``call_rest``."""
        module_name, _, attribute = handler.rpartition(".")
        module = importlib.import_module(module_name)
        target = getattr(module, attribute)
        app = getattr(module, "app", None)
        if target is app and app is not None:
            return lambda event, context: self.call_rest(app, event, context)
        return getattr(app, "handler_map", {}).get(attribute, target)

    def call_rest(self, app: Any, event: Dict[str, Any], context: Any) -> Any:
        return app(event, context)

    async def provision(self, per_function: int = 1) -> None:
        return None

    async def reload(self) -> None:
        return None

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


@contextlib.contextmanager
def in_process() -> Iterator[None]:
    """Gateways made meanwhile call their functions in this process."""
    from local import gateway

    original = gateway.LambdaRuntime
    gateway.LambdaRuntime = InProcessRuntime  # type: ignore[misc,assignment]
    try:
        yield
    finally:
        gateway.LambdaRuntime = original  # type: ignore[misc]
