"""REST through the local gateway as API Gateway's REST API answers it, over real HTTP.

Most tests serve tests/apps/rest/app.py (a Chalice app written as Chalice's docs write them) through
LocalGateway; the rest drive local/rest_api.py with a deployment and functions of their own, for
what a Chalice app cannot express (REQUEST authorizers, greedy paths, malformed answers)."""
from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
import pathlib
import threading
import time
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List

import pytest
import requests
from aiohttp import web

from local.functions import Authorizer, Deployment, RestRoute
from local.gateway import LocalGateway
from local.rest_api import RestApi

APP_DIR = pathlib.Path(__file__).resolve().parent / "apps" / "rest"

pytestmark = pytest.mark.timeout(60)

API_KEY = "k-0123456789abcdef"


@pytest.fixture(scope="module")
def calls_file(tmp_path_factory):
    return tmp_path_factory.mktemp("rest-app") / "authorizer-calls"


def authorizer_calls(calls_file) -> Dict[str, int]:
    """How often each authorizer of the app ran (it counts in ``calls_file``)."""
    lines = calls_file.read_text().split() if calls_file.exists() else []
    return {name: lines.count(name) for name in ("cached", "uncached", "short")}


@pytest.fixture(scope="module")
def gateway(calls_file):
    gw = LocalGateway.for_chalice(str(APP_DIR), "app:app", port=0, api_keys=[API_KEY],
                                  function_env={"REST_APP_CALLS_FILE": str(calls_file)})
    gw.run_in_thread()
    yield gw
    gw.stop_from_thread()


@pytest.fixture
def api(gateway):
    return gateway.rest_url


def _gateway_error(response, status, error_type, body):
    assert response.status_code == status, response.text
    assert response.headers["x-amzn-ErrorType"] == error_type
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == body


# ---- routing ------------------------------------------------------------------------------------

def test_unknown_route_and_unknown_method_are_missing_authentication_token(api):
    for response in (requests.get(api + "/nowhere"), requests.get(api + "/no-cors"),
                     requests.delete(api + "/items/1")):
        _gateway_error(response, 403, "MissingAuthenticationTokenException", {"message": "Missing Authentication Token"})


def test_unknown_route_with_an_authorization_header_is_read_as_a_signature(api):
    response = requests.get(api + "/nowhere", headers={"Authorization": "Bearer abc"})
    assert response.status_code == 403
    assert response.headers["x-amzn-ErrorType"] == "IncompleteSignatureException"
    assert response.json()["message"].endswith("Authorization=Bearer abc")


# ---- the proxy event ----------------------------------------------------------------------------

def test_proxy_event_fields_as_api_gateway_sends_them(api):
    response = requests.post(api + "/event/a%20b/?tag=x&tag=y&q=caf%C3%A9", data='{"a": 1}',
                             headers={"Content-Type": "application/json", "X-Custom": "1", "User-Agent": "probe/1"})
    assert response.status_code == 200
    event = response.json()
    assert event["method"] == "POST"
    assert event["uri_params"] == {"name": "a%20b"}
    assert event["query_params"] == {"tag": "y", "q": "café"}  # decoded; the last value of a repeated key
    assert event["headers"]["x-custom"] == "1"
    assert event["headers"]["x-forwarded-for"] == "127.0.0.1"
    context = event["context"]
    assert context["resourcePath"] == "/event/{name}"
    assert context["httpMethod"] == "POST"
    assert context["stage"] == "api"
    assert context["path"] == "/api/event/a%20b"  # REST APIs keep the percent-encoding
    assert context["identity"]["sourceIp"] == "127.0.0.1"
    assert context["identity"]["userAgent"] == "probe/1"
    assert context["requestId"] == response.headers["x-amzn-RequestId"]
    assert {"accountId", "apiId", "domainName", "extendedRequestId", "protocol", "requestTime",
            "requestTimeEpoch"} <= set(context)


