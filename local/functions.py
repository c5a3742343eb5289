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
    # AWS::DynamoDB::Table Properties as CloudFormation would create them (template boot only)
    tables: List[Dict[str, object]] = field(default_factory=list)
    project_dir: str = "."
