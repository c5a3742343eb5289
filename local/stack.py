"""The whole product on one machine: `make run` / `python -m local`.

Starts, on loopback and with no cloud account:
- an embedded DynamoDB-compatible store (dynalite in a Node child process, local/embedded_store.py;
  or --store moto, or --dynamodb-endpoint), with the tables created from chalicelib/models.py, the
  same definitions infra/ deploys;
- the OSS and STS stand-ins for uploads;
- the API Gateway stand-in (local/gateway.py) in front of the real Chalice app, under the stage
  `.chalice/config.json` deploys (api_gateway_stage, `api`): WebSocket routes, REST routes, the
  Management API and the scheduled sweep, on one port; each function runs in Lambda-like
  execution environments of its own (local/lambda_runtime.py), restarted when code changes;
- a real SMTP server on loopback that keeps the mails Kefu sends (local/mailbox.py), listed at
  GET /local/mail;
- the static pages (widget, agent console, admin page, demo shop) and GET /local/info.
Then seeds a demo site and agent and prints where to go. The tables, uploaded files and token
secret live in the data folder (--data-dir, default local-data/; local/data_dir.py), so a restart
goes on where the last run stopped.

``--template out/package/sam.json`` boots what `make package` built instead of the checkout: the
functions (run from the unpacked deployment.zip), routes, stage, environment, schedules and tables
come from the template (local/template.py), the tables are created from its definitions and the
secrets its functions read from SSM are stored in the embedded store's SSM (local/provision.py).
"""
from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import pathlib
import secrets
import shutil
import socket
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from local.lambda_runtime import DEFAULT_PER_FUNCTION, DEFAULT_TOTAL
from local.data_dir import DEFAULT_DATA_DIR, DYNAMODB, OSS, TOKEN_SECRET, open_data_dir
from local.embedded_store import STORES, StoreUnavailable

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
    stage: Optional[str] = None  # the API Gateway stage; default: the Chalice stage's api_gateway_stage
    chalice_stage: str = "dev"   # whose settings in .chalice/config.json the functions get
    dynamodb_endpoint: Optional[str] = None
    store: str = "dynalite"
    data_dir: Optional[str] = None  # None: nothing kept (in-memory store, temporary upload folder)
    app: str = "app:app"
    idle_timeout: float = 600
    max_connection_seconds: float = 7200
    concurrency_per_function: int = DEFAULT_PER_FUNCTION
    concurrency: int = DEFAULT_TOTAL
    reload: bool = True
    template: Optional[str] = None  # a packaged template to boot from instead of `app`