def test_event_top_level_fields_and_nulls():
    seen: List[Dict[str, Any]] = []

    async def invoke(function, event):
        seen.append(event)
        return {"statusCode": 200, "body": "{}"}

    deployment = Deployment(rest_routes=[RestRoute("/", "GET", "Root"), RestRoute("/n/{id}", "POST", "N")],
                            binary_media_types=["image/*"])
    with serve(RestApi(deployment, invoke)) as url:
        assert requests.get(url + "/").status_code == 200
        assert requests.post(url + "/n/x%2Fy?k=1&k=2", data="h\u00e9".encode()).status_code == 200
        assert requests.post(url + "/n/1", data=b"\xff\xd8", headers={"Content-Type": "image/jpeg"}).status_code == 200
    posted, binary = seen[1], seen[2]
    assert (posted["resource"], posted["path"], posted["httpMethod"]) == ("/n/{id}", "/n/x%2Fy", "POST")
    assert posted["pathParameters"] == {"id": "x%2Fy"}
    assert posted["queryStringParameters"] == {"k": "2"}
    assert posted["multiValueQueryStringParameters"] == {"k": ["1", "2"]}
    assert (posted["body"], posted["isBase64Encoded"]) == ("h\u00e9", False)
    assert (binary["body"], binary["isBase64Encoded"]) == ("/9g=", True)
    event = seen[0]
    assert event["resource"] == "/" and event["path"] == "/"
    for key in ("queryStringParameters", "multiValueQueryStringParameters", "pathParameters",
                "stageVariables", "body"):
        assert event[key] is None, key
    assert event["isBase64Encoded"] is False
    assert event["multiValueHeaders"]["Host"] == [event["headers"]["Host"]]


def test_current_request_is_per_invocation_under_concurrency(api):
    def fetch(seconds):
        return requests.get(f"{api}/slow/{seconds}", timeout=10).json()

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(fetch, ["0.3", "0.2", "0.1", "0.25"]))
    assert [a["path"] for a in answers] == ["/api/slow/0.3", "/api/slow/0.2", "/api/slow/0.1", "/api/slow/0.25"]


# ---- authorizers --------------------------------------------------------------------------------

def test_authorizer_allows_and_passes_its_context(api):
    response = requests.get(api + "/guarded", headers={"Authorization": "allow"})
    assert response.status_code == 200
    authorizer = response.json()["authorizer"]
    assert authorizer["principalId"] == "alice"
    assert (authorizer["plan"], authorizer["seats"], authorizer["admin"]) == ("gold", "3", "false")  # strings, as AWS


def test_missing_token_is_401_without_invoking_the_authorizer(api, calls_file):
    before = authorizer_calls(calls_file)["uncached"]
    _gateway_error(requests.get(api + "/guarded-uncached"), 401, "UnauthorizedException", {"message": "Unauthorized"})
    assert authorizer_calls(calls_file)["uncached"] == before


def test_authorizer_raising_unauthorized_is_401(api, calls_file):
    before = authorizer_calls(calls_file)["uncached"]
    response = requests.get(api + "/guarded-uncached", headers={"Authorization": "nope"})
    _gateway_error(response, 401, "UnauthorizedException", {"message": "Unauthorized"})
    assert authorizer_calls(calls_file)["uncached"] == before + 1


def test_policy_without_this_route_is_403(api):
    response = requests.get(api + "/guarded-uncached", headers={"Authorization": "other-route-only"})
    _gateway_error(response, 403, "AccessDeniedException", {"Message": "User is not authorized to access this resource"})


def test_explicit_deny_is_403(api):
    response = requests.get(api + "/guarded-uncached", headers={"Authorization": "deny"})
    _gateway_error(response, 403, "AccessDeniedException",
                   {"Message": "User is not authorized to access this resource with an explicit deny"})


def test_authorizer_exception_is_500(api):
    response = requests.get(api + "/guarded-uncached", headers={"Authorization": "crash"})
    _gateway_error(response, 500, "AuthorizerConfigurationException", {"message": None})


def test_authorizer_answers_are_cached_by_token_for_the_ttl(api, calls_file):
    start = authorizer_calls(calls_file)
    for _ in range(3):
        assert requests.get(api + "/guarded", headers={"Authorization": "allow"}).status_code == 200
        assert requests.get(api + "/guarded-uncached", headers={"Authorization": "allow"}).status_code == 200
    calls = authorizer_calls(calls_file)
    assert calls["cached"] - start["cached"] <= 1  # at most once: an earlier test may have cached it
    assert calls["uncached"] - start["uncached"] == 3  # ttl 0: every request
    for _ in range(2):
        assert requests.get(api + "/guarded", headers={"Authorization": "deny"}).status_code == 403
    assert authorizer_calls(calls_file)["cached"] - start["cached"] <= 2  # a Deny is cached too


def test_cached_answer_expires_after_the_ttl(api, calls_file):
    start = authorizer_calls(calls_file)["short"]
    assert requests.get(api + "/guarded-short", headers={"Authorization": "allow"}).status_code == 200
    assert requests.get(api + "/guarded-short", headers={"Authorization": "allow"}).status_code == 200
    assert authorizer_calls(calls_file)["short"] == start + 1
    time.sleep(1.1)
    assert requests.get(api + "/guarded-short", headers={"Authorization": "allow"}).status_code == 200
    assert authorizer_calls(calls_file)["short"] == start + 2


