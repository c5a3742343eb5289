"""One botocore client per endpoint for every table, and one Management API client per endpoint,
however many threads ask first (a cold sweep's drops all start at once)."""
from __future__ import annotations

import threading
import time

from chalicelib import delivery, models


def _first_use_from_threads(build, threads: int = 8):
    barrier = threading.Barrier(threads)
    results = []

    def run():
        barrier.wait()
        results.append(build())

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return results


def test_every_table_uses_one_dynamodb_client_built_once(monkeypatch):
    models._clients.clear()
    for model in models.ALL_MODELS:
        monkeypatch.setattr(model, "_connection", None)
    results = _first_use_from_threads(lambda: models.Conversation._get_connection().connection.client)
    clients = {id(model._get_connection().connection.client) for model in models.ALL_MODELS}
    assert len(clients) == 1 and {id(c) for c in results} == clients
    assert len(models._clients) == 1


def test_the_management_api_client_is_built_once_under_concurrent_pushes(monkeypatch):
    from chalicelib import management_api

    monkeypatch.setattr(delivery, "_clients", {})
    built = []
    real = management_api.ManagementApi

    def counting_client(*args, **kwargs):
        built.append(args[0])
        time.sleep(0.05)  # a slow build: every thread arrives while the first is building
        return real(*args, **kwargs)

    monkeypatch.setattr(management_api, "ManagementApi", counting_client)
    endpoint = "https://abc.execute-api.us-east-1.amazonaws.com/api"
    results = _first_use_from_threads(lambda: delivery._client(endpoint))
    assert built == [endpoint]
    assert len({id(c) for c in results}) == 1