@dataclass
class Stack:
    options: StackOptions
    info: Dict[str, Any] = field(default_factory=dict)
    _stoppers: List[Any] = field(default_factory=list)
    _existing_data: bool = False
    _mailbox: Any = None

    def start(self) -> Dict[str, Any]:
        if self.options.template:
            return self._start_from_template()
        opts = self.options
        port = opts.port or free_port(opts.host)
        base = f"http://{opts.host}:{port}"
        from local.functions import deployment_from_chalice

        deployment = deployment_from_chalice(str(ROOT), opts.app, opts.chalice_stage)
        stage = opts.stage or deployment.stage
        data_dir = self._open_data_dir()
        _cloud_defaults(opts.data_dir)
        dynamodb_endpoint = opts.dynamodb_endpoint or self._start_embedded_dynamodb(data_dir)
        standins = self._start_upload_standins()
        mailbox = self._start_mailbox()
        os.environ.update({
            "KEFU_DYNAMODB_ENDPOINT": dynamodb_endpoint,
            "KEFU_WS_MANAGEMENT_ENDPOINT": f"{base}/{stage}",
            "KEFU_OSS_ENDPOINT": standins.oss_endpoint,
            "KEFU_STS_ENDPOINT": standins.sts_endpoint,
            "KEFU_OSS_BUCKET": DEMO_BUCKET,
            "KEFU_PUBLIC_WEBSOCKET_URL": f"ws://{opts.host}:{port}/{stage}",
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
        gateway = self._start_gateway(port, deployment, stage, dynamodb_endpoint)
        self.info = self._describe(gateway, base, dynamodb_endpoint, standins)
        return self.info

    def _open_data_dir(self) -> Optional[pathlib.Path]:
        data_dir = pathlib.Path(self.options.data_dir).resolve() if self.options.data_dir else None
        self._existing_data = open_data_dir(data_dir) if data_dir else False
        return data_dir

    def _describe(self, gateway: Any, base: str, dynamodb_endpoint: str, standins: Any) -> Dict[str, Any]:
        """What GET /local/info answers and the banner prints."""
        from chalicelib.config import settings

        opts = self.options
        data_dir = pathlib.Path(opts.data_dir).resolve() if opts.data_dir else None
        mailbox = self._mailbox
        mail = {"admin_url": f"{base}/admin/", "mail_url": f"{base}/local/mail",
                "smtp_host": mailbox.host if mailbox else None, "smtp_port": mailbox.port if mailbox else None,
                "mail_from": settings().mail_from, "mail_interval": _mail_interval()}
        return {
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
            "store": "external" if opts.dynamodb_endpoint else opts.store,
            "data_dir": str(data_dir) if data_dir else None,
            "existing_data": self._existing_data,
            "table_prefix": settings().table_prefix,
            "region": settings().region,
            "oss_endpoint": standins.oss_endpoint,
            "sts_endpoint": standins.sts_endpoint,
            "heartbeat_timeout": settings().heartbeat_timeout,
            "sweep_interval": settings().sweep_interval,
            "template": self.options.template,  # the packaged template booted, or None
            **mail,
        }

    def _start_from_template(self) -> Dict[str, Any]:
        """--template: everything the functions see comes from the packaged template."""
        import boto3

        from infra.build import MAIL_IDENTITY, PARAMETERS
        from local import provision
        from local.template import LocalEndpoints, TemplateError, deployment_from_template

        opts = self.options
        port = opts.port or free_port(opts.host)
        base = f"http://{opts.host}:{port}"
        data_dir = self._open_data_dir()
        _cloud_defaults(opts.data_dir)
        region = os.environ["AWS_DEFAULT_REGION"]
        account = {"region_name": region, "aws_access_key_id": os.environ["AWS_ACCESS_KEY_ID"],
                   "aws_secret_access_key": os.environ["AWS_SECRET_ACCESS_KEY"]}
        dynamodb_endpoint = opts.dynamodb_endpoint or self._start_embedded_dynamodb(data_dir)
        ssm_endpoint = self._start_local_ssm()
        standins = self._start_upload_standins()
        mailbox = self._mailbox = self._start_mailbox()
        # The template's parameters, as a deploy would set them (docs/deploy.md), pointing at the stand-ins.
        local_values = {
            "KEFU_MAIL_FROM": os.environ.get("KEFU_MAIL_FROM") or "kefu@demo.kefu",
            "KEFU_CONSOLE_ORIGINS": base, "KEFU_OSS_ENDPOINT": standins.oss_endpoint, "KEFU_OSS_BUCKET": DEMO_BUCKET,
            "KEFU_OSS_REGION": standins.oss.region, "KEFU_STS_ENDPOINT": standins.sts_endpoint,
            "KEFU_STS_ROLE_ARN": os.environ["KEFU_STS_ROLE_ARN"], "KEFU_ALIYUN_ACCESS_KEY_ID": LOCAL_ACCESS_KEY_ID,
        }
        endpoints = LocalEndpoints(
            gateway=base, region=region,
            parameters={**{name: local_values[variable] for name, (variable, _) in PARAMETERS.items()},
                        MAIL_IDENTITY: local_values["KEFU_MAIL_FROM"].rpartition("@")[2]},
            # What Lambda and the account provide implicitly; every other variable is the template's.
            environment={"AWS_REGION": region, "AWS_DEFAULT_REGION": region,
                         "AWS_ACCESS_KEY_ID": account["aws_access_key_id"],
                         "AWS_SECRET_ACCESS_KEY": account["aws_secret_access_key"],
                         "KEFU_DYNAMODB_ENDPOINT": dynamodb_endpoint, "AWS_ENDPOINT_URL_SSM": ssm_endpoint,
                         # SES stands in as the local SMTP mailbox (the cloud's mail goes through SES)
                         "KEFU_SMTP_HOST": mailbox.host, "KEFU_SMTP_PORT": str(mailbox.port)})
        code_dir = tempfile.mkdtemp(prefix="kefu-code-")
        self._stoppers.append(lambda: shutil.rmtree(code_dir, ignore_errors=True))
        deployment = deployment_from_template(opts.template, local_endpoints=endpoints, code_dir=code_dir)
        provision.create_tables(deployment.tables, boto3.client("dynamodb", endpoint_url=dynamodb_endpoint, **account))
        provision.put_secrets(deployment, {name: os.environ[name] for name in
                                           ("KEFU_TOKEN_SECRET", "KEFU_ALIYUN_ACCESS_KEY_SECRET")},
                              boto3.client("ssm", endpoint_url=ssm_endpoint, **account))
        # The stack's own chalicelib calls (the demo seed, /local/info, `python -m admin --stack`)
        # use the settings of the function serving the REST API; the secrets it has already.
        if not deployment.rest_routes:
            raise TemplateError("the template has no REST API: sessions (and the demo seed) need one")
        rest_function = deployment.functions[deployment.rest_routes[0].function]
        os.environ.update({name: value for name, value in rest_function.environment.items()
                           if name.startswith("KEFU_") and not name.endswith(provision.PARAM_SUFFIX)})
        from chalicelib.config import settings

        settings.cache_clear()
        self._expire_unattached_uploads(standins)
        self._seed(base)
        gateway = self._start_deployment_gateway(deployment, port, dynamodb_endpoint)
        self.info = self._describe(gateway, base, dynamodb_endpoint, standins)
        return self.info

    def _start_embedded_dynamodb(self, data_dir: Optional[pathlib.Path]) -> str:
        from local.embedded_store import start_store

        # Loopback whatever --host says: the store has no authentication.
        store = start_store(self.options.store, "127.0.0.1", data_dir / DYNAMODB if data_dir else None)
        self._stoppers.append(store.stop)
        return store.endpoint

    def _start_local_ssm(self) -> str:
        """SSM Parameter Store for the secrets a template's functions read (moto's server)."""
        from moto.server import ThreadedMotoServer

        port = free_port(self.options.host)
        server = ThreadedMotoServer(ip_address=self.options.host, port=port, verbose=False)
        server.start()
        self._stoppers.append(server.stop)
        return f"http://{self.options.host}:{port}"

    def _start_upload_standins(self) -> Any:
        from local.oss_standin import start_standins

        data_dir = self.options.data_dir
        storage = str(pathlib.Path(data_dir) / OSS) if data_dir else tempfile.mkdtemp(prefix="kefu-oss-")
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
        except KefuError:  # kept from an earlier run (the data folder, --dynamodb-endpoint)
            _serve_demo_site_at(base)
        try:
            # The demo agent is the demo site's owner too: it can open the admin page.
            sites.create_agent(DEMO_SITE_ID, DEMO_AGENT_EMAIL, DEMO_AGENT_PASSWORD, "Demo Agent", role="owner")
        except KefuError:  # kept from an earlier run (maybe from before roles): an owner now
            Agent(DEMO_SITE_ID, DEMO_AGENT_EMAIL).update(actions=[Agent.role.set("owner")])

    def _start_gateway(self, port: int, deployment: Any, stage: str, dynamodb_endpoint: str) -> Any:
        from chalicelib.config import settings
        from chalicelib.models import STREAMS
        from local.functions import logical_name
        from local.gateway import LocalGateway, load_app

        opts = self.options
        sweep_every = settings().sweep_interval
        sweep_function = logical_name("heartbeat_sweep")
        mail_function = logical_name("deliver_mail")

        def schedule_interval(function: str, default_seconds: float) -> float:
            # Deployed schedules cannot go below a minute; locally the sweep runs on KEFU_SWEEP_INTERVAL
            # and the mail sender every KEFU_MAIL_INTERVAL seconds.
            if function == mail_function:
                return _mail_interval()
            return sweep_every if function == sweep_function else default_seconds

        # The functions get .chalice/config.json's variables, but the stack's endpoints, secrets and
        # table prefix, and any KEFU_* set in the shell (tests shorten timeouts so), win over them.
        function_env = {name: value for name, value in os.environ.items() if name.startswith("KEFU_")}
        gateway = LocalGateway(
            deployment, app=load_app(opts.app, str(ROOT)), host=opts.host, port=port, stage=stage,
            idle_timeout=opts.idle_timeout, max_connection_seconds=opts.max_connection_seconds,
            schedule_interval=schedule_interval, function_env=function_env,
            concurrency_per_function=opts.concurrency_per_function, concurrency=opts.concurrency,
            provisioned_concurrency=1, reload=opts.reload,  # the first chat needs no cold starts
            streams=_local_streams([_local_table(source, STREAMS) for source in deployment.streams], dynamodb_endpoint),
        )
        return self._serve(gateway)

    def _start_deployment_gateway(self, deployment: Any, port: int, dynamodb_endpoint: str) -> Any:
        """The gateway running a Deployment's functions in worker processes of their own
        (local/lambda_runtime.py), with the template's stage, schedules and streams as deployed."""
        from local.gateway import LocalGateway

        opts = self.options
        return self._serve(LocalGateway(deployment, host=opts.host, port=port, idle_timeout=opts.idle_timeout,
                                        max_connection_seconds=opts.max_connection_seconds,
                                        streams=_local_streams(deployment.streams, dynamodb_endpoint)))

    def _serve(self, gateway: Any) -> Any:
        """The static pages and /local/info next to the APIs; serving from a thread of its own."""
        from infra import widget

        hosted_widget()  # now, so that a missing terser is said at start and not by a page
        gateway.add_static("/console/", str(WEB / "console"))
        gateway.add_static("/admin/", str(WEB / "admin"))
        gateway.add_route("GET", "/local/mail", lambda: {"mails": self._mailbox.mails()})
        gateway.add_static("/demo/", str(WEB / "demo"))
        # The widget as it is hosted (infra/widget.py): minified, rebuilt when web/widget.js changes.
        gateway.add_file("/widget.js", hosted_widget)
        gateway.add_file("/widget.js.map", lambda: widget.source_map(hosted_widget()))
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


def _local_table(source: Any, stream_models: Any) -> Any:
    """app.py's stream ARN is a placeholder infra/build.py replaces; the table it names (with the
    default prefix) is, locally, the table of that base name under this run's prefix."""
    import dataclasses

    for model in stream_models:
        if source.table.endswith(model.Meta.base_name):
            return dataclasses.replace(source, table=model.Meta.table_name)
    return source


def hosted_widget() -> Any:
    """The built widget; while web/widget.js is being edited into something terser cannot parse,
    the last build, with the error in the log (a page reload must not break the demo)."""
    from infra import widget

    try:
        return widget.built()
    except widget.BuildUnavailable as error:
        if not widget.BUILT.exists():
            raise
        log.error("%s; serving the last build of the widget", error)
        return widget.BUILT


def _local_streams(sources: List[Any], dynamodb_endpoint: str) -> Any:
    """The stream stand-in (local/streams.py) feeding ``sources`` from the store, or None."""
    if not sources:
        return None
    import boto3

    from local.streams import LocalStreams

    client = boto3.client("dynamodb", endpoint_url=dynamodb_endpoint, region_name=os.environ["AWS_DEFAULT_REGION"],
                          aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"])
    return LocalStreams(sources, client)


def _serve_demo_site_at(base: str) -> None:
    """A kept demo site answers the demo page at this run's address (the port may have changed)."""
    from chalicelib import sites
    from chalicelib.models import Site

    site = sites.get_site(DEMO_SITE_ID)
    if site.allowed_origins != [base]:
        site.update(actions=[Site.allowed_origins.set([base])])


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
    path = pathlib.Path(data_dir) / TOKEN_SECRET
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32))
    return path.read_text().strip()


def data_line(info: Dict[str, Any]) -> str:
    """Where the data lives, and whether this run went on from an earlier one."""
    data_dir = info.get("data_dir")
    if not data_dir:
        return "nothing is kept: no --data-dir"
    if info.get("store") == "moto":
        return f"uploads and token secret in {data_dir}; tables in memory (--store moto): gone on stop"
    if info.get("store") == "external":
        return f"uploads and token secret in {data_dir}; tables in {info['dynamodb_endpoint']}"
    if info.get("existing_data"):
        return f"using existing data in {data_dir} (make reset starts fresh)"
    return f"fresh data in {data_dir}"


def banner(info: Dict[str, Any]) -> str:
    return "\n".join([
        "",
        "Kefu is running locally.",
        f"  Data:                       {data_line(info)}",
        f"  Demo shop (visitor widget): {info['demo_url']}",
        f"  Agent console:              {info['console_url']}",
        f"  Admin page (site owner):    {info['admin_url']}",
        f"    site id {info['site_id']}, email {info['agent_email']}, password {info['agent_password']}",
        f"  Mail sent (local mailbox):  {info['mail_url']}",
        f"  WebSocket API:              {info['websocket_url']}",
        f"  REST API:                   {info['api_url']}",
        f"  Management API:             {info['management_endpoint']}",
        f"  DynamoDB:                   {info['dynamodb_endpoint']} ({info['store']})",
        f"  Machine-readable:           {info['demo_url'].rsplit('/demo/', 1)[0]}/local/info",
        "Ctrl-C stops everything.",
        "",
    ])


def parse_args(argv: Optional[List[str]] = None) -> StackOptions:
    parser = argparse.ArgumentParser(prog="python -m local", description="Run Kefu locally.")
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")),
                        help="0 picks a free port")
    parser.add_argument("--stage", default=None,
                        help="the API Gateway stage to serve (default: api_gateway_stage in .chalice/config.json, api)")
    parser.add_argument("--chalice-stage", default="dev", help="whose settings in .chalice/config.json apply")
    parser.add_argument("--dynamodb-endpoint", help="use this DynamoDB (DynamoDB Local, dynalite, AWS) instead of the embedded store")
    parser.add_argument("--store", choices=STORES, default="dynalite",
                        help="the embedded store: dynalite (Node, kept in --data-dir; default) or moto (in memory)")
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR),
                        help="where the tables, uploaded files and token secret are kept across restarts "
                             "(default: %(default)s; `make reset` deletes it)")
    parser.add_argument("--app", default="app:app", help="the Chalice app to serve, module:attribute")
    parser.add_argument("--idle-timeout", type=float, default=600, help="API Gateway closes idle sockets after this (s)")
    parser.add_argument("--max-connection-seconds", type=float, default=7200)
    parser.add_argument("--template", help="boot from a packaged template (`make package`: out/package/sam.json): "
                                           "its functions, routes, stage, environment, schedules and tables")
    parser.add_argument("--concurrency-per-function", type=int, default=DEFAULT_PER_FUNCTION,
                        help="execution environments (worker processes) per function")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_TOTAL, help="execution environments in total")
    parser.add_argument("--no-reload", action="store_true", help="do not restart the functions when code changes")
    args = parser.parse_args(argv)
    if args.template and (args.stage or args.app != "app:app"):
        parser.error("--template takes the stage and the functions from the template: no --stage or --app")
    return StackOptions(host=args.host, port=args.port, stage=args.stage, chalice_stage=args.chalice_stage,
                        dynamodb_endpoint=args.dynamodb_endpoint, store=args.store, data_dir=args.data_dir, app=args.app,
                        idle_timeout=args.idle_timeout, max_connection_seconds=args.max_connection_seconds,
                        template=args.template, concurrency_per_function=args.concurrency_per_function,
                        concurrency=args.concurrency, reload=not args.no_reload)


def main(argv: Optional[List[str]] = None) -> None:
    import signal
    import threading

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("werkzeug", "botocore", "urllib3", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from local.template import TemplateError

    from infra.widget import BuildUnavailable

    stack = Stack(parse_args(argv))
    try:
        info = stack.start()
    except (StoreUnavailable, BuildUnavailable) as exc:
        stack.stop()
        print(f"error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(1)
    except BaseException as error:
        stack.stop()  # the store and stand-ins already started
        if isinstance(error, TemplateError):
            raise SystemExit(f"python -m local --template: {error}")
        raise
    gc.freeze()  # the gateway's modules and the in-process REST app: see local/lambda_worker.py
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
