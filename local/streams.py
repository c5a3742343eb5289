"""DynamoDB Streams, locally: the app's ``@app.on_dynamodb_record`` handlers get the records a
table's stream would carry (docs/search.md, "Locally").

The local stores (moto's server, dynalite) keep no stream the functions could read, so this is
the stand-in, and it is local-only: in the process that runs the functions, every write that
DynamoDB accepted on a table with a stream (chalicelib.models.STREAMS) is noted as it returns
(pynamodb's ``Connection.dispatch``, the one door every table call goes through); a thread of its
own then reads each noted item as it is now and invokes the handler with a batch of records shaped
like Lambda's DynamoDB event (``eventName`` INSERT/MODIFY/REMOVE, ``Keys``, ``NewImage``,
``SequenceNumber``, ``StreamViewType``), at most ``batch_size`` at a time, after at most
``batch_window`` seconds, as the event source mapping would. The writer never waits for it.

What differs from AWS: the image is the item when it is read (a moment after the write), not
each intermediate image; a refused conditional write carries no record (as in AWS); a failed
batch is logged and dropped, not retried until it expires.

    from local import streams
    feed = streams.attach(app)     # in the process that runs the functions, before they run
    ...
    feed.drain()                   # tests: wait until every noted write was handed over
    feed.stop()
"""
from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from typing import Any, Callable, Dict, List, Optional, Tuple

from pynamodb.connection.base import Connection

log = logging.getLogger("local.streams")

WRITES = ("PutItem", "UpdateItem", "DeleteItem")
REGION = "us-east-1"
ACCOUNT = "000000000000"


class _Context:
    """What Lambda hands a function as its second argument (the parts the app reads)."""

    def __init__(self, function_name: str, timeout_s: float = 60.0) -> None:
        self.function_name = function_name
        self.aws_request_id = str(uuid.uuid4())
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function_name}"
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def stream_arn(table_name: str) -> str:
    return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table_name}/stream/local"


def stream_record(table_name: str, event_name: str, keys: Dict[str, Any], new_image: Optional[Dict[str, Any]],
                  sequence_number: int, view_type: str = "NEW_IMAGE") -> Dict[str, Any]:
    """One record as Lambda delivers it from a DynamoDB stream (typed attribute values)."""
    body: Dict[str, Any] = {"ApproximateCreationDateTime": int(time.time()), "Keys": keys,
                            "SequenceNumber": f"{sequence_number:021d}", "SizeBytes": _size(new_image or keys),
                            "StreamViewType": view_type}
    if new_image is not None and view_type in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES"):
        body["NewImage"] = new_image
    return {"eventID": uuid.uuid4().hex, "eventName": event_name, "eventVersion": "1.1",
            "eventSource": "aws:dynamodb", "awsRegion": REGION, "dynamodb": body,
            "eventSourceARN": stream_arn(table_name)}


def _size(image: Dict[str, Any]) -> int:
    from bench.metering import item_size

    return item_size(image)


class _Consumer:
    """One event source mapping: a table's stream to one handler."""

    def __init__(self, table_name: str, key_names: List[str], view_type: str, handler: Callable[..., Any],
                 function_name: str, batch_size: int, batch_window: float) -> None:
        self.table_name = table_name
        self.key_names = key_names
        self.view_type = view_type
        self.handler = handler
        self.function_name = function_name
        self.batch_size = batch_size
        self.batch_window = batch_window
        self.pending: "queue.Queue[Tuple[str, Dict[str, Any]]]" = queue.Queue()


