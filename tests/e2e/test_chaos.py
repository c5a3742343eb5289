"""Chaos, bounded (about a minute): bench/chaos.py at a small scale against a fresh local stack.

Visitors (some with two tabs) and agents on real sockets are killed with RST and FIN, right after
a `send` frame too, reload their pages, and see their conversations closed and transferred; every
client follows docs/protocol.md. Afterwards the store must hold every message exactly once, every
empty seq must have been reported as a gap, and every client must have seen every message of its
conversations. `python -m bench.chaos` is the full-size run.
"""
from __future__ import annotations

import json

import pytest

from bench.chaos import ChaosConfig, run_chaos, summary

pytestmark = pytest.mark.timeout(420)

CONFIG = ChaosConfig(
    visitors=12, messages=12, agents=2, seed=20261122, duration_limit=150,
    two_tab_share=0.5, wordy_long_share=1.0, think_mean=0.6, idle_kill_rate=0.08, mid_send_kill_rate=0.12,
    reload_rate=0.05,
    agent_reply_rate=0.4, agent_action_every=2.0,
)


def _explain(report, kind):
    found = [f for f in report["failures"] if f["kind"] == kind][:3]
    return "\n".join(json.dumps(f, ensure_ascii=False, indent=1) for f in found)


def test_no_message_lost_duplicated_or_unseen_under_chaos(tmp_path):
    report = run_chaos(CONFIG, server_log=tmp_path / "server.log", events_log=tmp_path / "events.jsonl")
    print(summary(report))
    figures, chaos = report["figures"], report["chaos"]

    assert figures["completed"], f"the run did not finish its traffic: {chaos}"
    # the chaos happened, so that passing means something
    assert report["clients"]["visitor_tabs"] > CONFIG.visitors, "no visitor had a second tab"
    for kind in ("kill_rst", "kill_fin", "mid_send_kills", "resends", "reloads", "agent_closes",
                 "agent_transfers", "texts_at_limit", "texts_long", "sync_pages_with_more"):
        assert chaos.get(kind, 0) > 0, f"no {kind} in this run: {chaos}"

    messages = figures["messages"]
    assert messages["generated_by_visitors"] == CONFIG.visitors * CONFIG.messages
    assert messages["stored"] >= messages["generated_by_visitors"]
    assert messages["lost"] == 0, _explain(report, "lost")
    assert messages["refused_unexpectedly"] == 0, _explain(report, "refused")
    assert messages["duplicated"] == 0, _explain(report, "duplicate_client_msg_id") + _explain(report, "duplicate_text")
    assert messages["ack_mismatch"] == 0, _explain(report, "ack_mismatch")
    assert messages["corrupted"] == 0, _explain(report, "corrupted")
    assert figures["seq"]["unexplained_gaps"] == 0, _explain(report, "unexplained_gap")
    assert figures["seq"]["seq_conflicts"] == 0, _explain(report, "seq_conflict")
    assert figures["unseen"]["total"] == 0, _explain(report, "unseen")
    assert figures["ok"]
