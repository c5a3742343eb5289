"""What the chaos bench (bench/chaos.py) checks its clients against: a local stack's store, read
through chalicelib.models.

    KEFU_DYNAMODB_ENDPOINT=... KEFU_TABLE_PREFIX=... python -m bench.chaos_store --site demo

Prints one JSON object: every conversation of the site with every item of its messages table
(tombstones and items without a seq included). Run as a subprocess by the bench, because
chalicelib fixes its table names when first imported, and the caller (pytest, say) may already
have imported it for another store.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict, List


def dump(site_id: str) -> Dict[str, Any]:
    from chalicelib.models import Conversation, Message

    conversations: List[Dict[str, Any]] = []
    # A Scan, which the app never does: this reads a whole test store once, whatever indexes the
    # models define today.
    for conversation in Conversation.scan(Conversation.site_id == site_id, consistent_read=True):
        items = []
        for message in Message.query(conversation.conversation_id, consistent_read=True):
            items.append({
                "client_msg_id": message.client_msg_id,
                "seq": int(message.seq) if message.seq is not None else None,
                "text": message.text,
                "sender_role": message.sender_role,
                "sender_id": message.sender_id,
                "gap": bool(getattr(message, "gap", None)),
                "created_at": message.created_at,
            })
        conversations.append({
            "conversation_id": conversation.conversation_id,
            "visitor_id": conversation.visitor_id,
            "status": conversation.status,
            "agent_id": conversation.agent_id,
            "last_seq": int(conversation.last_seq or 0),
            "created_at": conversation.created_at,
            "messages": items,
        })
    return {"site_id": site_id, "conversations": conversations}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--site", required=True)
    args = parser.parse_args()
    json.dump(dump(args.site), sys.stdout, ensure_ascii=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
