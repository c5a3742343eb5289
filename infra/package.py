"""`make package`: the deployment zip and template in out/, built and checked offline.

1. infra.build renders the merge template (tables, least-privilege role, environment).
2. `chalice package --merge-template` builds deployment.zip and sam.json.
3. Libraries the Lambda Python runtime already provides (boto3, botocore and their dependencies)
   are removed from the zip: pynamodb pulls botocore in, and it is most of the package's size.
4. What only uploads and attachment URLs need (oss2, the Aliyun STS SDK and everything they pull
   in: cryptography, pycryptodome, a vendored requests...: 31 of 32 MB) moves to a Lambda layer,
   out/package/upload-layer.zip, attached to the REST function (APIHandler) alone. The chat
   functions and the sweep load a zip of well under 1 MB, and PyJWT, which imports cryptography
   whenever it is installed, signs HS256 without it.
5. Every module in both zips is precompiled for the runtime's Python (Lambda's code directories
   are read-only: source-only modules would be compiled again on every cold start). The .pyc
   are unchecked-hash based: zip timestamps cannot invalidate them.
6. The zip is unpacked and imported by a clean interpreter that sees only it (and the layer, for
   the upload path) and the runtime's libraries, as Lambda would, and import times are measured.
Prints the sizes and import times and writes them to bench/results/package.json.
bench/cold_start.py measures the cold starts themselves, side by side with a bare Chalice app.
"""
from __future__ import annotations

import argparse
import compileall
import importlib.metadata
import json
import os
import pathlib
import py_compile
import re
import shutil
import site
import subprocess
import sys
import tempfile
import zipfile
from typing import Dict, Iterable, Set

ROOT = pathlib.Path(__file__).resolve().parents[1]
# In the python3.11 Lambda runtime: boto3 and what it needs.
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six", "urllib3")
# What only the REST function's upload and attachment paths import, with everything they require.
UPLOAD_ONLY_REQUIREMENTS = ("oss2", "aliyun-python-sdk-sts")
# What the chat functions import: never moved to the layer, whatever the upload libraries share with it.
CHAT_REQUIREMENTS = ("pynamodb", "PyJWT")
LAYER_ZIP = "upload-layer.zip"
LAYER_RESOURCE = "UploadLibraries"
REST_FUNCTION = "APIHandler"  # Chalice's name for the function behind every REST route
# Where Lambda unpacks a function's code and a Python layer: the paths tracebacks name.
CODE_DIR, LAYER_DIR = "/var/task", "/opt/python"
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


def _requirement_closure(names: Iterable[str]) -> Set[str]:
    """The installed distributions ``names`` need, themselves included (extras left out)."""
    seen: Set[str] = set()
    todo = list(names)
    while todo:
        name = re.split(r"[ ;<>=!~\[(]", todo.pop().strip(), maxsplit=1)[0].lower().replace("_", "-")
        if name in seen:
            continue
        try:
            requires = importlib.metadata.distribution(name).requires or []
        except importlib.metadata.PackageNotFoundError:
            continue
        seen.add(name)
        todo.extend(r for r in requires if "extra ==" not in r)
    return seen


def upload_only_tops() -> Set[str]:
    """Top-level names (as ``_top`` sees them) of what only the upload path needs."""
    chat = _requirement_closure(CHAT_REQUIREMENTS)
    tops: Set[str] = set()
    for name in _requirement_closure(UPLOAD_ONLY_REQUIREMENTS) - chat:
        for file in importlib.metadata.distribution(name).files or []:
            top = _top(str(file))
            if top not in RUNTIME_PROVIDED and not top.startswith(".."):
                tops.add(top)
    return tops


