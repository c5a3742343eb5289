"""A packaged template (``chalice package`` output, ``out/package/sam.json``) as a local Deployment.

    deployment_from_template("out/package/sam.json", local_endpoints=LocalEndpoints(...))

Reads what CloudFormation would create and nothing else: the functions (Handler, Environment,
MemorySize, Timeout, Schedule events, SAM Globals), the WebSocket API (routes to functions through
their integrations, route selection expression, stage), the REST API (its swagger: paths, methods,
integrations, authorizers, API keys, CORS preflights) and the DynamoDB tables. Intrinsic functions
are resolved against the local account (``LocalEndpoints``): parameters (overrides, then
defaults), pseudo parameters, Ref, Fn::Sub, Fn::GetAtt, Fn::Join, Fn::Select, Fn::Split,
Fn::FindInMap, Fn::If and conditions.

URLs of this template's own APIs (``https://{api}.execute-api.{region}.amazonaws.com/{stage}...``)
become the local gateway's, path kept: an environment variable naming a stage the API does not
have is a TemplateError, as every call the cloud would make to it fails (issue 13: the Management
API endpoint said ``/dev`` while the WebSocket stage was ``api``).
"""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import pathlib
import re
import tempfile
import urllib.parse
import zipfile
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

from local.functions import (Authorizer, Deployment, FunctionSpec, RestRoute, Schedule, StreamSource,
                             table_of_stream)

FUNCTION = "AWS::Serverless::Function"
WEBSOCKET_STAGE = "AWS::ApiGatewayV2::Stage"
REST_APIS = ("AWS::Serverless::Api", "AWS::ApiGateway::RestApi")
URL_SUFFIX = "amazonaws.com"
PREFLIGHT_HEADER = "method.response.header."
_SUB = re.compile(r"\$\{([^}]*)\}")
_EXECUTE_API = re.compile(r"^(https|wss)://([a-z0-9]+)\.execute-api\.[a-z0-9-]+\." + re.escape(URL_SUFFIX)
                          + r"(/[^?#]*)?(.*)$")
_INVOKED_FUNCTION = re.compile(r":function:([^/:]+)")


class TemplateError(ValueError):
    """The template cannot run locally, or would not work in the cloud either."""


@dataclass(frozen=True)
class LocalEndpoints:
    """The local account a template is resolved against."""

    gateway: str                    # base URL of the local API Gateway, e.g. "http://127.0.0.1:8000"
    region: str = "us-east-1"
    account_id: str = "000000000000"
    stack_name: str = "kefu-local"
    # Template parameter values, as `cloudformation deploy --parameter-overrides` gives them.
    parameters: Mapping[str, str] = field(default_factory=dict)
    # Added to every function's environment (and wins over the template): what the local account
    # provides that the cloud provides implicitly, such as where DynamoDB and SSM answer.
    environment: Mapping[str, str] = field(default_factory=dict)


_NO_VALUE = object()  # AWS::NoValue: the property is removed


