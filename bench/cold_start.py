"""Cold starts as Lambda runs them, side by side with a bare Chalice WebSocket app.

    python -m bench.cold_start [--runs 15]        (also part of `python -m bench`, `make bench`)

1. infra.package builds what Lambda would run (the chat zip, the REST function's layer, the
   template) and it is unpacked as Lambda lays it out: the code, the layer (REST function only),
   and a folder holding only what the Lambda Python runtime provides (boto3, botocore and their
   dependencies, taken from this environment).
2. A bare Chalice WebSocket app that imports boto3, written here and laid out as `chalice package`
   ships it (app.py and chalice's runtime module, no .pyc): the minimum any Chalice WebSocket app
   pays.
3. Each probe runs in a fresh interpreter (`-I -S -B`: nothing from this environment, and no
   .pyc written, as Lambda's code directory is read-only) with the function's environment from the
   template, and times what the function does before its first answer: the import, and the secret
   loading its first invocation does. Secrets come from a local SSM (moto's server, over real
   HTTP), STS credentials from the local STS stand-in.
4. The probes run round-robin, `--runs` rounds, each round one fresh interpreter per probe. The
   ratio to the bare app is the median over rounds of (probe / the bare app in the same round):
   the machine is shared, and its load drifts more between rounds than within one. Medians, p90
   and minimums of the times themselves are reported too. Everything goes to
   bench/results/cold_start.json, with each goal of issue 13 met or not.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import pathlib
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))

from infra import package as packaging  # noqa: E402

STAGE = "dev"
REGION = "us-east-1"
OSS_REGION = "cn-hangzhou"
BUCKET = "kefu-bench"
ALIYUN_KEY_ID = "LTAI-bench"
BARE_APP = '''from chalice import Chalice
import boto3

app = Chalice(app_name="bare")
app.experimental_feature_flags.update(["WEBSOCKETS"])
app.websocket_api.session = boto3.session.Session()


@app.on_ws_connect()
def connect(event):
    pass


@app.on_ws_message()
def message(event):
    app.websocket_api.send(event.connection_id, event.body)


@app.on_ws_disconnect()
def disconnect(event):
    pass
'''
_SECRET = "from chalicelib import tokens; tokens.signing_key()"  # what a token check does first
_GRANT = ("from chalicelib import uploads; uploads.create_upload_grant(site_id='site1', conversation_id='conv1', "
          "file_name='cat.png', content_type='image/png', size=2048, max_bytes=10485760, "
          "allowed_types=['image/*'])")
_DOWNLOAD = "from chalicelib import uploads; uploads.signed_download_url('uploads/site1/conv1/0123456789abcdef/cat.png', 'cat.png', 'image/png')"
# name: (template function or None for the bare app, what it does before its first answer, statement)
PROBES = {
    "bare_app": (None, "import app (Chalice + boto3)", "import app"),
    "ws_connect": ("WebsocketConnect", "import app; load the token secret (SSM)", f"import app; {_SECRET}"),
    "ws_message": ("WebsocketMessage", "import app (no secret: frames are checked against the connection)",
                   "import app"),
    "ws_disconnect": ("WebsocketDisconnect", "import app (no secret)", "import app"),
    "sweep": ("HeartbeatSweep", "import app (no secret)", "import app"),
    "rest_upload": ("APIHandler", "import app; token secret; Aliyun secret; STS AssumeRole; OSS POST policy",
                    f"import app; {_SECRET}; {_GRANT}"),
    "rest_attachment": ("APIHandler", "import app; token secret; Aliyun secret; STS AssumeRole; signed GET URL",
                        f"import app; {_SECRET}; {_DOWNLOAD}"),
}
CHAT_PROBES = ("ws_connect", "ws_message", "ws_disconnect", "sweep")
# Issue 13: every chat function and the sweep <= 1.0x the bare app, the upload path <= 2.0x, the
# zip the chat functions load <= 1 MB.
MAX_CHAT_RATIO, MAX_UPLOAD_RATIO, MAX_CHAT_ZIP_BYTES = 1.0, 2.0, 1_000_000
PROBE_SCRIPT = """import sys, time
sys.path[:0] = sys.argv[2:]
started = time.perf_counter()
exec(sys.argv[1])
elapsed = (time.perf_counter() - started) * 1000
loaded = []
if "chalicelib.config" in sys.modules:
    loaded = sorted(k for k, v in sys.modules["chalicelib.config"].settings()._secrets.items() if v)