def split_upload_layer(zip_path: pathlib.Path, layer_path: pathlib.Path) -> int:
    """Move the upload-only libraries from the zip into a layer zip (under python/, which Lambda
    puts on sys.path); returns the number of files moved."""
    upload_only = upload_only_tops()
    kept = zip_path.with_suffix(".tmp")
    moved = 0
    with zipfile.ZipFile(zip_path) as source, zipfile.ZipFile(kept, "w", zipfile.ZIP_DEFLATED) as code, \
            zipfile.ZipFile(layer_path, "w", zipfile.ZIP_DEFLATED) as layer:
        for info in source.infolist():
            if _top(info.filename) in upload_only:
                layer.writestr("python/" + info.filename, source.read(info.filename), zipfile.ZIP_DEFLATED)
                moved += 1
            else:
                code.writestr(info, source.read(info.filename))
    kept.replace(zip_path)
    return moved


def check_runtime_matches(template: dict) -> str:
    """The functions' runtime, which must be this interpreter's Python: the precompiled .pyc carry
    its version tag (cpython-311 for python3.11), and Lambda ignores .pyc of another version.
    (chalice package takes the runtime from the interpreter it runs in, so this holds unless
    someone edits the template.)"""
    runtimes = {r["Properties"]["Runtime"] for r in template["Resources"].values()
                if r["Type"] == "AWS::Serverless::Function"}
    here = f"python{sys.version_info.major}.{sys.version_info.minor}"
    if runtimes != {here}:
        raise SystemExit(f"the functions run {sorted(runtimes)} but .pyc would be compiled by {here}")
    return here


