import os

import boto3
from boto3.dynamodb.conditions import Attr
from chalice import WebsocketDisconnectedError


class Storage:
    """One item per connection: its nickname and room."""

    def __init__(self, table):
        self._table = table

    @classmethod
    def from_env(cls):
        return cls(boto3.resource("dynamodb").Table(os.environ.get("TABLE", "")))

    def create_connection(self, connection_id):
        self._table.put_item(Item={"connection_id": connection_id})

    def delete_connection(self, connection_id):
        self._table.delete_item(Key={"connection_id": connection_id})

    def get(self, connection_id):
        return self._table.get_item(Key={"connection_id": connection_id}).get("Item", {})

    def update(self, connection_id, **fields):
        self._table.put_item(Item={**self.get(connection_id), "connection_id": connection_id, **fields})

    def connections_in(self, room):
        return [item["connection_id"] for item in self._table.scan(FilterExpression=Attr("room").eq(room))["Items"]]


class Sender:
    def __init__(self, app, storage):
        self._app = app
        self._storage = storage

    def send(self, connection_id, message):
        try:
            self._app.websocket_api.send(connection_id, message)
        except WebsocketDisconnectedError:
            self._storage.delete_connection(connection_id)

    def broadcast(self, connection_ids, message):
        for connection_id in connection_ids:
            self.send(connection_id, message)


class Handler:
    def __init__(self, storage, sender):
        self._storage = storage
        self._sender = sender

    def handle(self, connection_id, message):
        record = self._storage.get(connection_id)
        if "username" not in record:
            self._storage.update(connection_id, username=message.strip())
            self._sender.send(connection_id, f"Using nickname {message.strip()}")
        elif message.startswith("/join "):
            room = message.split(" ", 1)[1].strip()
            self._storage.update(connection_id, room=room)
            self._sender.send(connection_id, f"Joined {room}")
            others = [c for c in self._storage.connections_in(room) if c != connection_id]
            self._sender.broadcast(others, f"{record['username']} joined {room}")
        elif "room" not in record:
            self._sender.send(connection_id, "Join a room first: /join <room>")
        else:
            others = [c for c in self._storage.connections_in(record["room"]) if c != connection_id]
            self._sender.broadcast(others, f"{record['username']}: {message}")
