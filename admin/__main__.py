"""Kefu admin CLI: sites, agents, secrets and the embed snippet.

    python -m admin create-site --name "My Shop" --origin https://shop.example
    python -m admin create-agent --site SITE --email ann@shop.example --password ... --name Ann
    python -m admin rotate-secret --site SITE
    python -m admin snippet --site SITE --script-url https://cdn.example/widget.js

Talks to the tables named by KEFU_TABLE_PREFIX in AWS_REGION (or KEFU_DYNAMODB_ENDPOINT).
"""
from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import List, Optional

from chalicelib import sites
from chalicelib.errors import KefuError
from chalicelib.models import create_tables


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m admin", description=__doc__.split("\n")[0])
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

    rotate = commands.add_parser("rotate-secret", help="give a site a new identity-verification secret")
    rotate.add_argument("--site", required=True)

    snippet = commands.add_parser("snippet", help="print the embed snippet for a site")
    snippet.add_argument("--site", required=True)
    snippet.add_argument("--script-url", required=True)

    commands.add_parser("create-tables", help="create any missing table (local or test stores)")

    args = parser.parse_args(argv)
    try:
        if args.command == "create-site":
            site = sites.create_site(args.name, args.origin, site_id=args.site_id)
            print(json.dumps({"site_id": site.site_id, "secret": site.secret,
                              "allowed_origins": site.allowed_origins}, indent=2))
        elif args.command == "create-agent":
            password = args.password or getpass.getpass("password: ")
            agent = sites.create_agent(args.site, args.email, password, args.name)
            print(json.dumps({"agent_id": agent.agent_id, "email": agent.email}, indent=2))
        elif args.command == "rotate-secret":
            print(json.dumps({"site_id": args.site, "secret": sites.rotate_secret(args.site)}, indent=2))
        elif args.command == "snippet":
            sites.get_site(args.site)
            print(sites.embed_snippet(args.site, args.script_url))
        elif args.command == "create-tables":
            create_tables()
            print("tables ready")
    except KefuError as exc:
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
