"""What a deployment is made of, as the local stack runs it: functions, routes, stage, schedules.

One neutral description, built from either source a developer has:
- a Chalice project (its app and ``.chalice/config.json``), as ``python -m local.gateway app:app``
  serves it;
- a packaged template (``chalice package`` output, ``out/package/sam.json``), as
  ``python -m local --template`` boots it, so a local chat exercises exactly what CloudFormation
  would create.
The gateway routes events by it and the Lambda runtime starts one set of workers per function.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple


@dataclass(frozen=True)
class FunctionSpec:
    """One Lambda function: its own execution environments, never sharing module state."""

    name: str                       # logical name, e.g. "WebsocketConnect", "APIHandler"
    handler: str                    # "module.attribute" as Lambda's Handler, e.g. "app.app"
    environment: Dict[str, str] = field(default_factory=dict)
    memory_mb: int = 128
    timeout_s: float = 3.0
    reserved_concurrency: Optional[int] = None
    # Lambda layers, unpacked: each folder's python/ joins sys.path after the code, as /opt/python does
    layers: Tuple[str, ...] = ()


@dataclass(frozen=True)
class RestRoute:
    """One REST resource and method, with what API Gateway checks before invoking the function."""

    path: str                       # API Gateway resource path, e.g. "/v1/conversations/{conversation_id}"
    method: str                     # "GET", "POST", ... ("ANY" allowed)
    function: str                   # FunctionSpec.name serving it
    authorizer: Optional[str] = None  # name of a key in Deployment.authorizers
    api_key_required: bool = False
    cors: Optional[Dict[str, str]] = None  # preflight response headers when API Gateway answers OPTIONS


@dataclass(frozen=True)
class Authorizer:
    """A Lambda (custom) authorizer: TOKEN or REQUEST, and where its identity comes from."""

    name: str
    function: str                   # FunctionSpec.name
    kind: str = "TOKEN"             # "TOKEN" or "REQUEST"
    identity_sources: Tuple[str, ...] = ("method.request.header.Authorization",)
    ttl_seconds: int = 300


@dataclass(frozen=True)
class Schedule:
    function: str                   # FunctionSpec.name
    expression: str                 # "rate(1 minute)" or "cron(...)", as EventBridge takes it
    name: str = ""                  # the rule's name; the function's when empty


@dataclass(frozen=True)
class StreamSource:
    """A table's DynamoDB stream feeding a function (an event source mapping); locally the records
    come from local/streams.py."""

    function: str                   # FunctionSpec.name
    table: str                      # the table's name
    batch_size: int = 100
    batching_window_s: float = 0.0
    starting_position: str = "LATEST"


@dataclass
class Deployment:
    stage: str = "api"
    functions: Dict[str, FunctionSpec] = field(default_factory=dict)
    websocket_routes: Dict[str, str] = field(default_factory=dict)   # route key -> function name
    websocket_route_selection: str = "$request.body.action"
    rest_routes: List[RestRoute] = field(default_factory=list)
    authorizers: Dict[str, Authorizer] = field(default_factory=dict)
    schedules: List[Schedule] = field(default_factory=list)
    streams: List[StreamSource] = field(default_factory=list)
    binary_media_types: List[str] = field(default_factory=list)  # the REST API's, e.g. "image/png", "*/*"
    # AWS::DynamoDB::Table Properties as CloudFormation would create them (template boot only)
    tables: List[Dict[str, object]] = field(default_factory=list)
    project_dir: str = "."


# ---- from a Chalice project ------------------------------------------------------------------
# Function names are the logical names `chalice package` gives them (APIHandler, WebsocketConnect,
# HeartbeatSweep, ...), so a Deployment from the project and one from its template agree.

DEFAULT_CHALICE_STAGE = "dev"
DEFAULT_API_GATEWAY_STAGE = "api"     # Chalice's default
DEFAULT_LAMBDA_TIMEOUT_S = 60         # Chalice's defaults when config.json says nothing
DEFAULT_LAMBDA_MEMORY_MB = 128
_WEBSOCKET_FUNCTIONS = {"$connect": "websocket_connect", "$disconnect": "websocket_disconnect"}


def logical_name(chalice_name: str) -> str:
    """What `chalice package` calls a function in the template."""
    if chalice_name == "api_handler":
        return "APIHandler"
    from chalice.utils import to_cfn_resource_name

    return to_cfn_resource_name(chalice_name)


def deployment_from_chalice(project_dir: str, app_spec: str = "app:app",
                            stage: Optional[str] = None) -> Deployment:
    """The Deployment `chalice deploy --stage <stage>` would create for this project.

    The app is imported in a child process (``python -m local.functions``), so this process never
    holds the app's module state; ``stage`` is the Chalice stage (default ``dev``), whose
    ``api_gateway_stage`` (default ``api``) becomes the Deployment's stage.
    """
    import json
    import pathlib
    import subprocess
    import sys

    root = str(pathlib.Path(__file__).resolve().parent.parent)
    boot = ("import sys; root = sys.argv[1]; sys.path.insert(0, root); import local.functions as f; "
            "sys.path.remove(root); f._describe_main(sys.argv[2:])")
    completed = subprocess.run(
        [sys.executable, "-c", boot, root, app_spec, stage or DEFAULT_CHALICE_STAGE],
        cwd=project_dir, capture_output=True, text=True, timeout=120)
    if completed.returncode != 0:
        raise RuntimeError(f"could not load the Chalice app {app_spec} in {project_dir}:\n{completed.stderr}")
    description = json.loads(completed.stdout.strip().splitlines()[-1])
    return deployment_from_description(description, project_dir)


def deployment_from_description(description: Dict[str, object], project_dir: str) -> Deployment:
    def authorizer(data: Dict[str, object]) -> Authorizer:
        return Authorizer(**{**data, "identity_sources": tuple(data["identity_sources"])})  # type: ignore

    return Deployment(
        stage=str(description["stage"]),
        functions={name: FunctionSpec(**spec) for name, spec in description["functions"].items()},  # type: ignore
        websocket_routes=dict(description["websocket_routes"]),  # type: ignore
        rest_routes=[RestRoute(**route) for route in description["rest_routes"]],  # type: ignore
        authorizers={name: authorizer(data) for name, data in description["authorizers"].items()},  # type: ignore
        schedules=[Schedule(**schedule) for schedule in description["schedules"]],  # type: ignore
        binary_media_types=list(description.get("binary_media_types", [])),  # type: ignore
        streams=[StreamSource(**stream) for stream in description.get("streams", [])],  # type: ignore
        project_dir=project_dir,
    )


def rest_routes_from_app(app: object) -> Tuple[List[RestRoute], Dict[str, Authorizer]]:
    """The app's REST routes as API Gateway holds them, and its built-in (Lambda) authorizers."""
    routes: List[RestRoute] = []
    authorizers: Dict[str, Authorizer] = {}
    for path, methods in getattr(app, "routes", {}).items():
        cors_methods = sorted(method for method, entry in methods.items() if entry.cors)
        for method, entry in methods.items():
            authorizer_name = None
            auth = entry.authorizer
            config = getattr(auth, "config", None)
            if auth is not None and config is not None and hasattr(config, "handler_string"):
                authorizer_name = auth.name
                authorizers.setdefault(auth.name, Authorizer(
                    name=auth.name, function=logical_name(auth.name), kind="TOKEN",
                    identity_sources=(f"method.request.header.{config.header or 'Authorization'}",),
                    ttl_seconds=300 if config.ttl_seconds is None else int(config.ttl_seconds)))
            cors = None
            if entry.cors:
                cors = dict(entry.cors.get_access_control_headers())
                cors["Access-Control-Allow-Methods"] = ",".join(cors_methods + ["OPTIONS"])
            routes.append(RestRoute(path=path, method=method, function="APIHandler", authorizer=authorizer_name,
                                    api_key_required=bool(entry.api_key_required), cors=cors))
    return routes, authorizers


