"""`make package`: the deployment zip and template in out/, built and checked offline.

1. infra.build renders the merge template (tables, least-privilege role, environment).
2. `chalice package --merge-template` builds deployment.zip and sam.json.
3. Libraries the Lambda Python runtime already provides (boto3, botocore and their dependencies)
   are removed from the zip: pynamodb pulls botocore in, and it is most of the package's size.
4. The zip is unpacked and imported by a clean interpreter that sees only it and those runtime
   libraries, as Lambda would, and each function's import time is measured.
Prints the sizes and import times and writes them to bench/results/package.json.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import site
import subprocess
import sys
import tempfile
import zipfile
from typing import Dict

ROOT = pathlib.Path(__file__).resolve().parents[1]
# In the python3.11 Lambda runtime: boto3 and what it needs.
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six", "urllib3")
IMPORT_PROBES = {
    "chat functions (import app)": "import app",
    "upload path (attachments, oss2, STS SDK)": "import app, chalicelib.attachments, oss2, aliyunsdksts.request.v20150401.AssumeRoleRequest",
}


def _top(name: str) -> str:
    head = name.split("/", 1)[0]
    for suffix in (".dist-info", ".py"):
        if head.endswith(suffix):
            head = head[: -len(suffix)].split("-", 1)[0]
    return head.lower().replace("python_dateutil", "dateutil")


def strip_runtime_libraries(zip_path: pathlib.Path) -> int:
    """Rewrite the zip without what the runtime provides; returns the number of files removed."""
    kept = zip_path.with_suffix(".tmp")
    removed = 0
    with zipfile.ZipFile(zip_path) as source, zipfile.ZipFile(kept, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            if _top(info.filename) in RUNTIME_PROVIDED:
                removed += 1
                continue
            target.writestr(info, source.read(info.filename))
    kept.replace(zip_path)
    return removed


def _runtime_dir(into: pathlib.Path) -> pathlib.Path:
    """A folder holding only the runtime-provided libraries, taken from this environment."""
    packages = pathlib.Path(next(p for p in site.getsitepackages() if p.endswith("site-packages")))
    into.mkdir()
    for entry in packages.iterdir():
        if _top(entry.name) in RUNTIME_PROVIDED:
            (into / entry.name).symlink_to(entry)
    return into


def check_imports(zip_path: pathlib.Path) -> Dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        code_dir = pathlib.Path(tmp) / "task"
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(code_dir)
        runtime = _runtime_dir(pathlib.Path(tmp) / "runtime")
        timings = {}
        for label, statement in IMPORT_PROBES.items():
            probe = ("import sys, time; sys.path[:0] = [sys.argv[1], sys.argv[2]]; t = time.perf_counter(); "
                     f"{statement}; print(round((time.perf_counter() - t) * 1000, 1))")
            env = {"PATH": os.environ.get("PATH", ""), "AWS_DEFAULT_REGION": "us-east-1"}
            result = subprocess.run([sys.executable, "-I", "-S", "-c", probe, str(code_dir), str(runtime)],
                                    capture_output=True, text=True, env=env, cwd=tmp, timeout=120)
            if result.returncode != 0:
                raise SystemExit(f"the package does not import ({label}):\n{result.stderr}")
            timings[label] = float(result.stdout.strip())
        return timings


def package(stage: str, out: pathlib.Path) -> Dict[str, object]:
    env = {**os.environ, "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1")}
    subprocess.run([sys.executable, "-m", "infra.build", "--stage", stage, "--out", str(out / "resources.json")],
                   cwd=ROOT, env=env, check=True)
    shutil.rmtree(out / "package", ignore_errors=True)
    chalice = pathlib.Path(sys.executable).with_name("chalice")
    built = subprocess.run([str(chalice), "package", "--stage", stage, "--merge-template",
                            str(out / "resources.json"), str(out / "package")],
                           cwd=ROOT, env=env, capture_output=True, text=True)
    if built.returncode != 0:
        raise SystemExit(f"chalice package failed:\n{built.stdout}\n{built.stderr}")
    zip_path = out / "package" / "deployment.zip"
    before = zip_path.stat().st_size
    removed = strip_runtime_libraries(zip_path)
    with zipfile.ZipFile(zip_path) as archive:
        unzipped = sum(info.file_size for info in archive.infolist())
    report = {
        "stage": stage,
        "chalice_warnings": [line for line in (built.stdout + built.stderr).splitlines() if "warn" in line.lower()],
        "zip_bytes_before_strip": before,
        "zip_bytes": zip_path.stat().st_size,
        "unzipped_bytes": unzipped,
        "files_removed": removed,
        "import_ms": check_imports(zip_path),
    }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--out", default="out")
    args = parser.parse_args()
    report = package(args.stage, ROOT / args.out)
    print(f"out/package/deployment.zip: {report['zip_bytes'] / 1e6:.2f} MB zipped "
          f"({report['zip_bytes_before_strip'] / 1e6:.2f} MB before removing runtime libraries), "
          f"{report['unzipped_bytes'] / 1e6:.2f} MB unzipped")
    for label, ms in report["import_ms"].items():
        print(f"cold import, {label}: {ms} ms")
    for warning in report["chalice_warnings"]:
        print(f"chalice: {warning}")
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / "package.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
