"""The whole product on one machine: `make run` / `python -m local`.

Starts, on loopback and with no cloud account:
- an embedded DynamoDB-compatible store (moto's server, in-process; or --dynamodb-endpoint),
  with the tables created from chalicelib/models.py, the same definitions infra/ deploys;
- the OSS and STS stand-ins for uploads;
- the API Gateway stand-in (local/gateway.py) in front of the real Chalice app: WebSocket
  routes, REST routes, the Management API and the scheduled sweep, on one port;
- a real SMTP server on loopback that keeps the mails Kefu sends (local/mailbox.py), listed at
  GET /local/mail;
- the static pages (widget, agent console, admin page, demo shop) and GET /local/info.
Then seeds a demo site and agent and prints where to go.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import pathlib
import secrets
import socket
import tempfile
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

ROOT = pathlib.Path(__file__).resolve().parent.parent
WEB = ROOT / "web"

DEMO_SITE_ID = "demo"
DEMO_AGENT_EMAIL = "agent@demo.kefu"
DEMO_AGENT_PASSWORD = "kefu-demo-agent"
DEMO_BUCKET = "kefu-local"
LOCAL_ACCESS_KEY_ID = "LTAI-local-kefu"

log = logging.getLogger("local.stack")


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass
class StackOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    stage: str = "dev"
    dynamodb_endpoint: Optional[str] = None
    data_dir: Optional[str] = None
    app: str = "app:app"
    idle_timeout: float = 600
    max_connection_seconds: float = 7200


@dataclass
class Stack:
    options: StackOptions
    info: Dict[str, Any] = field(default_factory=dict)
    _stoppers: List[Any] = field(default_factory=list)

    def start(self) -> Dict[str, Any]:
        opts = self.options
        port = opts.port or free_port(opts.host)
        base = f"http://{opts.host}:{port}"
        _cloud_defaults(opts.data_dir)
        dynamodb_endpoint = opts.dynamodb_endpoint or self._start_embedded_dynamodb()
        standins = self._start_upload_standins()
        mailbox = self._start_mailbox()
        os.environ.update({
            "KEFU_DYNAMODB_ENDPOINT": dynamodb_endpoint,
            "KEFU_WS_MANAGEMENT_ENDPOINT": f"{base}/{opts.stage}",
            "KEFU_OSS_ENDPOINT": standins.oss_endpoint,
            "KEFU_STS_ENDPOINT": standins.sts_endpoint,
            "KEFU_OSS_BUCKET": DEMO_BUCKET,
            "KEFU_PUBLIC_WEBSOCKET_URL": f"ws://{opts.host}:{port}/{opts.stage}",
        })
        os.environ.setdefault("KEFU_CONSOLE_ORIGINS", base)  # the console the stack serves itself
        os.environ.update({"KEFU_SMTP_HOST": mailbox.host, "KEFU_SMTP_PORT": str(mailbox.port)})
        os.environ.setdefault("KEFU_MAIL_FROM", "kefu@demo.kefu")
        os.environ.setdefault("KEFU_CONSOLE_URL", f"{base}/console/")
        # chalicelib reads its settings on first import: only now may the app be imported.
        from chalicelib.config import settings
        from chalicelib.models import create_tables

        settings.cache_clear()
        create_tables()
        self._expire_unattached_uploads(standins)
        self._seed(base)
        self._mailbox = mailbox
        gateway = self._start_gateway(port)
        self.info = {
            "websocket_url": gateway.websocket_url,
            "api_url": gateway.rest_url,
            "management_endpoint": gateway.management_endpoint,
            "site_id": DEMO_SITE_ID,
            "agent_email": DEMO_AGENT_EMAIL,
            "agent_password": DEMO_AGENT_PASSWORD,
            "widget_url": f"{base}/widget.js",
            "demo_url": f"{base}/demo/",
            "console_url": f"{base}/console/",
            "dynamodb_endpoint": dynamodb_endpoint,
            "table_prefix": settings().table_prefix,
            "region": settings().region,
            "oss_endpoint": standins.oss_endpoint,
            "sts_endpoint": standins.sts_endpoint,
            "heartbeat_timeout": settings().heartbeat_timeout,
            "sweep_interval": settings().sweep_interval,
            "admin_url": f"{base}/admin/",
            "mail_url": f"{base}/local/mail",
            "smtp_host": mailbox.host,
            "smtp_port": mailbox.port,
            "mail_from": settings().mail_from,
            "mail_interval": _mail_interval(),
        }
        return self.info

    def _start_embedded_dynamodb(self) -> str:
        from moto.server import ThreadedMotoServer

        from local import atomic_moto

        atomic_moto.install()
        port = free_port(self.options.host)
        server = ThreadedMotoServer(ip_address=self.options.host, port=port, verbose=False)
        server.start()
        self._stoppers.append(server.stop)
        return f"http://{self.options.host}:{port}"

    def _start_upload_standins(self) -> Any:
        from local.oss_standin import start_standins

        storage = self.options.data_dir or tempfile.mkdtemp(prefix="kefu-oss-")
        secret = secrets.token_hex(16)
        os.environ["KEFU_ALIYUN_ACCESS_KEY_ID"] = LOCAL_ACCESS_KEY_ID
        os.environ["KEFU_ALIYUN_ACCESS_KEY_SECRET"] = secret
        os.environ.setdefault("KEFU_STS_ROLE_ARN", "acs:ram::1000000000000000:role/kefu-uploads")
        standins = start_standins(self.options.host, storage, DEMO_BUCKET, LOCAL_ACCESS_KEY_ID, secret)
        self._stoppers.append(standins.stop)
        return standins

    def _start_mailbox(self) -> Any:
        from local.mailbox import Mailbox

        mailbox = Mailbox(self.options.host).start()
        self._stoppers.append(mailbox.stop)
        return mailbox

    def _expire_unattached_uploads(self, standins: Any) -> None:
        """The bucket as infra/aliyun.py sets it up for real: never-attached uploads expire."""
        import oss2

        from chalicelib.config import settings
        from infra import aliyun

        cfg = settings()
        auth = oss2.AuthV4(cfg.aliyun_access_key_id, cfg.aliyun_access_key_secret)
        bucket = oss2.Bucket(auth, standins.oss_endpoint, DEMO_BUCKET, region=standins.oss.region)
        aliyun.put_lifecycle(bucket, aliyun.lifecycle_rules(cfg.oss_prefix, 1))

    def _seed(self, base: str) -> None:
        from chalicelib import site_settings, sites
        from chalicelib.errors import KefuError
        from chalicelib.models import Agent, Site

        try:
            site = sites.create_site("Demo Shop", [base], site_id=DEMO_SITE_ID)
            # the demo shop's own colour, as its owner would set it on the admin page
            site.update(actions=[Site.settings.set(site_settings.merged(
                site_settings.stored(site), {"widget": {"color": "#8a4b2a"}}))])
        except KefuError:
            pass  # an existing store (--dynamodb-endpoint) keeps its demo site
        try:
            # The demo agent is the demo site's owner too: it can open the admin page.
            sites.create_agent(DEMO_SITE_ID, DEMO_AGENT_EMAIL, DEMO_AGENT_PASSWORD, "Demo Agent", role="owner")
        except KefuError:  # kept from an earlier run (maybe from before roles): an owner now
            Agent(DEMO_SITE_ID, DEMO_AGENT_EMAIL).update(actions=[Agent.role.set("owner")])

    def _start_gateway(self, port: int) -> Any:
        from chalicelib.config import settings
        from local.gateway import LocalGateway, load_app

        opts = self.options
        sweep_every = settings().sweep_interval

        def schedule_interval(name: str, default_seconds: float) -> float:
            # Deployed schedules cannot go below a minute; locally the sweep runs on KEFU_SWEEP_INTERVAL
            # and the mail sender every KEFU_MAIL_INTERVAL seconds.
            if name == "deliver_mail":
                return _mail_interval()
            return sweep_every if name == "heartbeat_sweep" else default_seconds

        gateway = LocalGateway(
            load_app(opts.app), host=opts.host, port=port, stage=opts.stage,
            idle_timeout=opts.idle_timeout, max_connection_seconds=opts.max_connection_seconds,
            schedule_interval=schedule_interval,
        )
        gateway.add_static("/console/", str(WEB / "console"))
        gateway.add_static("/admin/", str(WEB / "admin"))
        gateway.add_route("GET", "/local/mail", lambda: {"mails": self._mailbox.mails()})
        gateway.add_static("/demo/", str(WEB / "demo"))
        gateway.add_file("/widget.js", str(WEB / "widget.js"))
        gateway.add_route("GET", "/local/info", lambda: self.info)
        gateway.add_redirect("/", "/demo/")
        gateway.run_in_thread()
        self._stoppers.append(gateway.stop_from_thread)
        return gateway

    def stop(self) -> None:
        while self._stoppers:
            stop = self._stoppers.pop()
            try:
                stop()
            except Exception:
                log.exception("stopping %s", stop)


def _mail_interval() -> float:
    """KEFU_MAIL_INTERVAL: seconds between the local mail sender's runs (default 2)."""
    return float(os.environ.get("KEFU_MAIL_INTERVAL") or 2)


