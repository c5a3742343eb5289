"""Kefu admin CLI: sites, agents, secrets and the embed snippet.

    python -m admin create-site --name "My Shop" --origin https://shop.example
    python -m admin create-agent --site SITE --email ann@shop.example --password ... --name Ann [--role owner]
    python -m admin rotate-secret --site SITE
    python -m admin snippet --site SITE --script-url https://cdn.example/widget.js
    python -m admin set-password --site SITE --email ann@shop.example --password ...
    python -m admin disable-agent --site SITE --email ann@shop.example

Talks to the tables named by KEFU_TABLE_PREFIX in AWS_REGION (or KEFU_DYNAMODB_ENDPOINT), or,
with --stack URL, to the local stack running there (`make run`), with no other settings.
"""
from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import urllib.request
from typing import List, Optional


def use_local_stack(url: str) -> None:
    """Point the settings at a running local stack, from its /local/info."""
    with urllib.request.urlopen(url.rstrip("/") + "/local/info", timeout=10) as response:
        info = json.load(response)
    os.environ.update({
        "KEFU_DYNAMODB_ENDPOINT": info["dynamodb_endpoint"],
        "KEFU_TABLE_PREFIX": info["table_prefix"],
        "KEFU_WS_MANAGEMENT_ENDPOINT": info["management_endpoint"],
        "AWS_REGION": info["region"],
        "AWS_DEFAULT_REGION": info["region"],
        "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "local"),
        "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "local"),
    })


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m admin", description=__doc__.split("\n")[0])
    parser.add_argument("--stack", metavar="URL", help="a local stack's base URL, e.g. http://127.0.0.1:8000")
    commands = parser.add_subparsers(dest="command", required=True)

    create_site = commands.add_parser("create-site", help="create a site (tenant) and print its id and secret")
    create_site.add_argument("--name", required=True)
    create_site.add_argument("--origin", action="append", default=[], help="an allowed page origin (repeat); * for any")
    create_site.add_argument("--site-id", help="choose the id (default: random)")

    create_agent = commands.add_parser("create-agent", help="add an agent to a site")
    create_agent.add_argument("--site", required=True)
    create_agent.add_argument("--email", required=True)
    create_agent.add_argument("--name", required=True)
    create_agent.add_argument("--password", help="default: asked on the terminal")
    create_agent.add_argument("--role", choices=("agent", "owner"), default="agent",
                              help="owner: also manages the site (the admin page, /v1/admin)")

    rotate = commands.add_parser("rotate-secret", help="give a site a new identity-verification secret")
    rotate.add_argument("--site", required=True)

    snippet = commands.add_parser("snippet", help="print the embed snippet for a site")
    snippet.add_argument("--site", required=True)
    snippet.add_argument("--script-url", required=True)

    set_password = commands.add_parser("set-password", help="change an agent's password (logs them out)")
    set_password.add_argument("--site", required=True)
    set_password.add_argument("--email", required=True)
    set_password.add_argument("--password", help="default: asked on the terminal")

    disable = commands.add_parser("disable-agent", help="disable an agent: no login, tokens revoked, sockets closed")
    disable.add_argument("--site", required=True)
    disable.add_argument("--email", required=True)

    commands.add_parser("create-tables", help="create any missing table (local or test stores)")

    args = parser.parse_args(argv)
    if args.stack:
        use_local_stack(args.stack)
    # Only now: table names and endpoints are read when chalicelib is first imported.
    from chalicelib import agents, sites
    from chalicelib.config import settings
    from chalicelib.errors import KefuError
    from chalicelib.models import create_tables

    settings.cache_clear()
    try:
        if args.command == "create-site":
            site = sites.create_site(args.name, args.origin, site_id=args.site_id)
            print(json.dumps({"site_id": site.site_id, "secret": site.secret,
                              "allowed_origins": site.allowed_origins}, indent=2))
        elif args.command == "create-agent":
            password = args.password or getpass.getpass("password: ")
            agent = sites.create_agent(args.site, args.email, password, args.name, role=args.role)
            print(json.dumps({"agent_id": agent.agent_id, "email": agent.email, "role": agent.role}, indent=2))
        elif args.command == "rotate-secret":
            print(json.dumps({"site_id": args.site, "secret": sites.rotate_secret(args.site)}, indent=2))
        elif args.command == "snippet":
            sites.get_site(args.site)
            print(sites.embed_snippet(args.site, args.script_url))
        elif args.command == "set-password":
            password = args.password or getpass.getpass("new password: ")
            agent = agents.set_password(args.site, args.email, password)
            print(json.dumps({"agent_id": agent.agent_id, "email": agent.email, "tokens_revoked": True}, indent=2))
        elif args.command == "disable-agent":
            agent = agents.disable(args.site, args.email)
            print(json.dumps({"agent_id": agent.agent_id, "email": agent.email, "disabled": True}, indent=2))
        elif args.command == "create-tables":
            create_tables()
            print("tables ready")
    except KefuError as exc:
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