heavy = sorted(m for m in ("cryptography", "oss2", "aliyunsdkcore", "requests") if m in sys.modules)
print(repr((round(elapsed, 1), loaded, heavy)))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bare_app(into: pathlib.Path, chalice_runtime: pathlib.Path) -> pathlib.Path:
    """The bare app as `chalice package` ships it: app.py plus chalice's runtime, sources only."""
    into.mkdir()
    (into / "app.py").write_text(BARE_APP)
    shutil.copytree(chalice_runtime, into / "chalice", ignore=shutil.ignore_patterns("__pycache__"))
    return into


def _function_env(template: Dict[str, Any], function: Optional[str], local: Dict[str, str]) -> Dict[str, str]:
    """What Lambda sets for the function: its template variables (references resolved to the local
    stand-ins), the role's credentials as environment variables, the region."""
    env = {"PATH": os.environ.get("PATH", ""), "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION,
           "AWS_ACCESS_KEY_ID": "ASIABENCH", "AWS_SECRET_ACCESS_KEY": "bench-secret",
           "AWS_SESSION_TOKEN": "bench-session", "AWS_ENDPOINT_URL_SSM": local["ssm"],
           "LANG": "C.UTF-8"}
    if function is None:
        return env
    variables = template["Resources"][function]["Properties"]["Environment"]["Variables"]
    for name, value in variables.items():
        env[name] = value if isinstance(value, str) else local.get(name, "https://example.invalid")
    return env


def _run_probe(code_path: List[pathlib.Path], statement: str, env: Dict[str, str], cwd: str) -> tuple:
    result = subprocess.run([sys.executable, "-I", "-S", "-B", "-c", PROBE_SCRIPT, statement, *map(str, code_path)],
                            capture_output=True, text=True, env=env, cwd=cwd, timeout=120)
    if result.returncode != 0:
        raise SystemExit(f"probe failed: {statement}\n{result.stderr[-3000:]}")
    return eval(result.stdout.strip().splitlines()[-1])  # our own repr of (ms, secrets, heavy modules)