def describe_chalice_app(app: object, module_name: str, attribute: str, project_dir: str,
                         chalice_stage: str = DEFAULT_CHALICE_STAGE) -> Dict[str, object]:
    """The JSON-able description deployment_from_description reads."""
    import dataclasses
    import json
    import os

    from chalice.config import Config

    config_path = os.path.join(project_dir, ".chalice", "config.json")
    from_disk: Dict[str, object] = {}
    if os.path.exists(config_path):
        with open(config_path) as handle:
            from_disk = json.load(handle)
    config = Config(chalice_stage=chalice_stage, user_provided_params={"chalice_app": app},
                    config_from_disk=from_disk,
                    default_params={"project_dir": project_dir, "api_gateway_stage": DEFAULT_API_GATEWAY_STAGE})

    def handler(handler_string: str) -> str:
        # Chalice's handler strings name the module "app"; here it is whatever module_name is.
        return f"{module_name}.{handler_string.split('.', 1)[1]}"

    functions: Dict[str, FunctionSpec] = {}

    def add(chalice_name: str, handler_name: str) -> str:
        scoped = config.scope(chalice_stage=chalice_stage, function_name=chalice_name)
        spec = FunctionSpec(
            name=logical_name(chalice_name), handler=handler_name,
            environment={str(k): str(v) for k, v in (scoped.environment_variables or {}).items()},
            memory_mb=int(scoped.lambda_memory_size or DEFAULT_LAMBDA_MEMORY_MB),
            timeout_s=float(scoped.lambda_timeout or DEFAULT_LAMBDA_TIMEOUT_S),
            reserved_concurrency=scoped.reserved_concurrency)
        functions[spec.name] = spec
        return spec.name

    rest_routes, authorizers = rest_routes_from_app(app)
    if rest_routes:
        add("api_handler", f"{module_name}.{attribute}")
    for auth in getattr(app, "builtin_auth_handlers", []):
        add(auth.name, handler(auth.handler_string))
    websocket_routes: Dict[str, str] = {}
    for route_key, ws_config in getattr(app, "websocket_handlers", {}).items():
        websocket_routes[route_key] = add(_WEBSOCKET_FUNCTIONS.get(route_key, "websocket_message"),
                                          handler(ws_config.handler_string))
    schedules: List[Schedule] = []
    streams: List[StreamSource] = []
    for source in getattr(app, "event_sources", []):
        expression = getattr(source, "schedule_expression", None)
        stream_arn = getattr(source, "stream_arn", None)
        if expression is not None:
            text = expression.to_string() if hasattr(expression, "to_string") else str(expression)
            schedules.append(Schedule(function=add(source.name, handler(source.handler_string)),
                                      expression=text, name=source.name))
        elif stream_arn is not None and ":dynamodb:" in stream_arn:
            window = source.maximum_batching_window_in_seconds
            streams.append(StreamSource(
                function=add(source.name, handler(source.handler_string)), table=table_of_stream(stream_arn),
                batch_size=int(source.batch_size or 100), batching_window_s=float(window or 0),
                starting_position=str(source.starting_position)))
        # S3, SNS, SQS, Kinesis, ... have no local stand-in
    return {
        "stage": config.api_gateway_stage or DEFAULT_API_GATEWAY_STAGE,
        "functions": {name: dataclasses.asdict(spec) for name, spec in functions.items()},
        "websocket_routes": websocket_routes,
        "rest_routes": [dataclasses.asdict(route) for route in rest_routes],
        "authorizers": {name: dataclasses.asdict(auth) for name, auth in authorizers.items()},
        "schedules": [dataclasses.asdict(schedule) for schedule in schedules],
        "binary_media_types": list(getattr(getattr(app, "api", None), "binary_types", [])),
        "streams": [dataclasses.asdict(stream) for stream in streams],
    }


def table_of_stream(stream_arn: str) -> str:
    """The table a DynamoDB stream ARN (``arn:aws:dynamodb:...:table/NAME/stream/LABEL``) names."""
    return stream_arn.split(":table/", 1)[-1].split("/", 1)[0]


def _describe_main(argv: List[str]) -> None:
    """In the child process of deployment_from_chalice: print the app's description as JSON."""
    import importlib
    import json
    import os
    import sys

    app_spec, chalice_stage = argv
    module_name, _, attribute = app_spec.partition(":")
    sys.path.insert(0, os.getcwd())
    app = getattr(importlib.import_module(module_name), attribute or "app")
    description = describe_chalice_app(app, module_name, attribute or "app", os.getcwd(), chalice_stage)
    sys.stdout.write("\n" + json.dumps(description) + "\n")
