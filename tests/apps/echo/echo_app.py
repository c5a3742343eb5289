"""A Chalice WebSocket app that is not Kefu: proves the local gateway and runtime serve any app.

It runs in the local runtime's worker processes: it reports the events it received by appending
JSON lines to $ECHO_EVENTS_FILE, and answers frames through Chalice's own websocket_api.
Frames it understands (anything else is echoed back with the greeting from its config):
  sleep / sleep-<s>   sleep 0.5 s (or <s>), then echo          raise    raise ValueError
  crash               the process exits                        pid      its process id
  state               what this module has seen ($connect's cache, invocations)
  remaining           context.get_remaining_time_in_millis()   version  VERSION below
"""
import json
import os
import time

from boto3.session import Session
from chalice import Chalice, Response

VERSION = "one"

app = Chalice(app_name="echo")
app.websocket_api.session = Session()
app.experimental_feature_flags.update(["WEBSOCKETS"])

SEEN = {"connect": [], "message": 0}  # module state: each function's environments have their own


def _record(event):
    path = os.environ.get("ECHO_EVENTS_FILE")
    if path:
        with open(path, "a") as handle:
            handle.write(json.dumps(event) + "\n")


@app.on_ws_connect()
def connect(event):
    _record(event.to_dict())
    SEEN["connect"].append(event.connection_id)
    query = event.to_dict().get("queryStringParameters") or {}
    if query.get("refuse"):
        return Response(body="no", status_code=403)
    if query.get("explode"):
        raise RuntimeError("connect failed")
    return None


@app.on_ws_message()
def message(event):
    _record(event.to_dict())
    SEEN["message"] += 1
    body = event.body
    reply = os.environ["ECHO_GREETING"] + body
    if body.startswith("sleep"):
        time.sleep(float(body.split("-", 1)[1]) if "-" in body else 0.5)
    elif body == "raise":
        raise ValueError("the handler failed")
    elif body == "crash":
        os._exit(3)
    elif body == "pid":
        reply = str(os.getpid())
    elif body == "state":
        reply = json.dumps({"pid": os.getpid(), **SEEN})
    elif body == "remaining":
        reply = str(event.context.get_remaining_time_in_millis())
    elif body == "version":
        reply = VERSION
    app.websocket_api.send(event.connection_id, reply)


@app.on_ws_disconnect()
def disconnect(event):
    _record(event.to_dict())


@app.route("/hello", cors=True)
def hello():
    return {"hello": "world"}


@app.schedule("rate(5 minutes)")
def tick(event):
    _record({"scheduled": event.to_dict()})
