"""One Lambda execution environment: a process that imports one function's handler and runs it.

Started by local/lambda_runtime.py (``python -c`` importing this module from the checkout, then
dropping the checkout from ``sys.path``) in the project folder, with the function's environment. It speaks length-prefixed JSON (a 4-byte big-endian length,
then UTF-8 JSON) over its stdin and its original stdout; the handler's own prints and logs go to
stderr, so nothing it writes can corrupt the protocol.

1. The runtime sends ``{"handler", "function_name", "memory_mb", "redirect"}``; the worker imports
   the handler (the cold start, timed) and answers ``{"ready": true, "init_ms"}`` or
   ``{"error": {...}}`` as Lambda reports init failures (Runtime.ImportModuleError, ...).
2. Then, one at a time, ``{"event", "request_id", "deadline_ms"}`` -> ``{"result"}`` or
   ``{"error": {"errorMessage", "errorType", "requestId", "stackTrace"}}``, the payload Lambda
   returns for an unhandled exception. Module state lives on between invocations, as in a warm
   Lambda container.

With ``stream_tables`` in the init config (``{table name: [key attribute names]}``), the worker
notes every item the handler's DynamoDB calls wrote to those tables (observe_writes) and adds them
to the reply of the invocation that wrote them as ``"stream_writes": [{"operation", "table",
"keys"}]``, which the runtime hands to the local stream stand-in (local/streams.py).

Management API calls reach the local gateway because API Gateway's events name a real-looking
domain (``{apiId}.execute-api.{region}.amazonaws.com``, what Chalice's ``websocket_api`` builds
its endpoint from) and, in this process only, botocore's HTTP layer sends requests for that host
to the gateway instead (``redirect``: the host pattern and the gateway's base URL). The app's
code and its boto3 clients are untouched; a client other than botocore would still go to AWS.
"""
from __future__ import annotations

import gc
import importlib
import importlib.abc
import importlib.util
import io
import json
import os
import re
import struct
import sys
import time
import traceback
from typing import Any, BinaryIO, Callable, Dict, List, Optional
from urllib.parse import urlsplit

HEADER = struct.Struct(">I")


def read_message(stream: BinaryIO) -> Optional[Dict[str, Any]]:
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    size = HEADER.unpack(header)[0]
    return json.loads(stream.read(size))


def write_message(stream: BinaryIO, message: Dict[str, Any]) -> None:
    data = json.dumps(message, separators=(",", ":")).encode()
    stream.write(HEADER.pack(len(data)) + data)
    stream.flush()


class LambdaContext:
    """What Lambda hands a function as its second argument."""

    def __init__(self, function_name: str, memory_mb: int, request_id: str, deadline_ms: int) -> None:
        region = os.environ.get("AWS_REGION", "us-east-1")
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = request_id
        self.invoked_function_arn = f"arn:aws:lambda:{region}:000000000000:function:{function_name}"
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "local")
        self.identity = None
        self.client_context = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))


def error_payload(exc: BaseException, request_id: Optional[str] = None,
                  error_type: Optional[str] = None, message: Optional[str] = None) -> Dict[str, Any]:
    payload: Dict[str, Any] = {
        "errorMessage": message if message is not None else str(exc),
        "errorType": error_type or type(exc).__name__,
        "stackTrace": traceback.format_tb(exc.__traceback__),
    }
    if request_id is not None:
        payload["requestId"] = request_id
    return payload


# ---- the Management API redirect ------------------------------------------------------------