class _Resolver:
    """Resolves intrinsic functions the way CloudFormation would in the local account."""

    def __init__(self, template: Dict[str, Any], endpoints: LocalEndpoints) -> None:
        self.endpoints = endpoints
        self.mappings = template.get("Mappings", {})
        self._condition_specs = template.get("Conditions", {})
        self._conditions: Dict[str, bool] = {}
        self.parameters = _parameter_values(template.get("Parameters", {}), endpoints.parameters)
        region, account, stack = endpoints.region, endpoints.account_id, endpoints.stack_name
        self.pseudo: Dict[str, Any] = {
            "AWS::Region": region, "AWS::AccountId": account, "AWS::StackName": stack,
            "AWS::StackId": f"arn:aws:cloudformation:{region}:{account}:stack/{stack}/local",
            "AWS::Partition": "aws", "AWS::URLSuffix": URL_SUFFIX, "AWS::NotificationARNs": [],
        }
        self.resources = {name: resource for name, resource in template.get("Resources", {}).items()
                          if self.condition(resource.get("Condition"))}
        self.physical_ids: Dict[str, str] = {}   # logical id -> what Ref returns
        self.logical_ids: Dict[str, str] = {}    # and back

    # ---- values -----------------------------------------------------------------------------

    def resolve(self, value: Any) -> Any:
        if isinstance(value, dict):
            if len(value) == 1:
                (key, argument), = value.items()
                if key == "Ref":
                    return self.ref(argument)
                if key.startswith("Fn::"):
                    handler = getattr(self, "_fn_" + key[4:].lower(), None)
                    if handler is None:
                        raise TemplateError(f"{key} cannot be resolved locally")
                    return handler(argument)
            resolved = {k: self.resolve(v) for k, v in value.items()}
            return {k: v for k, v in resolved.items() if v is not _NO_VALUE}
        if isinstance(value, list):
            return [v for v in (self.resolve(item) for item in value) if v is not _NO_VALUE]
        return value

    def text(self, value: Any, where: str) -> str:
        resolved = self.resolve(value)
        if isinstance(resolved, bool):
            return "true" if resolved else "false"
        if isinstance(resolved, (int, float, str)):
            return str(resolved)
        raise TemplateError(f"{where}: expected a string, got {json.dumps(resolved)}")

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return _NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.resources:
            return self.physical_id(name)
        raise TemplateError(f"Ref to {name}, which is neither a parameter nor a resource of the template")

    def physical_id(self, logical: str) -> str:
        if logical not in self.physical_ids:
            resource = self.resources[logical]
            props = resource.get("Properties", {})
            kind = resource["Type"]
            if kind in (FUNCTION, "AWS::Lambda::Function") and "FunctionName" in props:
                physical = self.text(props["FunctionName"], f"{logical}.FunctionName")
            elif kind == "AWS::DynamoDB::Table" and "TableName" in props:
                physical = self.text(props["TableName"], f"{logical}.TableName")
            elif kind in (FUNCTION, "AWS::Lambda::Function", "AWS::DynamoDB::Table"):
                physical = f"{self.endpoints.stack_name}-{logical}"
            else:  # API, integration, deployment ids: short, lowercase, stable
                physical = hashlib.sha1(f"{self.endpoints.stack_name}/{logical}".encode()).hexdigest()[:10]
            self.physical_ids[logical] = physical
            self.logical_ids[physical] = logical
        return self.physical_ids[logical]

    def condition(self, name: Optional[str]) -> bool:
        if name is None:
            return True
        if name not in self._conditions:
            if name not in self._condition_specs:
                raise TemplateError(f"condition {name} is not defined")
            self._conditions[name] = bool(self._evaluate(self._condition_specs[name]))
        return self._conditions[name]

    def _evaluate(self, spec: Any) -> Any:
        if isinstance(spec, dict) and len(spec) == 1:
            (key, argument), = spec.items()
            if key == "Condition":
                return self.condition(argument)
            if key == "Fn::Equals":
                left, right = (self._evaluate(v) for v in argument)
                return str(left) == str(right)
            if key == "Fn::Not":
                return not self._evaluate(argument[0])
            if key == "Fn::And":
                return all(self._evaluate(v) for v in argument)
            if key == "Fn::Or":
                return any(self._evaluate(v) for v in argument)
        return self.resolve(spec)

    # ---- intrinsic functions ----------------------------------------------------------------

    def _fn_getatt(self, argument: Any) -> Any:
        logical, attribute = argument.split(".", 1) if isinstance(argument, str) else argument
        if logical not in self.resources:
            raise TemplateError(f"Fn::GetAtt names {logical}, which is not a resource of the template")
        kind = self.resources[logical]["Type"]
        physical = self.physical_id(logical)
        region, account = self.endpoints.region, self.endpoints.account_id
        if attribute == "Arn" and kind in (FUNCTION, "AWS::Lambda::Function"):
            return f"arn:aws:lambda:{region}:{account}:function:{physical}"
        if attribute == "Arn" and kind == "AWS::DynamoDB::Table":
            return f"arn:aws:dynamodb:{region}:{account}:table/{physical}"
        if attribute == "StreamArn" and kind == "AWS::DynamoDB::Table":  # local/streams.py's records name it
            return f"arn:aws:dynamodb:{region}:{account}:table/{physical}/stream/local"
        if attribute == "ApiEndpoint" and kind == "AWS::ApiGatewayV2::Api":
            return f"wss://{physical}.execute-api.{region}.{URL_SUFFIX}"
        if attribute in ("ApiId", "RootResourceId"):
            return physical
        if attribute == "Arn":
            service = kind.split("::")[1].lower()
            return f"arn:aws:{service}:{region}:{account}:{logical}"
        raise TemplateError(f"Fn::GetAtt {logical}.{attribute} ({kind}) is not known locally")

    def _fn_sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        values = {name: self.resolve(value) for name, value in variables.items()}

        def substitute(match: "re.Match[str]") -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in values:
                value = values[name]
            elif "." in name and name.split(".", 1)[0] in self.resources:
                value = self._fn_getatt(name)
            else:
                value = self.ref(name)
            return self.text(value, f"Fn::Sub {text!r}")

        return _SUB.sub(substitute, text)

    def _fn_join(self, argument: Any) -> str:
        delimiter, items = argument
        return delimiter.join(self.text(item, "Fn::Join") for item in self.resolve(items))

    def _fn_select(self, argument: Any) -> Any:
        index, items = argument
        return self.resolve(items)[int(self.resolve(index))]

    def _fn_split(self, argument: Any) -> List[str]:
        delimiter, text = argument
        return self.text(text, "Fn::Split").split(delimiter)

    def _fn_if(self, argument: Any) -> Any:
        name, when_true, when_false = argument
        return self.resolve(when_true if self.condition(name) else when_false)

    def _fn_findinmap(self, argument: Any) -> Any:
        name, top, second = (self.resolve(part) for part in argument)
        try:
            return self.mappings[name][top][second]
        except KeyError:
            raise TemplateError(f"Fn::FindInMap: {name}/{top}/{second} is not in the template's Mappings")

    def _fn_base64(self, argument: Any) -> str:
        return base64.b64encode(self.text(argument, "Fn::Base64").encode()).decode()

    def _fn_getazs(self, argument: Any) -> List[str]:
        return [f"{self.endpoints.region}{zone}" for zone in "abc"]


