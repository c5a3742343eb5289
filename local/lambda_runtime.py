"""Lambda's execution model, locally: each function runs in execution environments of its own.

An execution environment is a worker process (local/lambda_worker.py) that imported one
function's handler. Like Lambda:
- each function has environments of its own, started from its FunctionSpec (handler, environment,
  memory, timeout); module state is never shared between functions, nor between environments;
- an environment serves one invocation at a time and is reused while warm; an invocation that
  finds none idle starts a new one (a real cold start: a new process importing the handler), up
  to a limit per function (``reserved_concurrency``, else ``per_function``) and in total; at the
  total limit an idle environment of another function is reclaimed first. Unlike Lambda, an
  invocation beyond the limits waits for a free environment instead of being throttled;
- the function's timeout is enforced: the environment is killed and replaced, and the caller
  gets Lambda's ``Sandbox.Timedout`` error; a crashed environment (the process exited) gives
  ``Runtime.ExitError`` and is replaced; an exception in the handler gives Lambda's error payload
  (``errorType``, ``errorMessage``, ``stackTrace``) and the environment stays warm;
- ``context.get_remaining_time_in_millis()`` counts down to the function's deadline;
- environments idle for ``idle_seconds`` are stopped.

With ``stream_tables`` set (``{table name: [key attribute names]}``, by local/streams.py), each
environment notes the items its function writes to those tables and every reply carries them:
they go to ``on_stream_writes``, whatever the invocation's outcome (a write that succeeded before
the handler raised is on the stream in AWS too). An environment killed mid-invocation (timeout,
crash) takes its notes with it.

``invoke(function_name, event)`` is the seam the gateway (WebSocket routes, schedules) and the
REST API use. Each invocation logs one line: function, route, connection, duration, status, and
cold (with its init time) or warm. ``reload()`` retires every environment (busy ones when their
invocation ends), so the next invocations import the changed code; sockets are the gateway's
and are not touched.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import pathlib
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from local.functions import Deployment, FunctionSpec
from local.lambda_worker import HEADER

log = logging.getLogger("local.lambda")

ROOT = pathlib.Path(__file__).resolve().parent.parent
INIT_TIMEOUT_S = 10.0  # Lambda's limit for the init phase (the handler's import)
DEFAULT_PER_FUNCTION = 4
DEFAULT_TOTAL = 28  # 7 functions x 4: a burst on one never evicts (and cold-starts) the others
DEFAULT_IDLE_SECONDS = 600.0
# The worker module is imported from this checkout, then the checkout leaves sys.path: the
# function sees its own project folder only (its cwd, first on sys.path), as on Lambda.
_BOOT = ("import sys; root = sys.argv[1]; sys.path.insert(0, root); import local.lambda_worker as w; "
         "sys.path.remove(root); w.main()")


class FunctionError(Exception):
    """The invocation failed: ``payload`` is what Lambda returns for it."""

    def __init__(self, payload: Dict[str, Any]) -> None:
        super().__init__(payload.get("errorMessage", ""))
        self.payload = payload

    @property
    def error_type(self) -> str:
        return str(self.payload.get("errorType", "Unhandled"))


class _Gone(Exception):
    """The worker process ended (crashed, killed) while we talked to it."""


@dataclass(eq=False)
class Environment:
    """One execution environment: a worker process serving one function."""

    function: str
    process: asyncio.subprocess.Process
    generation: int
    init_ms: float = 0.0
    invocations: int = 0
    last_used: float = field(default_factory=time.monotonic)

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    async def send(self, message: Dict[str, Any]) -> None:
        data = json.dumps(message, separators=(",", ":")).encode()
        stdin = self.process.stdin
        assert stdin is not None
        try:
            stdin.write(HEADER.pack(len(data)) + data)
            await stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise _Gone() from exc

    async def receive(self) -> Dict[str, Any]:
        stdout = self.process.stdout
        assert stdout is not None
        try:
            header = await stdout.readexactly(HEADER.size)
            return json.loads(await stdout.readexactly(HEADER.unpack(header)[0]))
        except asyncio.IncompleteReadError as exc:
            raise _Gone() from exc

    def kill(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.is_closing():
            self.process.stdin.close()
        if self.alive:
            try:
                self.process.kill()
            except ProcessLookupError:
                pass

    async def exit_status(self) -> str:
        try:
            code = await asyncio.wait_for(self.process.wait(), 2)
        except asyncio.TimeoutError:
            self.kill()
            code = await self.process.wait()
        return f"signal: {-code}" if code < 0 else f"exit status {code}"


@dataclass
class _Pool:
    idle: List[Environment] = field(default_factory=list)
    count: int = 0                      # environments alive or starting
    waiters: List[asyncio.Future] = field(default_factory=list)
    cold_starts: int = 0
    invocations: int = 0


class LambdaRuntime:
    def __init__(self, deployment: Deployment, *, base_env: Optional[Dict[str, str]] = None,
                 overrides: Optional[Dict[str, str]] = None, per_function: int = DEFAULT_PER_FUNCTION,
                 total: int = DEFAULT_TOTAL, idle_seconds: float = DEFAULT_IDLE_SECONDS,
                 python: str = sys.executable) -> None:
        """``base_env``: what every function inherits (default: this process's environment), then
        each FunctionSpec's environment, then ``overrides`` (what the local stack must decide,
        such as its endpoints), then the variables Lambda itself sets."""
        self.deployment = deployment
        self.base_env = dict(os.environ if base_env is None else base_env)
        self.overrides = dict(overrides or {})
        self.per_function = per_function
        self.total = total
        self.idle_seconds = idle_seconds
        self.python = python
        self.redirect: Optional[Dict[str, str]] = None  # {"host_pattern", "target"}: set by the gateway
        self.stream_tables: Dict[str, List[str]] = {}  # set by local/streams.py before the first start
        self.on_stream_writes: Optional[Callable[[List[Dict[str, Any]]], None]] = None
        self._pools: Dict[str, _Pool] = {name: _Pool() for name in deployment.functions}
        self._generation = 0
        self._closed = False
        self._reaper: Optional[asyncio.Task] = None
        self._environments: set = set()  # every environment whose process may still run

    # ---- the seam -------------------------------------------------------------------------

    async def invoke(self, function_name: str, event: Any) -> Any:
        """Run ``event`` through the function; its result, or FunctionError as Lambda reports it."""
        spec = self.deployment.functions.get(function_name)
        if spec is None:
            raise FunctionError({"errorType": "ResourceNotFoundException",
                                 "errorMessage": f"Function not found: {function_name}"})
        self._start_reaper()
        started = time.perf_counter()
        request_id = str(uuid.uuid4())
        status, cold_note = "error", "-"
        try:
            env, cold = await self._acquire(spec)
            cold_note = f"cold (init {env.init_ms:.0f}ms)" if cold else "warm"
            result = await self._run(env, spec, event, request_id)
            status = str(result.get("statusCode", 200)) if isinstance(result, dict) else "ok"
            return result
        except FunctionError as exc:
            status = exc.error_type
            raise
        finally:
            route, connection = describe_event(event)
            log.info("%-20s %-24s conn=%-17s %8.1fms status=%-18s %s", function_name, route, connection,
                     (time.perf_counter() - started) * 1000, status, cold_note)

    async def provision(self, per_function: int = 1) -> None:
        """Start ``per_function`` environments of every function now, as Lambda's provisioned
        concurrency does, so the first invocations find them warm. Failures are logged (the
        function's first invocation will report them)."""
        async def start(spec: FunctionSpec) -> None:
            pool = self._pools[spec.name]
            while pool.count < min(per_function, self._limit(spec)) and self._total_count() < self.total:
                pool.count += 1
                try:
                    env = await self._start(spec)
                except FunctionError as exc:
                    pool.count -= 1
                    log.warning("%s could not start: %s %s", spec.name, exc.error_type, exc)
                    return
                self._release(env)

        await asyncio.gather(*(start(spec) for spec in self.deployment.functions.values()))

    async def reload(self) -> None:
        """Code changed: every environment is retired; the next invocations start fresh ones."""
        self._generation += 1
        for pool in self._pools.values():
            for env in pool.idle:
                self._discard(env)
            pool.idle.clear()
        log.info("functions reloaded: the next invocations start new environments")

    async def close(self) -> None:
        """Stop every environment, busy or not, and wait for their processes to end."""
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
        for pool in self._pools.values():
            pool.idle.clear()
            for waiter in pool.waiters:
                if not waiter.done():
                    waiter.cancel()
        environments = list(self._environments)
        for env in environments:
            env.kill()
        if environments:
            await asyncio.wait([asyncio.ensure_future(env.process.wait()) for env in environments], timeout=5)

    def stats(self) -> Dict[str, Dict[str, int]]:
        return {name: {"environments": pool.count, "idle": len(pool.idle), "cold_starts": pool.cold_starts,
                       "invocations": pool.invocations}
                for name, pool in self._pools.items()}

    # ---- environments ---------------------------------------------------------------------

    def _limit(self, spec: FunctionSpec) -> int:
        return max(1, spec.reserved_concurrency or self.per_function)

    def _total_count(self) -> int:
        return sum(pool.count for pool in self._pools.values())

    async def _acquire(self, spec: FunctionSpec) -> Tuple[Environment, bool]:
        pool = self._pools[spec.name]
        while True:
            if self._closed:
                raise FunctionError({"errorType": "ServiceException", "errorMessage": "the runtime is stopping"})
            while pool.idle:
                env = pool.idle.pop()
                if env.alive and env.generation == self._generation:
                    return env, False
                self._discard(env)
            if pool.count < self._limit(spec) and (self._total_count() < self.total or self._reclaim(spec.name)):
                pool.count += 1
                try:
                    env = await self._start(spec)
                except BaseException:
                    pool.count -= 1
                    self._wake_all()
                    raise
                pool.cold_starts += 1
                return env, True
            waiter = asyncio.get_running_loop().create_future()
            pool.waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in pool.waiters:
                    pool.waiters.remove(waiter)

    def _release(self, env: Environment) -> None:
        pool = self._pools[env.function]
        env.last_used = time.monotonic()
        if self._closed or not env.alive or env.generation != self._generation:
            self._discard(env)
            return
        pool.idle.append(env)
        self._wake(pool)

    def _discard(self, env: Environment) -> None:
        """Stop an environment and free its place (for this function and in the total)."""
        env.kill()
        self._pools[env.function].count -= 1
        self._wake_all()

    def _reclaim(self, for_function: str) -> bool:
        """At the total limit: stop the least recently used idle environment of another function."""
        candidates = [(env.last_used, name, env) for name, pool in self._pools.items()
                      if name != for_function for env in pool.idle]
        if not candidates:
            return False
        _, name, env = min(candidates, key=lambda item: item[0])
        self._pools[name].idle.remove(env)
        env.kill()
        self._pools[name].count -= 1
        return True

    @staticmethod
    def _wake(pool: _Pool) -> None:
        for waiter in pool.waiters:
            if not waiter.done():
                waiter.set_result(None)
                return

    def _wake_all(self) -> None:
        for pool in self._pools.values():
            self._wake(pool)

    def environment_for(self, spec: FunctionSpec) -> Dict[str, str]:
        env = dict(self.base_env)
        env.update(spec.environment)
        env.update(self.overrides)
        # Whoever put this checkout on PYTHONPATH to run the gateway, the function must not see it.
        paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and os.path.abspath(p) != str(ROOT)]
        if paths:
            env["PYTHONPATH"] = os.pathsep.join(paths)
        else:
            env.pop("PYTHONPATH", None)
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
        if not (env.get("AWS_ACCESS_KEY_ID") or env.get("AWS_PROFILE")
                or pathlib.Path("~/.aws/credentials").expanduser().exists()):
            # Lambda always hands its functions credentials; locally any will do for the stand-ins.
            env.update({"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"})
        env.update({
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": env.get("AWS_DEFAULT_REGION") or region,
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
            "LAMBDA_TASK_ROOT": str(pathlib.Path(self.deployment.project_dir).resolve()),
            "_HANDLER": spec.handler,
        })
        return env

    async def _start(self, spec: FunctionSpec) -> Environment:
        env_vars = self.environment_for(spec)
        env_vars["AWS_LAMBDA_LOG_STREAM_NAME"] = f"local/{uuid.uuid4().hex[:12]}"
        process = await asyncio.create_subprocess_exec(
            self.python, "-c", _BOOT, str(ROOT), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            cwd=str(pathlib.Path(self.deployment.project_dir).resolve()), env=env_vars)
        env = Environment(spec.name, process, self._generation)
        self._environments.add(env)
        process_ended = asyncio.ensure_future(process.wait())
        process_ended.add_done_callback(lambda _: self._environments.discard(env))
        try:
            await env.send({"handler": spec.handler, "function_name": spec.name, "memory_mb": spec.memory_mb,
                            "redirect": self.redirect, "layers": list(spec.layers),
                            "stream_tables": self.stream_tables})
            reply = await asyncio.wait_for(env.receive(), INIT_TIMEOUT_S)
        except asyncio.TimeoutError:
            env.kill()
            raise FunctionError({"errorType": "Runtime.InitError",
                                 "errorMessage": f"Init timed out after {INIT_TIMEOUT_S:.2f} seconds"})
        except _Gone:
            raise FunctionError({"errorType": "Runtime.ExitError",
                                 "errorMessage": f"Runtime exited during init: {await env.exit_status()}"})
        except BaseException:
            env.kill()
            raise
        if "error" in reply:
            env.kill()
            raise FunctionError(reply["error"])
        env.init_ms = float(reply.get("init_ms", 0.0))
        return env

    async def _run(self, env: Environment, spec: FunctionSpec, event: Any, request_id: str) -> Any:
        pool = self._pools[spec.name]
        pool.invocations += 1
        env.invocations += 1
        deadline_ms = int(time.time() * 1000 + spec.timeout_s * 1000)
        try:
            await env.send({"event": event, "request_id": request_id, "deadline_ms": deadline_ms})
            reply = await asyncio.wait_for(env.receive(), spec.timeout_s)
        except asyncio.TimeoutError:
            self._discard(env)
            raise FunctionError({"errorType": "Sandbox.Timedout", "errorMessage":
                                 f"RequestId: {request_id} Error: Task timed out after {spec.timeout_s:.2f} seconds"})
        except _Gone:
            status = await env.exit_status()
            self._discard(env)
            raise FunctionError({"errorType": "Runtime.ExitError", "errorMessage":
                                 f"RequestId: {request_id} Error: Runtime exited with error: {status}"})
        except BaseException:  # cancelled mid-invocation: the environment's state is unknown
            self._discard(env)
            raise
        self._release(env)
        if reply.get("stream_writes") and self.on_stream_writes is not None:
            self.on_stream_writes(reply["stream_writes"])
        if "error" in reply:
            raise FunctionError(reply["error"])
        return reply.get("result")

    def _start_reaper(self) -> None:
        if self._reaper is None and self.idle_seconds > 0:
            self._reaper = asyncio.get_running_loop().create_task(self._reap())

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(max(1.0, min(60.0, self.idle_seconds / 4)))
            cutoff = time.monotonic() - self.idle_seconds
            for pool in self._pools.values():
                for env in [e for e in pool.idle if e.last_used < cutoff or not e.alive]:
                    pool.idle.remove(env)
                    self._discard(env)


