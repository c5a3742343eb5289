"""Sweep cost against live (N) and stale (S) connections: DynamoDB items read per sweep.

    python -m bench.sweep_reads [--live 1000,10000,100000] [--stale 10,1000]

Runs against moto in-process; writes bench/results/sweep_reads.json.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import time
from typing import Dict, List

RESULTS = pathlib.Path(__file__).parent / "results"


def seed_connections(live: int, stale: int, now: float, start: int = 0) -> None:
    """Write connection records: ``live`` with a fresh heartbeat, ``stale`` silent for an hour."""
    from chalicelib import connections
    from chalicelib.config import settings
    from chalicelib.models import Connection

    old = now - settings().heartbeat_timeout - 3600
    with Connection.batch_write() as batch:
        for i in range(start, start + live + stale):
            connection_id = f"bench{i:09d}="
            last_seen = now if i - start < live else old
            batch.save(Connection(
                connection_id, role="visitor", site_id="bench", subject=f"v{i}",
                conversation_id=f"conv-bench-{i}", connected_at=int(now * 1000), last_seen=last_seen,
                sweep_shard=connections.sweep_shard(connection_id), expires_at=int(now) + 7200,
            ))


def measure(live_counts: List[int], stale_counts: List[int]) -> List[Dict[str, float]]:
    from moto import mock_aws

    from bench.metering import counting
    from chalicelib import delivery, sweep
    from chalicelib.models import create_tables

    delivery.close = lambda connection_id: None  # no API Gateway here; closing is not what is measured
    rows = []
    for stale in stale_counts:
        with mock_aws():
            create_tables()
            seeded = 0
            for live in sorted(live_counts):
                now = time.time()
                seed_connections(live - seeded, 0, now, start=seeded)
                seed_connections(0, stale, now, start=10**8 + seeded)
                seeded = live
                with counting() as calls:
                    started = time.perf_counter()
                    report = sweep.sweep()
                    elapsed = time.perf_counter() - started
                row = {"live": live, "stale": stale, "dropped": report.dropped,
                       "items_read": calls.items_read, "read_requests": calls.reads,
                       "write_requests": calls.writes, "scans": calls.scans, "seconds": round(elapsed, 3)}
                print(json.dumps(row))
                rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--live", default="1000,10000,100000")
    parser.add_argument("--stale", default="10,1000")
    args = parser.parse_args()
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "bench")
    os.environ.setdefault("KEFU_TABLE_PREFIX", "kefu-bench-")
    os.environ.pop("KEFU_DYNAMODB_ENDPOINT", None)
    rows = measure([int(n) for n in args.live.split(",")], [int(s) for s in args.stale.split(",")])
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sweep_reads.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(f"items read per sweep track S (stale), not N (live): see {RESULTS / 'sweep_reads.json'}")


if __name__ == "__main__":
    main()
