"""DynamoDB Streams, locally: a Deployment's stream functions (StreamSource, e.g. the app's
``@app.on_dynamodb_record`` handler) get the records a table's stream would carry (docs/search.md,
"Locally").

The local stores (moto's server, dynalite) keep no stream a function could read, so this is the
stand-in, local-only, across processes:
1. every execution environment notes the items its function wrote to a table with a stream (its
   DynamoDB calls, through botocore; local/lambda_worker.py ``observe_writes``) and its reply
   carries them to the runtime (local/lambda_runtime.py ``stream_tables``, ``on_stream_writes``);
   REST routes served in the gateway's own process are observed there the same way;
2. here, each StreamSource has a queue; a task takes up to ``batch_size`` noted writes, waiting at
   most ``batching_window_s`` after the first, takes each item's image from its note (a PutItem's
   item, an UpdateItem's ALL_NEW answer: the item as that write left it) or else reads it as it is
   now (GetItem, ConsistentRead, from the store), builds records shaped like Lambda's DynamoDB event
   (``eventName`` INSERT/MODIFY/REMOVE, ``Keys``, ``NewImage``, ``SequenceNumber``,
   ``StreamViewType``) and invokes the function through the runtime: its own environments, as an
   event source mapping would. The writer never waits for it.

What differs from AWS:
- a write whose call does not hold the whole item (an UpdateItem without ALL_NEW, a transaction's
  Update) carries the item as read a moment later, not its image at the write;
- no OldImage (OLD_IMAGE and NEW_AND_OLD_IMAGES get NewImage only); a PutItem is INSERT even when it
  replaced an item (AWS says MODIFY); an UpdateItem that created the item is MODIFY (AWS: INSERT);
  a write whose item is gone by the time it is read is REMOVE;
- a refused conditional write or cancelled transaction carries no record (as in AWS), nor does a
  write whose environment was killed mid-invocation (timeout, crash) nor one made by anything but
  the deployment's functions (the admin CLI, another process writing to the store);
- a batch whose function fails is logged and dropped, not retried, bisected or sent to a
  failure destination; order is kept per source, not per item across sources;
- the view type comes from the table's StreamSpecification (DescribeTable), NEW_IMAGE when the
  table has none (the Chalice project's tables are created without one).

    feed = LocalStreams(deployment.streams, boto3.client("dynamodb", endpoint_url=...))
    runtime.stream_tables = await feed.start(runtime.invoke)   # on the runtime's event loop
    runtime.on_stream_writes = feed.note
    ...
    await feed.drain()    # tests: wait until every noted write was delivered (or dropped)
    await feed.stop()
"""
from __future__ import annotations

import asyncio
import base64
import itertools
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Dict, List, Optional, Sequence

from local.functions import StreamSource

log = logging.getLogger("local.streams")

REGION = "us-east-1"
ACCOUNT = "000000000000"
DEFAULT_VIEW_TYPE = "NEW_IMAGE"

Invoke = Callable[[str, Any], Awaitable[Any]]


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


@dataclass
class _Consumer:
    """One event source mapping: a table's stream to one function."""

    source: StreamSource
    view_type: str
    pending: "asyncio.Queue[Dict[str, Any]]" = field(default_factory=asyncio.Queue)