class LocalStreams:
    def __init__(self, consumers: List[_Consumer], models: Dict[str, Any]) -> None:
        self.consumers = consumers
        self._models = models  # table name -> its pynamodb model (for reading images)
        self._by_table: Dict[str, List[_Consumer]] = {}
        for consumer in consumers:
            self._by_table.setdefault(consumer.table_name, []).append(consumer)
        self._sequence = 0
        self._lock = threading.Lock()
        self._outstanding = 0
        self._idle = threading.Condition(self._lock)
        self._stopped = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(c,), name=f"stream-{c.function_name}", daemon=True)
                         for c in consumers]
        self._original: Optional[Callable[..., Any]] = None

    # ---- noting writes ------------------------------------------------------------------------

    def note(self, operation: str, kwargs: Dict[str, Any]) -> None:
        """A write DynamoDB accepted: queue a record for each consumer of its table."""
        if operation not in WRITES:
            return
        consumers = self._by_table.get(kwargs.get("TableName", ""))
        if not consumers:
            return
        for consumer in consumers:
            key = kwargs.get("Key") or {name: kwargs["Item"][name] for name in consumer.key_names}
            with self._lock:
                self._outstanding += 1
            consumer.pending.put((operation, key))

    def install(self) -> "LocalStreams":
        original = self._original = Connection.dispatch
        feed = self

        def dispatch(connection: Any, operation_name: str, operation_kwargs: Dict[str, Any]) -> Any:
            result = original(connection, operation_name, operation_kwargs)
            feed.note(operation_name, operation_kwargs)
            return result

        Connection.dispatch = dispatch
        for thread in self._threads:
            thread.start()
        return self

    # ---- feeding the handlers -----------------------------------------------------------------

    def _run(self, consumer: _Consumer) -> None:
        while not self._stopped.is_set():
            try:
                first = consumer.pending.get(timeout=0.2)
            except queue.Empty:
                continue
            batch = [first]
            deadline = time.monotonic() + consumer.batch_window
            while len(batch) < consumer.batch_size:
                try:
                    batch.append(consumer.pending.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            try:
                self._deliver(consumer, batch)
            except Exception:
                log.exception("stream handler %s failed on %d records (dropped)", consumer.function_name, len(batch))
            finally:
                with self._lock:
                    self._outstanding -= len(batch)
                    self._idle.notify_all()

    def _deliver(self, consumer: _Consumer, batch: List[Tuple[str, Dict[str, Any]]]) -> None:
        records = []
        for operation, key in batch:
            image = None if operation == "DeleteItem" else self._read_item(consumer.table_name, key)
            with self._lock:
                self._sequence += 1
                sequence = self._sequence
            if image is None:
                event_name = "REMOVE"
            else:
                event_name = "INSERT" if operation == "PutItem" else "MODIFY"
            records.append(stream_record(consumer.table_name, event_name, key, image, sequence, consumer.view_type))
        consumer.handler({"Records": records}, _Context(consumer.function_name))

    def _read_item(self, table_name: str, key: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        """The item as it is now (its NEW_IMAGE), read past the hook."""
        connection = self._models[table_name]._get_connection().connection
        read = self._original or Connection.dispatch
        found = read(connection, "GetItem", {"TableName": table_name, "Key": key, "ConsistentRead": True})
        return found.get("Item")

    def drain(self, timeout: float = 30.0) -> None:
        """Wait until every write noted so far was handed to its handler."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._outstanding:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self._outstanding} stream records still undelivered")
                self._idle.wait(left)

    def stop(self) -> None:
        self._stopped.set()
        if self._original is not None and Connection.dispatch is not self._original:
            Connection.dispatch = self._original
        for thread in self._threads:
            thread.join(timeout=5)


def attach(app: Any, batch_window: Optional[float] = None) -> LocalStreams:
    """Feed every ``@app.on_dynamodb_record`` handler of ``app`` from the writes of this process to
    the tables in chalicelib.models.STREAMS whose name its stream ARN names. Returns the running feed."""
    from chalicelib.models import STREAMS

    consumers = []
    models: Dict[str, Any] = {}
    for source in getattr(app, "event_sources", []):
        if type(source).__name__ != "DynamoDBEventConfig":
            continue
        table_in_arn = source.stream_arn.split(":table/", 1)[-1].split("/", 1)[0]
        for model, view_type in STREAMS.items():
            if table_in_arn.endswith(model.Meta.base_name):
                key_names = [k["AttributeName"] for k in model._get_schema()["key_schema"]]
                models[model.Meta.table_name] = model
                window = source.maximum_batching_window_in_seconds if batch_window is None else batch_window
                consumers.append(_Consumer(model.Meta.table_name, key_names, view_type, app.handler_map[source.name],
                                           source.name, source.batch_size, float(window)))
    return LocalStreams(consumers, models).install()
