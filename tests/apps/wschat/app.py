"""A WebSocket chat written the way Chalice's tutorial writes one: nothing in it knows about the
local stack. The first message picks a nickname, `/join <room>` enters a room, anything else goes
to everyone else in the room, through Chalice's own app.websocket_api.send."""
from boto3.session import Session
from chalice import Chalice

from chalicelib import Handler, Sender, Storage

app = Chalice(app_name="wschat")
app.websocket_api.session = Session()
app.experimental_feature_flags.update(["WEBSOCKETS"])

STORAGE = Storage.from_env()
SENDER = Sender(app, STORAGE)
HANDLER = Handler(STORAGE, SENDER)


@app.on_ws_connect()
def connect(event):
    STORAGE.create_connection(event.connection_id)


@app.on_ws_disconnect()
def disconnect(event):
    STORAGE.delete_connection(event.connection_id)


@app.on_ws_message()
def message(event):
    HANDLER.handle(event.connection_id, event.body)
