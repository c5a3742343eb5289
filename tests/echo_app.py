"""A minimal Chalice WebSocket app, not ours: proves the local gateway serves any Chalice app."""
import os
import time

import boto3
from chalice import Chalice, Response

app = Chalice(app_name="echo")
events = []  # every event the handlers received, in order


def _client():
    return boto3.client("apigatewaymanagementapi", endpoint_url=os.environ["ECHO_MANAGEMENT_ENDPOINT"],
                        region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")


@app.on_ws_connect()
def connect(event):
    events.append(event.to_dict())
    if (event.to_dict().get("queryStringParameters") or {}).get("refuse"):
        return Response(body="no", status_code=403)
    return None


@app.on_ws_message()
def message(event):
    events.append(event.to_dict())
    if event.body.startswith("sleep"):
        time.sleep(0.5)
    _client().post_to_connection(ConnectionId=event.connection_id, Data=("echo:" + event.body).encode())


@app.on_ws_disconnect()
def disconnect(event):
    events.append(event.to_dict())


@app.route("/hello", cors=True)
def hello():
    return {"hello": "world"}


@app.schedule("rate(5 minutes)")
def tick(event):
    events.append({"scheduled": event.to_dict()})