def _parameter_values(declared: Dict[str, Any], overrides: Mapping[str, str]) -> Dict[str, Any]:
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise TemplateError(f"parameters {unknown} do not exist in the template")
    values: Dict[str, Any] = {}
    for name, spec in declared.items():
        if name in overrides:
            value = overrides[name]
        elif "Default" in spec:
            value = spec["Default"]
        else:
            raise TemplateError(f"parameter {name} has no default: give it a value")
        allowed = spec.get("AllowedValues")
        if allowed is not None and value not in allowed:
            raise TemplateError(f"parameter {name}={value!r} is not one of {allowed}")
        kind = spec.get("Type", "String")
        if kind.startswith("AWS::SSM::Parameter::Value"):
            raise TemplateError(f"parameter {name} ({kind}) is read from SSM at deploy time; not supported locally")
        # AllowedPattern is not checked: local URLs are http://, where deployed ones must be https://.
        values[name] = value.split(",") if kind == "CommaDelimitedList" and isinstance(value, str) else value
    return values


def _merge_globals(defaults: Dict[str, Any], props: Dict[str, Any]) -> Dict[str, Any]:
    """SAM's Globals: maps merge (the function's keys win), lists add up, scalars are overridden."""
    merged = dict(defaults)
    for key, value in props.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and not _is_intrinsic(value):
            merged[key] = _merge_globals(merged[key], value)
        elif isinstance(value, list) and isinstance(merged.get(key), list):
            merged[key] = merged[key] + value
        else:
            merged[key] = value
    return merged