def precompile(zip_path: pathlib.Path, prefix: str, run_dir: str) -> int:
    """Add __pycache__/*.<this Python's tag>.pyc for every module in the zip (``prefix``: where the
    modules sit inside it); ``run_dir`` is where Lambda unpacks it. Returns the number compiled.

    Any .pyc already in the zip is dropped first: `chalice package` copies chalicelib/__pycache__
    from the checkout, and those check their source's mtime, which a zip keeps only to 2 s and an
    unpacking may not keep at all; a stale one makes Python compile the module again on every cold
    start. Ours are unchecked-hash .pyc: the package never changes once built."""
    with tempfile.TemporaryDirectory() as tmp:
        tree = pathlib.Path(tmp)
        _drop_compiled(zip_path)
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(tree)
        root = tree / prefix if prefix else tree
        compileall.compile_dir(str(root), ddir=run_dir, quiet=2, workers=1, force=True,
                               invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
        compiled = sorted(tree.rglob("*.pyc"))
        with zipfile.ZipFile(zip_path, "a", zipfile.ZIP_DEFLATED) as archive:
            for path in compiled:
                archive.write(path, path.relative_to(tree).as_posix())
    return len(compiled)


def _drop_compiled(zip_path: pathlib.Path) -> None:
    """Rewrite the zip without its .pyc entries."""
    rewritten = zip_path.with_suffix(".tmp")
    with zipfile.ZipFile(zip_path) as source, zipfile.ZipFile(rewritten, "w", zipfile.ZIP_DEFLATED) as target:
        for entry in source.infolist():
            if not entry.filename.endswith(".pyc"):
                target.writestr(entry, source.read(entry))
    rewritten.replace(zip_path)


def attach_upload_layer(template_path: pathlib.Path, runtime: str) -> None:
    """The layer as a resource of the template, attached to the REST function alone."""
    template = json.loads(template_path.read_text())
    template["Resources"][LAYER_RESOURCE] = {
        "Type": "AWS::Serverless::LayerVersion",
        "Properties": {
            "ContentUri": f"./{LAYER_ZIP}",
            "CompatibleRuntimes": [runtime],
            "Description": "oss2, the Aliyun STS SDK and their dependencies: uploads and attachment URLs only",
        },
    }
    template["Resources"][REST_FUNCTION]["Properties"]["Layers"] = [{"Ref": LAYER_RESOURCE}]
    template_path.write_text(json.dumps(template, indent=2) + "\n")


def unpack(package_dir: pathlib.Path, into: pathlib.Path) -> Dict[str, pathlib.Path]:
    """The package as Lambda lays it out: ``code`` (/var/task), ``layer`` (/opt/python) and
    ``runtime`` (the runtime's own boto3 and friends, taken from this environment)."""
    dirs = {"code": into / "task", "layer": into / "opt" / "python", "runtime": into / "runtime"}
    with zipfile.ZipFile(package_dir / "deployment.zip") as archive:
        archive.extractall(dirs["code"])
    with zipfile.ZipFile(package_dir / LAYER_ZIP) as archive:
        archive.extractall(into / "opt")
    _runtime_dir(dirs["runtime"])
    return dirs


def _runtime_dir(into: pathlib.Path) -> pathlib.Path:
    """A folder holding only the runtime-provided libraries, taken from this environment."""
    packages = pathlib.Path(next(p for p in site.getsitepackages() if p.endswith("site-packages")))
    into.mkdir()
    for entry in packages.iterdir():
        if _top(entry.name) in RUNTIME_PROVIDED:
            (into / entry.name).symlink_to(entry)
    return into


def check_imports(package_dir: pathlib.Path) -> Dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        dirs = unpack(package_dir, pathlib.Path(tmp))
        timings = {}
        for label, statement in IMPORT_PROBES.items():
            # the chat functions see no layer; -B: Lambda's code directory is read-only
            path = [dirs["code"], dirs["runtime"]] if label.startswith("chat") else list(dirs.values())
            probe = ("import sys, time; sys.path[:0] = sys.argv[1:]; t = time.perf_counter(); "
                     f"{statement}; print(round((time.perf_counter() - t) * 1000, 1))")
            env = {"PATH": os.environ.get("PATH", ""), "AWS_DEFAULT_REGION": "us-east-1"}
            result = subprocess.run([sys.executable, "-I", "-S", "-B", "-c", probe, *map(str, path)],
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
    layer_path = out / "package" / LAYER_ZIP
    template_path = out / "package" / "sam.json"
    runtime = check_runtime_matches(json.loads(template_path.read_text()))
    before = zip_path.stat().st_size
    removed = strip_runtime_libraries(zip_path)
    moved = split_upload_layer(zip_path, layer_path)
    compiled = precompile(zip_path, "", CODE_DIR) + precompile(layer_path, "python", LAYER_DIR)
    attach_upload_layer(template_path, runtime)
    report = {
        "stage": stage,
        "runtime": runtime,
        "pyc_tag": sys.implementation.cache_tag,
        "chalice_warnings": [line for line in (built.stdout + built.stderr).splitlines() if "warn" in line.lower()],
        "zip_bytes_before_strip": before,
        "zip_bytes": zip_path.stat().st_size,
        "unzipped_bytes": _unzipped(zip_path),
        "layer_zip_bytes": layer_path.stat().st_size,
        "layer_unzipped_bytes": _unzipped(layer_path),
        "files_removed": removed,
        "files_moved_to_layer": moved,
        "modules_precompiled": compiled,
        "import_ms": check_imports(out / "package"),
    }
    return report


def _unzipped(zip_path: pathlib.Path) -> int:
    with zipfile.ZipFile(zip_path) as archive:
        return sum(info.file_size for info in archive.infolist())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--out", default="out")
    args = parser.parse_args()
    report = package(args.stage, ROOT / args.out)
    print(f"out/package/deployment.zip: {report['zip_bytes'] / 1e6:.2f} MB zipped "
          f"({report['zip_bytes_before_strip'] / 1e6:.2f} MB before removing runtime libraries and the layer), "
          f"{report['unzipped_bytes'] / 1e6:.2f} MB unzipped")
    print(f"out/package/{LAYER_ZIP} (REST function only): {report['layer_zip_bytes'] / 1e6:.2f} MB zipped, "
          f"{report['layer_unzipped_bytes'] / 1e6:.2f} MB unzipped")
    for label, ms in report["import_ms"].items():
        print(f"cold import, {label}: {ms} ms")
    for warning in report["chalice_warnings"]:
        print(f"chalice: {warning}")
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / "package.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
