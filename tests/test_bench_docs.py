"""`make bench` regenerates docs/cost.md and docs/scale.md: the same code on a small workload, in
a subprocess of its own (it starts the local stack), writing to a temporary folder."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.e2e.stack import ROOT, _UNIT_TEST_ENV


def _run(*args: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in _UNIT_TEST_ENV}
    done = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_cost_and_scale_docs_generate_from_a_small_run(tmp_path):
    _run("bench.cost", "--conversations", "1", "--messages", "2", "--out", str(tmp_path))
    _run("bench.scale_model", "--cost", str(tmp_path / "results" / "cost.json"), "--out", str(tmp_path))
    cost = json.loads((tmp_path / "results" / "cost.json").read_text())
    send = cost["actions"]["ws_message send"]
    # The per-message budget (tests/test_call_budget.py: 2 writes, 3 units), plus what a conversation
    # pays once, shared by its messages (2 here): its opening's report count, auto-close timer and mail,
    # and the first agent reply's report write.
    assert 2 <= send["writes"] <= 2 + 4 / 2 and 3 <= send["write_units"] <= 3 + 6 / 2, send
    assert send["posts"] == 4  # the ack + the other visitor tab + two agent tabs
    tutorial = cost["tutorial"]["per_message"]
    assert tutorial["queries"] == 2 and tutorial["items_read"] == tutorial["room_size"] + 2
    assert cost["stage"]["memory_mb"]["websocket_message"] == 512  # .chalice/config.json, prod
    month = cost["small_site_month"]["kefu"]
    assert month["total"] > 0 and abs(month["total"] - sum(v for k, v in month.items() if k != "total")) < 0.001
    cost_doc = (tmp_path / "docs" / "cost.md").read_text()
    assert f"**${month['total']:,.2f}**" in cost_doc
    scale = json.loads((tmp_path / "results" / "scale.json").read_text())
    ratios = [x["ratio"] for x in scale["limits"]]
    assert ratios == sorted(ratios, reverse=True)
    assert scale["limits"][0]["limit"] in (tmp_path / "docs" / "scale.md").read_text()