def test_request_authorizer_gets_the_request_and_is_cached_by_all_identity_sources():
    calls: List[Dict[str, Any]] = []

    async def invoke(function, event):
        if function == "Auth":
            calls.append(event)
            effect = "Allow" if event["headers"]["X-Tenant"] == "t1" else "Deny"
            return {"principalId": "p", "context": {"tenant": event["headers"]["X-Tenant"]},
                    "policyDocument": {"Statement": [{"Action": "execute-api:*", "Effect": effect,
                                                      "Resource": "arn:aws:execute-api:*:*:*/api/GET/*"}]}}
        return {"statusCode": 200, "body": json.dumps(event["requestContext"]["authorizer"])}

    deployment = Deployment(
        rest_routes=[RestRoute("/orders/{id}", "GET", "Orders", authorizer="tenant")],
        authorizers={"tenant": Authorizer("tenant", "Auth", kind="REQUEST", ttl_seconds=60, identity_sources=(
            "method.request.header.X-Tenant", "method.request.querystring.region"))})
    with serve(RestApi(deployment, invoke)) as url:
        assert requests.get(url + "/orders/7", headers={"X-Tenant": "t1"}).status_code == 401  # no region
        assert calls == []
        first = requests.get(url + "/orders/7?region=eu", headers={"X-Tenant": "t1"})
        assert first.status_code == 200 and first.json()["tenant"] == "t1"
        assert requests.get(url + "/orders/8?region=eu", headers={"X-Tenant": "t1"}).status_code == 200
        assert len(calls) == 1  # same identity: the cached policy, evaluated for the new path
        assert requests.get(url + "/orders/7?region=us", headers={"X-Tenant": "t1"}).status_code == 200
        assert requests.get(url + "/orders/7?region=eu", headers={"X-Tenant": "t2"}).status_code == 403
        assert len(calls) == 3
    event = calls[0]
    assert event["type"] == "REQUEST"
    assert event["methodArn"].endswith("/api/GET/orders/7")
    assert event["pathParameters"] == {"id": "7"} and event["queryStringParameters"] == {"region": "eu"}
    assert "body" not in event


# ---- API keys -----------------------------------------------------------------------------------

def test_api_key_required(api):
    _gateway_error(requests.get(api + "/metered"), 403, "ForbiddenException", {"message": "Forbidden"})
    _gateway_error(requests.get(api + "/metered", headers={"x-api-key": "guess"}), 403, "ForbiddenException",
                   {"message": "Forbidden"})
    response = requests.get(api + "/metered", headers={"X-API-Key": API_KEY})
    assert response.status_code == 200 and response.json() == {"api_key": API_KEY}


# ---- CORS preflight -----------------------------------------------------------------------------

def test_preflight_is_answered_by_the_gateway_for_cors_routes(api):
    response = requests.options(api + "/items/42", headers={"Origin": "https://shop.example",
                                                           "Access-Control-Request-Method": "PUT"})
    assert response.status_code == 200 and response.content == b""
    assert response.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    assert sorted(response.headers["Access-Control-Allow-Methods"].split(",")) == ["GET", "OPTIONS", "PUT"]
    assert response.headers["Access-Control-Allow-Headers"].endswith(",X-Trace")
    assert response.headers["Access-Control-Max-Age"] == "600"
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    actual = requests.get(api + "/items/42")
    assert actual.json() == {"item_id": "42"}
    assert actual.headers["Access-Control-Allow-Origin"] == "https://shop.example"  # from the function


def test_preflight_on_a_route_without_cors_is_missing_authentication_token(api):
    _gateway_error(requests.options(api + "/no-cors"), 403, "MissingAuthenticationTokenException",
                   {"message": "Missing Authentication Token"})


# ---- responses ----------------------------------------------------------------------------------

def test_dict_bodies_are_json_by_default(api):
    response = requests.get(api + "/items/1")
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"item_id": "1"}
    text = requests.get(api + "/text")
    assert text.headers["Content-Type"] == "text/plain; charset=utf-8" and text.text == "plain words"


def test_binary_response_is_decoded_only_for_a_binary_first_accept(api):
    raw = b"\x89PNG\xde\xad\xbe\xef"
    assert requests.get(api + "/photo", headers={"Accept": "image/png"}).content == raw
    browser = requests.get(api + "/photo", headers={"Accept": "text/html,image/png;q=0.9,*/*;q=0.8"})
    assert browser.status_code == 200
    assert browser.content == base64.b64encode(raw)  # API Gateway hands over the base64 text