class LocalStreams:
    def __init__(self, sources: Sequence[StreamSource], dynamodb: Any) -> None:
        """``sources``: the Deployment's streams; ``dynamodb``: a boto3 DynamoDB client of the store
        (describes the tables, reads the images; called from worker threads)."""
        self.sources = list(sources)
        self.dynamodb = dynamodb
        self._consumers: Dict[str, List[_Consumer]] = {}  # table name -> its consumers
        self._tasks: List[asyncio.Task] = []
        self._sequence = itertools.count(1)  # next() is atomic: the reading threads share it
        self._outstanding = 0
        self._idle: Optional[asyncio.Condition] = None
        self.delivered = 0  # records handed to functions that returned
        self.dropped = 0    # records of batches whose function failed

    async def start(self, invoke: Invoke) -> Dict[str, List[str]]:
        """Describe the tables, start one task per source invoking ``invoke(function, event)``;
        returns ``{table: [key attribute names]}`` for the runtime's ``stream_tables``."""
        loop = asyncio.get_running_loop()
        self._idle = asyncio.Condition()
        stream_tables: Dict[str, List[str]] = {}
        for source in self.sources:
            try:
                table = (await loop.run_in_executor(
                    None, lambda: self.dynamodb.describe_table(TableName=source.table)))["Table"]
            except Exception as exc:
                log.warning("stream of %s for %s: the table cannot be described (%s); not fed locally",
                            source.table, source.function, exc)
                continue
            stream_tables[source.table] = [key["AttributeName"] for key in table["KeySchema"]]
            view_type = (table.get("StreamSpecification") or {}).get("StreamViewType", DEFAULT_VIEW_TYPE)
            consumer = _Consumer(source, view_type)
            self._consumers.setdefault(source.table, []).append(consumer)
            self._tasks.append(loop.create_task(self._run(consumer, invoke)))
            log.info("stream of %s feeds %s (batches of %d, window %.1fs, %s)", source.table, source.function,
                     source.batch_size, source.batching_window_s, view_type)
        return stream_tables

    def note(self, writes: List[Dict[str, Any]]) -> None:
        """Writes DynamoDB accepted (``{"operation", "table", "keys"}``): queued for every consumer
        of their table. Call on the event loop ``start`` ran on."""
        for write in writes:
            for consumer in self._consumers.get(write.get("table", ""), ()):
                self._outstanding += 1
                consumer.pending.put_nowait(write)

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait until every write noted so far was delivered to its function (or dropped)."""
        assert self._idle is not None, "start() first"
        async with self._idle:
            await asyncio.wait_for(self._idle.wait_for(lambda: self._outstanding == 0), timeout)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    # ---- feeding the functions ----------------------------------------------------------------

    async def _run(self, consumer: _Consumer, invoke: Invoke) -> None:
        source = consumer.source
        loop = asyncio.get_running_loop()
        while True:
            batch = [await consumer.pending.get()]
            deadline = loop.time() + source.batching_window_s
            while len(batch) < source.batch_size:
                left = deadline - loop.time()
                try:
                    batch.append(consumer.pending.get_nowait() if left <= 0
                                 else await asyncio.wait_for(consumer.pending.get(), left))
                except (asyncio.QueueEmpty, asyncio.TimeoutError):
                    break
            try:
                records = await loop.run_in_executor(None, self._records, consumer, batch)
                await invoke(source.function, {"Records": records})
                self.delivered += len(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.dropped += len(batch)
                log.warning("stream of %s: %s failed on %d records (dropped, not retried): %s",
                            source.table, source.function, len(batch), getattr(exc, "payload", exc))
            finally:
                self._outstanding -= len(batch)
                assert self._idle is not None
                async with self._idle:
                    self._idle.notify_all()

    def _records(self, consumer: _Consumer, batch: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """The batch's records, each with its item as its write left it, or else as it is now (in a
        worker thread)."""
        records = []
        for write in batch:
            image = write.get("image")
            if image is None and write["operation"] != "DeleteItem":
                key = {name: _wire(value) for name, value in write["keys"].items()}
                image = self.dynamodb.get_item(TableName=write["table"], Key=key, ConsistentRead=True).get("Item")
                image = None if image is None else _as_json(image)
            if image is None:
                event_name = "REMOVE"
            else:
                event_name = "INSERT" if write["operation"] == "PutItem" else "MODIFY"
            records.append(stream_record(write["table"], event_name, write["keys"], image, next(self._sequence),
                                         consumer.view_type))
        return records


def _wire(value: Dict[str, str]) -> Dict[str, Any]:
    """A record's key value (binary in base64) as botocore takes it (bytes)."""
    return {"B": base64.b64decode(value["B"])} if "B" in value else value


def _as_json(value: Any) -> Any:
    """An item as Lambda's event carries it: binary values in base64."""
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, dict):
        return {key: _as_json(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [_as_json(inner) for inner in value]
    return value
