"""A Chalice REST app, not ours, written as Chalice's docs write them: one route per behaviour
API Gateway adds in front of Lambda (authorizers, API keys, CORS, binary, errors, limits)."""
import os
import time

from chalice import AuthResponse, Chalice, CORSConfig, Response

app = Chalice(app_name="rest-features")
app.api.binary_types.append("application/x-kefu-binary")


def _decide(auth_request, counter):
    # Each authorizer is a function of its own (its own processes): calls are counted in a file the
    # test names, one line per call.
    with open(os.environ["REST_APP_CALLS_FILE"], "a") as calls:
        calls.write(counter + "\n")
    token = auth_request.token
    if token == "allow":
        return AuthResponse(routes=["/guarded", "/guarded-uncached", "/guarded-short"],
                            principal_id="alice", context={"plan": "gold", "seats": 3, "admin": False})
    if token == "other-route-only":
        return AuthResponse(routes=["/somewhere-else"], principal_id="bob")  # an implicit deny here
    if token == "deny":
        return {"principalId": "mallory", "policyDocument": {"Version": "2012-10-17", "Statement": [
            {"Action": "execute-api:Invoke", "Effect": "Deny", "Resource": [auth_request.method_arn]}]}}
    if token == "crash":
        raise RuntimeError("the authorizer has a bug")
    raise Exception("Unauthorized")  # what Lambda authorizers raise for API Gateway's 401


@app.authorizer(ttl_seconds=300)
def cached_auth(auth_request):
    return _decide(auth_request, "cached")


@app.authorizer(ttl_seconds=0)
def uncached_auth(auth_request):
    return _decide(auth_request, "uncached")


@app.authorizer(ttl_seconds=1)
def short_auth(auth_request):
    return _decide(auth_request, "short")


@app.route("/guarded", authorizer=cached_auth)
def guarded():
    return {"authorizer": app.current_request.context["authorizer"]}


@app.route("/guarded-uncached", authorizer=uncached_auth)
def guarded_uncached():
    return {"ok": True}


@app.route("/guarded-short", authorizer=short_auth)
def guarded_short():
    return {"ok": True}


@app.route("/metered", api_key_required=True)
def metered():
    return {"api_key": app.current_request.context["identity"]["apiKey"]}


@app.route("/items/{item_id}", methods=["GET", "PUT"], cors=CORSConfig(
    allow_origin="https://shop.example", allow_headers=["X-Trace"], max_age=600, allow_credentials=True))
def item(item_id):
    return {"item_id": item_id}


@app.route("/no-cors", methods=["POST"])
def no_cors():
    return {"ok": True}


@app.route("/event/{name}", methods=["GET", "POST"])
def event(name):
    return app.current_request.to_dict()


@app.route("/photo")
def photo():
    return Response(body=b"\x89PNG\xde\xad\xbe\xef", headers={"Content-Type": "image/png"})


@app.route("/echo-binary", methods=["POST"], content_types=["application/x-kefu-binary"])
def echo_binary():
    return Response(body=app.current_request.raw_body, headers={"Content-Type": "application/x-kefu-binary"})


@app.route("/text")
def text():
    return Response(body="plain words", headers={"Content-Type": "text/plain; charset=utf-8"})


@app.route("/cookies")
def cookies():
    return Response(body="", status_code=204, headers={"Set-Cookie": ["a=1", "b=2"]})


@app.route("/slow/{seconds}")
def slow(seconds):
    time.sleep(float(seconds))
    return {"slept": float(seconds), "path": app.current_request.context["path"]}


@app.route("/unserializable")
def unserializable():
    return {"when": object()}  # Chalice's serialization fails outside the view: the invocation fails


@app.route("/upload", methods=["POST"], content_types=["application/octet-stream"])
def upload():
    return {"bytes": len(app.current_request.raw_body)}