def _is_intrinsic(value: Dict[str, Any]) -> bool:
    key = next(iter(value), "")
    return len(value) == 1 and (key in ("Ref", "Condition") or key.startswith("Fn::"))


class _Builder:
    def __init__(self, path: pathlib.Path, endpoints: LocalEndpoints, code_dir: Optional[pathlib.Path]) -> None:
        try:
            self.template = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise TemplateError(f"cannot read {path}: {error}")
        self.path = path
        self.endpoints = endpoints
        self.code_dir = code_dir
        self.layers: Dict[str, str] = {}  # layer resource -> the folder it is unpacked in
        self.r = _Resolver(self.template, endpoints)
        self.deployment = Deployment()
        self.api_stages: Dict[str, Tuple[str, List[str]]] = {}  # API id -> (logical id, stage names)

    def of_type(self, *kinds: str) -> List[Tuple[str, Dict[str, Any]]]:
        return [(name, r) for name, r in self.r.resources.items() if r["Type"] in kinds]

    def function_by_uri(self, uri: Any, where: str) -> str:
        """The function an invocation URI (or a function ARN) names, by its logical id."""
        text = self.r.text(uri, where)
        match = _INVOKED_FUNCTION.search(text)
        logical = self.r.logical_ids.get(match.group(1)) if match else None
        if logical is None or logical not in self.deployment.functions:
            raise TemplateError(f"{where} invokes {text}, which is no function of this template")
        return logical

    def build(self) -> Deployment:
        self.build_functions()
        websocket_stage = self.build_websocket_api()
        rest_stage = self.build_rest_api()
        stages = {stage for stage in (websocket_stage, rest_stage) if stage}
        if len(stages) > 1:
            raise TemplateError(f"the WebSocket API's stage {websocket_stage!r} and the REST API's stage "
                                f"{rest_stage!r} differ; the local gateway serves both on one stage")
        self.deployment.stage = stages.pop() if stages else self.deployment.stage
        self.build_tables()
        self.localise_environments()
        return self.deployment

    # ---- functions ----------------------------------------------------------------------------

    def build_functions(self) -> None:
        defaults = self.template.get("Globals", {}).get("Function", {})
        code_uris = set()
        for logical, resource in self.of_type(FUNCTION, "AWS::Lambda::Function"):
            if resource["Type"] != FUNCTION:
                raise TemplateError(f"{logical}: only AWS::Serverless::Function (with a local CodeUri) runs locally")
            props = _merge_globals(defaults, resource.get("Properties", {}))
            self.r.physical_id(logical)
            code_uris.add(self.code_source(self.r.resolve(props.get("CodeUri")), logical))
            variables = props.get("Environment", {}).get("Variables", {})
            self.deployment.functions[logical] = FunctionSpec(
                name=logical,
                handler=self.r.text(props["Handler"], f"{logical}.Handler"),
                environment={k: self.r.text(v, f"{logical}: {k}") for k, v in self.r.resolve(variables).items()},
                memory_mb=int(self.r.resolve(props.get("MemorySize", 128))),
                timeout_s=float(self.r.resolve(props.get("Timeout", 3))),
                reserved_concurrency=(int(self.r.resolve(props["ReservedConcurrentExecutions"]))
                                      if "ReservedConcurrentExecutions" in props else None),
                layers=tuple(self.layer(ref, logical) for ref in props.get("Layers", [])),
            )
            self.build_events(logical, props.get("Events", {}))
        if len(code_uris) > 1:
            raise TemplateError(f"functions load different code ({sorted(map(str, code_uris))}); "
                                "the local runtime runs one package")
        if code_uris:
            self.deployment.project_dir = str(self.unpack(code_uris.pop()))

    def layer(self, reference: Any, logical: str) -> str:
        """A layer of this template (Ref to an AWS::Serverless::LayerVersion with a local ContentUri),
        unpacked once; a layer named by ARN lives in another account and cannot run here."""
        name = reference.get("Ref") if isinstance(reference, dict) else None
        resource = self.template.get("Resources", {}).get(name) if isinstance(name, str) else None
        if resource is None or resource.get("Type") != "AWS::Serverless::LayerVersion":
            raise TemplateError(f"{logical}: layer {reference!r} is not an AWS::Serverless::LayerVersion "
                                "of this template")
        if name not in self.layers:
            source = self.code_source(self.r.resolve(resource["Properties"].get("ContentUri")), name)
            # beside the code (cleaned up with it), in a folder no import can reach
            target = (self.code_dir / ".layers" / name) if self.code_dir else pathlib.Path(
                tempfile.mkdtemp(prefix=f"kefu-layer-{name}-"))
            self.layers[name] = str(self.unpack(source, target))
        return self.layers[name]

    def code_source(self, code_uri: Any, logical: str) -> pathlib.Path:
        if not isinstance(code_uri, str) or code_uri.startswith("s3://"):
            raise TemplateError(f"{logical}: CodeUri {code_uri!r} is not a local file: boot from the template "
                                "`make package` writes, before `cloudformation package` uploads its code")
        source = (self.path.parent / code_uri).resolve()
        if not source.is_dir() and not zipfile.is_zipfile(source):
            raise TemplateError(f"{logical}: CodeUri {code_uri} ({source}) is neither a folder nor a zip")
        return source

    def build_events(self, logical: str, events: Dict[str, Any]) -> None:
        for event_name, event in events.items():
            props = self.r.resolve(event.get("Properties", {}))
            if event.get("Type") == "DynamoDB":
                self.deployment.streams.append(StreamSource(
                    function=logical, table=table_of_stream(str(props["Stream"])),
                    batch_size=int(props.get("BatchSize", 100)),
                    batching_window_s=float(props.get("MaximumBatchingWindowInSeconds", 0)),
                    starting_position=str(props.get("StartingPosition", "LATEST"))))
                continue
            if event.get("Type") != "Schedule":
                raise TemplateError(f"{logical}: event {event_name} of type {event.get('Type')} is not run locally")
            if props.get("Enabled") is False or props.get("State") == "DISABLED":
                continue
            self.deployment.schedules.append(Schedule(
                function=logical, expression=props["Schedule"], name=props.get("Name") or f"{logical}{event_name}"))

    def unpack(self, source: pathlib.Path, target: Optional[pathlib.Path] = None) -> pathlib.Path:
        if source.is_dir():
            return source
        target = target or self.code_dir or pathlib.Path(tempfile.mkdtemp(prefix="kefu-code-"))
        with zipfile.ZipFile(source) as archive:
            archive.extractall(target)
        return target

    # ---- WebSocket API ------------------------------------------------------------------------

    def build_websocket_api(self) -> Optional[str]:
        apis = []
        for logical, resource in self.of_type("AWS::ApiGatewayV2::Api"):
            props = resource.get("Properties", {})
            if self.r.resolve(props.get("ProtocolType")) != "WEBSOCKET":
                raise TemplateError(f"{logical}: only WebSocket APIs of API Gateway v2 run locally")
            apis.append(logical)
            self.deployment.websocket_route_selection = self.r.text(
                props.get("RouteSelectionExpression", "$request.body.action"), f"{logical}.RouteSelectionExpression")
        if not apis:
            return None
        if len(apis) > 1:
            raise TemplateError(f"the template has {len(apis)} WebSocket APIs ({apis}); the local gateway serves one")
        api_id = self.r.physical_id(apis[0])
        stages = [self.r.text(r["Properties"]["StageName"], f"{name}.StageName")
                  for name, r in self.of_type(WEBSOCKET_STAGE)
                  if self.r.resolve(r["Properties"].get("ApiId")) == api_id]
        if len(stages) != 1:
            raise TemplateError(f"{apis[0]} has {len(stages)} stages; the local gateway serves exactly one")
        self.api_stages[api_id] = (apis[0], stages)
        for name, route in self.of_type("AWS::ApiGatewayV2::Route"):
            props = route["Properties"]
            key = self.r.text(props["RouteKey"], f"{name}.RouteKey")
            if self.r.resolve(props.get("AuthorizationType", "NONE")) != "NONE" or props.get("ApiKeyRequired"):
                raise TemplateError(f"{name}: WebSocket route authorization is not run locally")
            if "Target" not in props:
                raise TemplateError(f"{name}: route {key} has no integration target")
            target = self.r.text(props["Target"], f"{name}.Target")
            integration = self.r.logical_ids.get(target.split("/", 1)[-1])
            if not target.startswith("integrations/") or integration not in self.r.resources:
                raise TemplateError(f"{name}: target {target} is no integration of this template")
            integration_props = self.r.resources[integration]["Properties"]
            if self.r.resolve(integration_props.get("IntegrationType")) != "AWS_PROXY":
                raise TemplateError(f"{integration}: only AWS_PROXY (Lambda proxy) integrations run locally")
            self.deployment.websocket_routes[key] = self.function_by_uri(
                integration_props["IntegrationUri"], f"{integration}.IntegrationUri")
        return stages[0]

    # ---- REST API -----------------------------------------------------------------------------

    def build_rest_api(self) -> Optional[str]:
        apis = self.of_type(*REST_APIS)
        if not apis:
            return None
        if len(apis) > 1:
            raise TemplateError(f"the template has {len(apis)} REST APIs; the local gateway serves one")
        logical, resource = apis[0]
        props = resource.get("Properties", {})
        body = props.get("DefinitionBody") if resource["Type"] == "AWS::Serverless::Api" else props.get("Body")
        if body is None:
            raise TemplateError(f"{logical}: only an inline swagger definition (DefinitionBody) runs locally")
        stage = self.rest_stage(logical, resource)
        self.api_stages[self.r.physical_id(logical)] = (logical, [stage])
        security = body.get("securityDefinitions", {})
        self.deployment.binary_media_types = list(self.r.resolve(
            body.get("x-amazon-apigateway-binary-media-types", props.get("BinaryMediaTypes", []))))
        for path, methods in body.get("paths", {}).items():
            routes: List[RestRoute] = []
            preflight: Optional[Dict[str, str]] = None
            for method, spec in methods.items():
                integration = spec.get("x-amazon-apigateway-integration", {})
                where = f"{logical} {method.upper()} {path}"
                if integration.get("type") == "mock" and method == "options":
                    preflight = _preflight_headers(integration)
                    continue
                if integration.get("type") != "aws_proxy":
                    raise TemplateError(f"{where}: only Lambda proxy integrations (and CORS preflights) run locally")
                authorizer, api_key = self.security(spec.get("security", []), security, where)
                routes.append(RestRoute(path=path, method=method.upper(),
                                        function=self.function_by_uri(integration["uri"], where),
                                        authorizer=authorizer, api_key_required=api_key))
            self.deployment.rest_routes += [RestRoute(route.path, route.method, route.function, route.authorizer,
                                                      route.api_key_required, preflight) for route in routes]
        return stage

    def rest_stage(self, logical: str, resource: Dict[str, Any]) -> str:
        if resource["Type"] == "AWS::Serverless::Api":
            return self.r.text(resource["Properties"]["StageName"], f"{logical}.StageName")
        api_id = self.r.physical_id(logical)
        stages = [self.r.text(r["Properties"]["StageName"], f"{name}.StageName")
                  for name, r in self.of_type("AWS::ApiGateway::Stage")
                  if self.r.resolve(r["Properties"].get("RestApiId")) == api_id]
        if len(stages) != 1:
            raise TemplateError(f"{logical} has {len(stages)} stages; the local gateway serves exactly one")
        return stages[0]

    def security(self, requirements: List[Dict[str, Any]], definitions: Dict[str, Any],
                 where: str) -> Tuple[Optional[str], bool]:
        authorizer, api_key = None, False
        for requirement in requirements:
            for name in requirement:
                definition = definitions.get(name)
                if definition is None:
                    raise TemplateError(f"{where}: security {name} is not in securityDefinitions")
                kind = definition.get("x-amazon-apigateway-authtype")
                if kind is None and definition.get("type") == "apiKey" and definition.get("name", "").lower() == "x-api-key":
                    api_key = True
                elif kind == "custom":
                    authorizer = self.authorizer(name, definition, where)
                else:
                    raise TemplateError(f"{where}: {kind or definition.get('type')} authorization is not run locally")
        return authorizer, api_key

    def authorizer(self, name: str, definition: Dict[str, Any], where: str) -> str:
        if name not in self.deployment.authorizers:
            config = definition["x-amazon-apigateway-authorizer"]
            kind = config.get("type", "token").upper()
            if kind == "REQUEST":
                sources = tuple(s.strip() for s in config.get("identitySource", "").split(",") if s.strip())
            else:
                sources = (f"method.request.header.{definition.get('name', 'Authorization')}",)
            self.deployment.authorizers[name] = Authorizer(
                name=name, function=self.function_by_uri(config["authorizerUri"], f"{where} authorizer {name}"),
                kind=kind, identity_sources=sources, ttl_seconds=int(config.get("authorizerResultTtlInSeconds", 300)))
        return name

    # ---- tables -------------------------------------------------------------------------------

    def build_tables(self) -> None:
        for logical, resource in self.of_type("AWS::DynamoDB::Table"):
            props = self.r.resolve(resource.get("Properties", {}))
            props["TableName"] = self.r.physical_id(logical)
            self.deployment.tables.append(props)

    # ---- environment --------------------------------------------------------------------------

    def localise_environments(self) -> None:
        for name, spec in list(self.deployment.functions.items()):
            environment = {variable: self.localise(value, f"{name}: {variable}")
                           for variable, value in spec.environment.items()}
            environment.update(self.endpoints.environment)
            self.deployment.functions[name] = dataclasses.replace(spec, environment=environment)

    def localise(self, value: str, where: str) -> str:
        """A URL of one of this template's APIs, as the local gateway serves it; anything else as is."""
        if "{{resolve:" in value:
            raise TemplateError(f"{where}: dynamic references ({value}) are not resolved locally")
        match = _EXECUTE_API.match(value)
        if match is None or match.group(2) not in self.api_stages:
            return value
        scheme, api_id, path, rest = match.groups()
        api, stages = self.api_stages[api_id]
        stage = (path or "/").split("/")[1]
        if stage and stage not in stages:
            raise TemplateError(
                f"{where} is {value}: stage {stage!r} of {api}, which is deployed as stage "
                f"{' or '.join(repr(s) for s in stages)} only; every call to it would fail in the cloud too")
        local = urllib.parse.urlsplit(self.endpoints.gateway)
        local_scheme = {"https": local.scheme, "wss": "wss" if local.scheme == "https" else "ws"}[scheme]
        return f"{local_scheme}://{local.netloc}{path or ''}{rest}"


def _preflight_headers(integration: Dict[str, Any]) -> Dict[str, str]:
    """The headers a mock OPTIONS integration answers with, e.g. {"Access-Control-Allow-Origin": "*"}."""
    parameters = integration.get("responses", {}).get("default", {}).get("responseParameters", {})
    return {name[len(PREFLIGHT_HEADER):]: value.strip("'")
            for name, value in parameters.items() if name.startswith(PREFLIGHT_HEADER)}


def deployment_from_template(path: "str | pathlib.Path", *, local_endpoints: LocalEndpoints,
                             code_dir: "str | pathlib.Path | None" = None) -> Deployment:
    """What ``path`` would deploy, resolved against ``local_endpoints``.

    The functions' code (CodeUri, a zip next to the template) is unpacked into ``code_dir`` (a new
    temporary folder when None); ``Deployment.project_dir`` names it. Raises TemplateError.
    """
    return _Builder(pathlib.Path(path), local_endpoints, pathlib.Path(code_dir) if code_dir else None).build()