def _p90(values: List[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, -(-len(ordered) * 9 // 10) - 1)]  # nearest rank


def measure(runs: int) -> Dict[str, Any]:
    from moto.server import ThreadedMotoServer

    from local.oss_standin import start_standins

    with tempfile.TemporaryDirectory(prefix="kefu-cold-") as tmp:
        work = pathlib.Path(tmp)
        report = packaging.package(STAGE, work / "out")
        package_dir = work / "out" / "package"
        template = json.loads((package_dir / "sam.json").read_text())
        dirs = packaging.unpack(package_dir, work / "lambda")
        bare = _bare_app(work / "bare", dirs["code"] / "chalice")

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
        ssm_port = _free_port()
        ssm_server = ThreadedMotoServer(ip_address="127.0.0.1", port=ssm_port, verbose=False)
        ssm_server.start()
        aliyun_secret = "bench-aliyun-secret"
        standins = start_standins("127.0.0.1", str(work / "oss"), BUCKET, ALIYUN_KEY_ID, aliyun_secret,
                                  region=OSS_REGION)
        try:
            local = {"ssm": f"http://127.0.0.1:{ssm_port}", "KEFU_OSS_ENDPOINT": standins.oss_endpoint,
                     "KEFU_STS_ENDPOINT": standins.sts_endpoint, "KEFU_OSS_BUCKET": BUCKET,
                     "KEFU_OSS_REGION": OSS_REGION, "KEFU_ALIYUN_ACCESS_KEY_ID": ALIYUN_KEY_ID,
                     "KEFU_STS_ROLE_ARN": "acs:ram::1000000000000000:role/kefu-uploads",
                     "KEFU_CONSOLE_ORIGINS": "https://console.example.com"}
            _put_secrets(template, local["ssm"], aliyun_secret)
            samples: Dict[str, List[float]] = {name: [] for name in PROBES}
            seen: Dict[str, tuple] = {}
            for _ in range(runs):
                for name, (function, _, statement) in PROBES.items():
                    if function is None:
                        path = [bare, dirs["runtime"]]
                    elif "Layers" in template["Resources"][function]["Properties"]:
                        path = [dirs["code"], dirs["layer"], dirs["runtime"]]
                    else:
                        path = [dirs["code"], dirs["runtime"]]
                    ms, secrets, heavy = _run_probe(path, statement, _function_env(template, function, local), tmp)
                    samples[name].append(ms)
                    seen[name] = (secrets, heavy)
        finally:
            standins.stop()
            ssm_server.stop()
    return _summarise(runs, report, samples, seen)


def _put_secrets(template: Dict[str, Any], ssm_endpoint: str, aliyun_secret: str) -> None:
    import boto3

    ssm = boto3.client("ssm", endpoint_url=ssm_endpoint, region_name=REGION,
                       aws_access_key_id="ASIABENCH", aws_secret_access_key="bench-secret")
    variables = template["Resources"]["APIHandler"]["Properties"]["Environment"]["Variables"]
    ssm.put_parameter(Name=variables["KEFU_TOKEN_SECRET_PARAM"], Value="bench-token-secret-0123456789",
                      Type="SecureString")
    ssm.put_parameter(Name=variables["KEFU_ALIYUN_ACCESS_KEY_SECRET_PARAM"], Value=aliyun_secret, Type="SecureString")


def _summarise(runs: int, report: Dict[str, Any], samples: Dict[str, List[float]],
               seen: Dict[str, tuple]) -> Dict[str, Any]:
    bare = samples["bare_app"]
    probes = {}
    for name, values in samples.items():
        median = statistics.median(values)
        paired = statistics.median(value / bare[i] for i, value in enumerate(values))
        probes[name] = {
            "function": PROBES[name][0] or "(bare Chalice + boto3 WebSocket app)",
            "measures": PROBES[name][1],
            "median_ms": round(median, 1),
            "p90_ms": round(_p90(values), 1),
            "min_ms": round(min(values), 1),
            "ratio_to_bare": round(paired, 2),
            "ratio_of_medians": round(median / statistics.median(bare), 2),
            "ratio_of_minimums": round(min(values) / min(bare), 2),
            "secrets_loaded": seen[name][0],
            "heavy_modules_imported": seen[name][1],
        }
    goals = [{"goal": f"{name} <= {MAX_CHAT_RATIO}x the bare app, secret loading included",
              "value": probes[name]["ratio_to_bare"], "limit": MAX_CHAT_RATIO,
              "met": probes[name]["ratio_to_bare"] <= MAX_CHAT_RATIO} for name in CHAT_PROBES]
    goals.append({"goal": f"upload path <= {MAX_UPLOAD_RATIO}x the bare app", "limit": MAX_UPLOAD_RATIO,
                  "value": probes["rest_upload"]["ratio_to_bare"],
                  "met": probes["rest_upload"]["ratio_to_bare"] <= MAX_UPLOAD_RATIO})
    goals.append({"goal": "the zip the chat functions load <= 1 MB", "value": report["zip_bytes"],
                  "limit": MAX_CHAT_ZIP_BYTES, "met": report["zip_bytes"] <= MAX_CHAT_ZIP_BYTES})
    return {
        "runs": runs,
        "python": platform.python_version(),
        "runtime": report["runtime"],
        "pyc_tag": report["pyc_tag"],
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "probes": probes,
        "sizes": {key: report[key] for key in ("zip_bytes", "unzipped_bytes", "layer_zip_bytes",
                                               "layer_unzipped_bytes")},
        "goals": goals,
        "all_goals_met": all(goal["met"] for goal in goals),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    result = measure(args.runs)
    print(f"cold starts, {args.runs} fresh interpreters each, medians (p90) and ratio to the bare app:")
    for name, probe in result["probes"].items():
        print(f"  {name:16} {probe['median_ms']:7.1f} ms ({probe['p90_ms']:7.1f})  {probe['ratio_to_bare']:4.2f}x  "
              f"{probe['measures']}")
    sizes = result["sizes"]
    print(f"  chat zip {sizes['zip_bytes'] / 1e6:.2f} MB ({sizes['unzipped_bytes'] / 1e6:.2f} MB unzipped); "
          f"REST layer {sizes['layer_zip_bytes'] / 1e6:.2f} MB ({sizes['layer_unzipped_bytes'] / 1e6:.2f} MB)")
    for goal in result["goals"]:
        print(f"  {'met ' if goal['met'] else 'MISSED'} {goal['goal']}: {goal['value']}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cold_start.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
