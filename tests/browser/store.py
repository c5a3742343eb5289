"""Reach a running local stack's DynamoDB from a browser test, through chalicelib.models.

The test process's chalicelib is configured for the unit tests' in-process moto tables (settings
and table names are read at import), so each operation runs in a child process configured like
the stack: ``python -m tests.browser.store OPERATION JSON_ARGS`` prints the result as JSON.
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[2]


def run(stack: Any, operation: str, **args: Any) -> Any:
    env = {**os.environ, "KEFU_DYNAMODB_ENDPOINT": stack.info["dynamodb_endpoint"],
           "KEFU_TABLE_PREFIX": stack.info["table_prefix"], "AWS_ACCESS_KEY_ID": "local",
           "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}
    done = subprocess.run([sys.executable, "-m", "tests.browser.store", operation, json.dumps(args)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"store {operation} failed:\n{done.stderr}")
    return json.loads(done.stdout)


def skip_seq(conversation_id: str) -> int:
    """Take the conversation's next seq and write nothing under it, as a send whose function died
    between its two writes leaves it. Returns the skipped seq."""
    from chalicelib.models import Conversation

    conversation = Conversation(conversation_id)
    conversation.update(actions=[Conversation.last_seq.add(1)])
    return int(conversation.last_seq)


def site_secret(site_id: str) -> str:
    from chalicelib.models import Site

    return Site.get(site_id).secret


def create_agent(site_id: str, email: str, password: str, name: str) -> str:
    from chalicelib import sites

    return sites.create_agent(site_id, email, password, name).agent_id


OPERATIONS = {"skip_seq": skip_seq, "site_secret": site_secret, "create_agent": create_agent}

if __name__ == "__main__":
    print(json.dumps(OPERATIONS[sys.argv[1]](**json.loads(sys.argv[2]))))