def describe_event(event: Any) -> Tuple[str, str]:
    """(route, connection) for the invocation's log line, from whichever event it is."""
    if not isinstance(event, dict):
        return "-", "-"
    context = event.get("requestContext") or {}
    if "routeKey" in context and "connectionId" in context:
        return str(context["routeKey"]), str(context["connectionId"])
    if "httpMethod" in event:
        return f"{event['httpMethod']} {event.get('path') or event.get('resource', '')}", "-"
    if event.get("source") == "aws.events":
        return "schedule", "-"
    records = event.get("Records")
    if isinstance(records, list) and records and isinstance(records[0], dict) \
            and records[0].get("eventSource") == "aws:dynamodb":
        return f"stream ({len(records)} records)", "-"
    if event.get("type") in ("TOKEN", "REQUEST"):
        return f"authorizer {event.get('methodArn', '').rsplit('/', 2)[-1] or ''}".strip(), "-"
    return "-", "-"


def watch_files(root: str, on_change: Callable[[], Any], interval: float = 1.0) -> "asyncio.Task":
    """Poll the project's Python files; call ``on_change`` (sync or async) when one changes."""

    def snapshot() -> Dict[str, float]:
        found: Dict[str, float] = {}
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if not d.startswith(".") and d not in ("node_modules", "__pycache__")]
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    try:
                        found[path] = os.stat(path).st_mtime
                    except OSError:
                        pass
        return found

    async def poll() -> None:
        loop = asyncio.get_running_loop()
        before = await loop.run_in_executor(None, snapshot)
        while True:
            await asyncio.sleep(interval)
            now = await loop.run_in_executor(None, snapshot)
            if now != before:
                changed = sorted(set(now.items()) ^ set(before.items()))
                log.info("changed: %s", ", ".join(sorted({os.path.relpath(p, root) for p, _ in changed})[:5]))
                before = now
                result = on_change()
                if asyncio.iscoroutine(result):
                    await result

    return asyncio.get_running_loop().create_task(poll())
