"""The local stack's data folder: what one run made is there after a restart with the same
--data-dir; reset_data_dir (`make reset`) starts the next run fresh; the stack says which."""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from local.data_dir import MARKER, NotADataDir, open_data_dir, reset_data_dir
from tests.e2e.stack import _UNIT_TEST_ENV, ROOT, RunningStack

ORIGIN = "https://kept-shop.example"


def admin(stack: RunningStack, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in _UNIT_TEST_ENV}
    return subprocess.run([sys.executable, "-m", "admin", "--stack", stack.base, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def kept_site_session(stack: RunningStack) -> int:
    return stack.rest("POST", "/v1/visitor/session", json={"site_id": "kept"}, headers={"Origin": ORIGIN}).status_code


def test_a_site_made_with_the_admin_cli_survives_a_restart_until_reset(tmp_path):
    data = tmp_path / "data"
    first = RunningStack(data_dir=data)
    try:
        assert first.info["store"] == "dynalite" and first.info["existing_data"] is False
        assert f"fresh data in {data}" in first.log_text()
        made = admin(first, "create-site", "--name", "Kept Shop", "--origin", ORIGIN, "--site-id", "kept")
        assert made.returncode == 0, made.stderr
        assert kept_site_session(first) == 200
        agent_token = first.agent()["token"]
    finally:
        first.stop()

    second = RunningStack(data_dir=data)
    try:
        assert second.info["existing_data"] is True
        assert f"using existing data in {data}" in second.log_text()
        assert kept_site_session(second) == 200
        assert second.visitor()["token"]  # the kept demo site answers the demo page on this run's port
        assert admin(second, "snippet", "--site", "kept", "--script-url", "https://cdn.example/w.js").returncode == 0
        # The token secret is kept too: the agent's session from the first run is still good.
        assert second.rest("GET", "/v1/conversations", token=agent_token).status_code == 200
    finally:
        second.stop()

    assert reset_data_dir(data) is True
    third = RunningStack(data_dir=data)
    try:
        assert f"fresh data in {data}" in third.log_text()
        gone = admin(third, "snippet", "--site", "kept", "--script-url", "https://cdn.example/w.js")
        assert gone.returncode == 2 and "site_not_found" in gone.stderr
        assert third.rest("GET", "/v1/conversations", token=agent_token).status_code == 401
        assert third.agent()["token"]  # the demo site and agent are seeded again
    finally:
        third.stop()


def test_reset_deletes_only_a_data_folder(tmp_path):
    assert reset_data_dir(tmp_path / "never-made") is False
    assert open_data_dir(tmp_path / "data") is False
    (tmp_path / "data" / "token-secret").write_text("x")
    assert open_data_dir(tmp_path / "data") is True
    assert reset_data_dir(tmp_path / "data") is True and not (tmp_path / "data").exists()

    someone_elses = tmp_path / "documents"
    someone_elses.mkdir()
    (someone_elses / "thesis.txt").write_text("years of work")
    with pytest.raises(NotADataDir, match=MARKER):
        reset_data_dir(someone_elses)
    assert (someone_elses / "thesis.txt").read_text() == "years of work"


def test_the_moto_store_says_its_tables_are_not_kept(tmp_path):
    stack = RunningStack(extra_args=["--store", "moto"], data_dir=tmp_path)
    try:
        assert stack.info["store"] == "moto"
        assert "tables in memory (--store moto)" in stack.log_text()
        assert stack.agent()["token"]
    finally:
        stack.stop()


def test_without_node_the_stack_stops_and_says_how_to_install_it(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in _UNIT_TEST_ENV}
    env["PATH"] = str(tmp_path)  # no node on it
    run = subprocess.run([sys.executable, "-m", "local", "--port", "0", "--data-dir", str(tmp_path / "data")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert "needs Node.js" in run.stderr and "make setup" in run.stderr
    assert "Traceback" not in run.stderr