def _cloud_defaults(data_dir: Optional[str]) -> None:
    """Values a cloud deployment gets from its account; locally any will do."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    os.environ.setdefault("AWS_REGION", os.environ["AWS_DEFAULT_REGION"])
    os.environ.setdefault("KEFU_TABLE_PREFIX", "kefu-local-")
    if not os.environ.get("KEFU_TOKEN_SECRET"):
        os.environ["KEFU_TOKEN_SECRET"] = _local_token_secret(data_dir)


def _local_token_secret(data_dir: Optional[str]) -> str:
    """A random secret of this machine's own (the functions have no default), kept in the data
    folder so tokens survive a restart that keeps the data."""
    if data_dir is None:
        return secrets.token_hex(32)
    path = pathlib.Path(data_dir) / "token-secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32))
    return path.read_text().strip()


def banner(info: Dict[str, Any]) -> str:
    return "\n".join([
        "",
        "Kefu is running locally.",
        f"  Demo shop (visitor widget): {info['demo_url']}",
        f"  Agent console:              {info['console_url']}",
        f"  Admin page (site owner):    {info['admin_url']}",
        f"    site id {info['site_id']}, email {info['agent_email']}, password {info['agent_password']}",
        f"  Mail sent (local mailbox):  {info['mail_url']}",
        f"  WebSocket API:              {info['websocket_url']}",
        f"  REST API:                   {info['api_url']}",
        f"  Management API:             {info['management_endpoint']}",
        f"  Machine-readable:           {info['demo_url'].rsplit('/demo/', 1)[0]}/local/info",
        "Ctrl-C stops everything.",
        "",
    ])


def parse_args(argv: Optional[List[str]] = None) -> StackOptions:
    parser = argparse.ArgumentParser(prog="python -m local", description="Run Kefu locally.")
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")),
                        help="0 picks a free port")
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--dynamodb-endpoint", help="use this DynamoDB (DynamoDB Local, dynalite, AWS) instead of the embedded store")
    parser.add_argument("--data-dir", help="where the OSS stand-in keeps uploaded files (default: a temporary folder)")
    parser.add_argument("--app", default="app:app", help="the Chalice app to serve, module:attribute")
    parser.add_argument("--idle-timeout", type=float, default=600, help="API Gateway closes idle sockets after this (s)")
    parser.add_argument("--max-connection-seconds", type=float, default=7200)
    args = parser.parse_args(argv)
    return StackOptions(host=args.host, port=args.port, stage=args.stage,
                        dynamodb_endpoint=args.dynamodb_endpoint, data_dir=args.data_dir, app=args.app,
                        idle_timeout=args.idle_timeout, max_connection_seconds=args.max_connection_seconds)


def main(argv: Optional[List[str]] = None) -> None:
    import signal
    import threading

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("werkzeug", "botocore", "urllib3", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    stack = Stack(parse_args(argv))
    info = stack.start()
    print(banner(info), flush=True)
    print("LOCAL_INFO " + json.dumps(info), flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping...", flush=True)
        stack.stop()
