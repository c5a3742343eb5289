"""`make package`'s output for tests: out/package/sam.json and deployment.zip, built (stage dev)
when missing or older than the code and settings they are built from."""
from __future__ import annotations

import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "out"
TEMPLATE = OUT / "package" / "sam.json"
SOURCES = ("app.py", "requirements.txt", ".chalice/config.json", "chalicelib/*.py", "infra/*.py")


def _newest_source() -> float:
    return max(path.stat().st_mtime for pattern in SOURCES for path in ROOT.glob(pattern))


def packaged_template() -> pathlib.Path:
    built = [TEMPLATE, TEMPLATE.with_name("deployment.zip")]
    if not all(path.exists() for path in built) or min(p.stat().st_mtime for p in built) < _newest_source():
        from infra.package import package

        package("dev", OUT)
    return TEMPLATE