def install_redirect(host_pattern: str, target: str) -> None:
    """Send botocore's requests for hosts matching ``host_pattern`` to ``target`` instead, once
    botocore's HTTP layer is imported (so apps that never use boto3 never pay for importing it)."""
    matcher = re.compile(host_pattern)
    target = target.rstrip("/")
    # Every DynamoDB call passes here too: when the pattern names execute-api hosts (the gateway's
    # does), other URLs go straight through without being parsed.
    hint = ".execute-api." if r"\.execute-api\." in host_pattern else ""

    def patch(module: Any) -> None:
        original = module.URLLib3Session.send

        def send(self: Any, request: Any) -> Any:
            if hint not in request.url:
                return original(self, request)
            parts = urlsplit(request.url)
            if parts.hostname and matcher.fullmatch(parts.hostname):
                request.url = target + parts.path + (f"?{parts.query}" if parts.query else "")
            return original(self, request)

        module.URLLib3Session.send = send

    if "botocore.httpsession" in sys.modules:
        patch(sys.modules["botocore.httpsession"])
    else:
        sys.meta_path.insert(0, _AfterImport("botocore.httpsession", patch))


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs ``hook(module)`` right after ``name`` is first imported."""

    def __init__(self, name: str, hook: Any) -> None:
        self.name, self.hook = name, hook

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        loader, hook = spec.loader, self.hook
        exec_module = loader.exec_module

        def exec_and_hook(module: Any) -> None:
            exec_module(module)
            hook(module)

        loader.exec_module = exec_and_hook  # type: ignore[method-assign]
        return spec


# ---- DynamoDB writes, for the local stream stand-in ----------------------------------------

def observe_writes(stream_tables: Dict[str, List[str]], sink: Callable[[Dict[str, Any]], None]) -> Callable[[], None]:
    """Call ``sink({"operation", "table", "keys"[, "image"]})`` for each item a DynamoDB call of this process
    wrote to a table of ``stream_tables`` (table name -> key attribute names), once DynamoDB
    accepted the call: PutItem, UpdateItem, DeleteItem, and each Put, Update and Delete of a
    TransactWriteItems or BatchWriteItem (less its UnprocessedItems). ``keys`` are typed attribute
    values as a stream record's ``Keys`` carries them (typed_key). It wraps botocore's ``BaseClient._make_api_call``, the
    call every boto3 client and pynamodb go through, once botocore.client is imported (so a
    function that never uses boto3 never imports it). Returns a function that takes it off again."""
    undo: List[Callable[[], None]] = []

    def patch(module: Any) -> None:
        base = module.BaseClient
        original = base._make_api_call

        def _make_api_call(self: Any, operation_name: str, api_params: Dict[str, Any]) -> Any:
            result = original(self, operation_name, api_params)
            if operation_name in _WRITES and self.meta.service_model.service_name == "dynamodb":
                try:
                    for note in written_items(operation_name, api_params, result, stream_tables):
                        sink(note)
                except Exception:  # never the app's problem: the write itself succeeded
                    sys.stderr.write(f"[local streams] could not note a {operation_name}:\n{traceback.format_exc()}")
            return result

        base._make_api_call = _make_api_call
        undo.append(lambda: setattr(base, "_make_api_call", original))

    if "botocore.client" in sys.modules:
        patch(sys.modules["botocore.client"])
    else:
        sys.meta_path.insert(0, _AfterImport("botocore.client", patch))

    def take_off() -> None:
        while undo:
            undo.pop()()

    return take_off


_WRITES = ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem")
_TRANSACT_KINDS = (("Put", "PutItem"), ("Update", "UpdateItem"), ("Delete", "DeleteItem"))


def written_items(operation: str, params: Dict[str, Any], result: Dict[str, Any],
                  stream_tables: Dict[str, List[str]]) -> List[Dict[str, Any]]:
    """The items a successful write call changed on the tables of ``stream_tables``. Where the call
    itself holds the item as it left it (a PutItem's item, an UpdateItem that returned ALL_NEW, as
    pynamodb's do) the note carries it as ``image``, in a stream record's JSON: the stream stand-in
    then has the image of that very write and reads nothing back."""

    def note(op: str, table: str, item_or_key: Dict[str, Any], image: Optional[Dict[str, Any]] = None
             ) -> Optional[Dict[str, Any]]:
        names = stream_tables.get(table)
        if names is None:
            return None
        written = {"operation": op, "table": table, "keys": {name: typed_key(item_or_key[name]) for name in names}}
        # Typed values only: boto3's resource layer hands plain ones (its keys are not dicts).
        if image is not None and all(isinstance(item_or_key[name], dict) for name in names):
            written["image"] = _json_values(image)
        return written

    found: List[Optional[Dict[str, Any]]] = []
    if operation == "PutItem":
        found.append(note(operation, params["TableName"], params["Item"], params["Item"]))
    elif operation == "UpdateItem":
        image = (result or {}).get("Attributes") if params.get("ReturnValues") == "ALL_NEW" else None
        found.append(note(operation, params["TableName"], params["Key"], image))
    elif operation == "DeleteItem":
        found.append(note(operation, params["TableName"], params["Key"]))
    elif operation == "TransactWriteItems":
        for entry in params.get("TransactItems", ()):
            for kind, op in _TRANSACT_KINDS:
                if kind in entry:
                    body = entry[kind]
                    found.append(note(op, body["TableName"], body.get("Item") or body["Key"], body.get("Item")))
    elif operation == "BatchWriteItem":
        unprocessed = (result or {}).get("UnprocessedItems") or {}
        for table, requests in params.get("RequestItems", {}).items():
            for request in requests:
                if request in unprocessed.get(table, ()):
                    continue
                if "PutRequest" in request:
                    item = request["PutRequest"]["Item"]
                    found.append(note("PutItem", table, item, item))
                elif "DeleteRequest" in request:
                    found.append(note("DeleteItem", table, request["DeleteRequest"]["Key"]))
    return [item for item in found if item is not None]


def _json_values(value: Any) -> Any:
    """Typed attribute values as a stream record's JSON carries them: binary in base64."""
    if isinstance(value, (bytes, bytearray)):
        return _base64(value)
    if isinstance(value, dict):
        return {key: _json_values(inner) for key, inner in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_json_values(inner) for inner in value]
    return value


def typed_key(value: Any) -> Dict[str, str]:
    """A key attribute's value as a stream record carries it in JSON: ``{"S"|"N"|"B": text}``,
    binary as base64. boto3's resource layer hands plain values (str, number, bytes, Binary)."""
    if isinstance(value, dict) and len(value) == 1:
        (kind, inner), = value.items()
        if kind in ("S", "N", "B"):
            return {"B": _base64(inner)} if kind == "B" else {kind: str(inner)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, (bytes, bytearray)) or hasattr(value, "value"):  # boto3's Binary wraps bytes
        return {"B": _base64(getattr(value, "value", value))}
    if isinstance(value, (int, float)) or type(value).__name__ == "Decimal":
        return {"N": str(value)}
    raise TypeError(f"not a key attribute value: {value!r}")


def _base64(data: Any) -> str:
    import base64

    return data if isinstance(data, str) else base64.b64encode(bytes(data)).decode()


# ---- the environment's life -------------------------------------------------------------------

def load_handler(handler: str) -> Any:
    module_name, _, attribute = handler.rpartition(".")
    if not module_name:
        raise ValueError(f"Bad handler '{handler}': not enough values to unpack (expected 2, got 1)")
    module = importlib.import_module(module_name)
    return getattr(module, attribute)


def init(config: Dict[str, Any], stream_writes: List[Dict[str, Any]]) -> Any:
    redirect = config.get("redirect")
    if redirect:
        install_redirect(redirect["host_pattern"], redirect["target"])
    if config.get("stream_tables"):
        observe_writes(config["stream_tables"], stream_writes.append)
    for layer in config.get("layers", ()):
        sys.path.append(os.path.join(layer, "python"))  # after the task root, as /opt/python on Lambda
    module_name = config["handler"].rpartition(".")[0]
    try:
        return load_handler(config["handler"])
    except ImportError as exc:
        raise _InitError("Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}") from exc
    except AttributeError as exc:
        raise _InitError("Runtime.HandlerNotFound",
                         f"Handler '{config['handler'].rpartition('.')[2]}' missing on module '{module_name}'") from exc
    except SyntaxError as exc:
        raise _InitError("Runtime.UserCodeSyntaxError", f"Syntax error in module '{module_name}': {exc}") from exc


class _InitError(Exception):
    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


def serve(requests: BinaryIO, replies: BinaryIO) -> None:
    config = read_message(requests)
    if config is None:
        return
    started = time.perf_counter()
    stream_writes: List[Dict[str, Any]] = []  # noted since the last reply (init's ride on the first)
    try:
        handler = init(config, stream_writes)
    except _InitError as exc:
        write_message(replies, {"error": error_payload(exc, error_type=exc.error_type)})
        return
    except Exception as exc:  # the module raised while being imported
        write_message(replies, {"error": error_payload(exc)})
        return
    write_message(replies, {"ready": True, "init_ms": round((time.perf_counter() - started) * 1000, 1)})
    # What init imported (the app, boto3) and what the first invocation built (botocore's clients
    # and service models are made on first use) live as long as the environment: frozen, the
    # collector's full passes no longer walk them. They took 60-190 ms under load, in every warm
    # environment at about the same time (bench/local_load.py).
    gc.freeze()
    first = True
    function_name, memory_mb = config["function_name"], int(config.get("memory_mb", 128))

    def reply(message: Dict[str, Any]) -> None:
        if stream_writes:
            message["stream_writes"] = list(stream_writes)
        write_message(replies, message)
        stream_writes.clear()

    while True:
        request = read_message(requests)
        if request is None:
            return
        request_id = request["request_id"]
        context = LambdaContext(function_name, memory_mb, request_id, int(request["deadline_ms"]))
        try:
            result = handler(request["event"], context)
        except Exception as exc:
            # What Lambda writes to the function's log for an unhandled exception.
            sys.stderr.write(f"[ERROR] {type(exc).__name__}: {exc}\n{''.join(traceback.format_exc())}")
            reply({"error": error_payload(exc, request_id)})
            continue
        try:
            reply({"result": result})
        except (TypeError, ValueError) as exc:
            reply({"error": error_payload(
                exc, request_id, "Runtime.MarshalError", f"Unable to marshal response: {exc}")})
        if first:
            gc.freeze()
            first = False


def main() -> None:
    # The protocol owns the original stdin and stdout; the handler gets /dev/null and stderr.
    requests = os.fdopen(os.dup(0), "rb", buffering=0)
    replies = os.fdopen(os.dup(1), "wb", buffering=0)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", buffering=0), write_through=True, line_buffering=True)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # the project folder, as /var/task on Lambda
    try:
        serve(io.BufferedReader(requests), replies)  # type: ignore[arg-type]
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