def test_binary_request_body_round_trips_with_a_custom_binary_type(api):
    data = bytes(range(256))
    response = requests.post(api + "/echo-binary", data=data, headers={
        "Content-Type": "application/x-kefu-binary", "Accept": "application/x-kefu-binary"})
    assert response.status_code == 200 and response.content == data


def test_multi_value_headers_reach_the_client_as_separate_headers(api):
    response = requests.get(api + "/cookies")
    assert response.status_code == 204
    assert response.raw.headers.getlist("Set-Cookie") == ["a=1", "b=2"]


# ---- limits and failures ------------------------------------------------------------------------

def test_function_failure_is_502(api):
    _gateway_error(requests.get(api + "/unserializable"), 502, "InternalServerErrorException",
                   {"message": "Internal server error"})


def test_integration_timeout_is_504(gateway, api):
    gateway.rest_api.integration_timeout = 0.5
    try:
        started = time.monotonic()
        response = requests.get(api + "/slow/2", timeout=10)
        elapsed = time.monotonic() - started
    finally:
        gateway.rest_api.integration_timeout = 29.0
    _gateway_error(response, 504, "InternalServerErrorException", {"message": "Endpoint request timed out"})
    assert elapsed < 1.9


def test_integration_timeout_defaults_to_29_seconds(gateway):
    assert gateway.rest_api.integration_timeout == 29.0


def test_payload_over_10_mb_is_413(api):
    limit = 10 * 1024 * 1024
    headers = {"Content-Type": "application/octet-stream"}
    assert requests.post(api + "/upload", data=b"\0" * limit, headers=headers).json() == {"bytes": limit}
    _gateway_error(requests.post(api + "/upload", data=b"\0" * (limit + 1), headers=headers), 413,
                   "RequestTooLargeException", {"message": "Request Too Long"})

    def chunked():
        for _ in range(11):
            yield b"\0" * (1024 * 1024)

    response = requests.post(api + "/upload", data=chunked(), headers=headers)  # no Content-Length
    assert response.status_code == 413


@pytest.mark.parametrize("answer", [
    "not an object",
    {"statusCode": "teapot"},
    {"statusCode": 200, "body": {"not": "a string"}},
    {"statusCode": 200, "headers": ["x"]},
    {"statusCode": 200, "multiValueHeaders": {"X": "not a list"}},
    {"statusCode": 200, "isBase64Encoded": "yes"},
])
def test_malformed_proxy_answers_are_502(answer):
    async def invoke(function, event):
        return answer

    with serve(RestApi(Deployment(rest_routes=[RestRoute("/x", "GET", "Fn")]), invoke)) as url:
        response = requests.get(url + "/x")
    _gateway_error(response, 502, "InternalServerErrorException", {"message": "Internal server error"})


def test_literal_beats_parameter_beats_greedy_and_any_takes_every_method():
    async def invoke(function, event):
        return {"statusCode": 200, "body": json.dumps([function, event["pathParameters"]])}

    deployment = Deployment(rest_routes=[
        RestRoute("/files/readme", "GET", "Literal"), RestRoute("/files/{name}", "GET", "Param"),
        RestRoute("/files/{path+}", "ANY", "Greedy")])
    with serve(RestApi(deployment, invoke)) as url:
        assert requests.get(url + "/files/readme").json() == ["Literal", None]
        assert requests.get(url + "/files/a.txt").json() == ["Param", {"name": "a.txt"}]
        assert requests.get(url + "/files/a/b/c.txt").json() == ["Greedy", {"path": "a/b/c.txt"}]
        assert requests.delete(url + "/files/a/b").json() == ["Greedy", {"path": "a/b"}]
        assert requests.post(url + "/files/x").status_code == 403  # {name} has no POST, {path+} one more segment
        assert requests.get(url + "/files").status_code == 403


# ---- a RestApi of its own on a real port --------------------------------------------------------

@contextmanager
def serve(rest_api: RestApi) -> Iterator[str]:
    """Serve ``rest_api`` at ``http://127.0.0.1:PORT/api`` from a thread with its own loop."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    state: Dict[str, Any] = {}

    async def handle(request: web.Request) -> web.Response:
        return await rest_api.handle(request, request.raw_path.split("?", 1)[0][len("/api"):] or "/")

    async def start() -> None:
        app = web.Application()
        app.router.add_route("*", "/api/{tail:.*}", handle)
        state["runner"] = runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        state["port"] = site._server.sockets[0].getsockname()[1]

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        yield f"http://127.0.0.1:{state['port']}/api"
    finally:
        asyncio.run_coroutine_threadsafe(state["runner"].cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
