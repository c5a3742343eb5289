"""The widget as it is hosted: web/widget.js minified by terser, with a source map beside it.

Site owners need no build step: they paste a script tag and Kefu hosts the built file
(docs/deploy.md). The source keeps its comments and names for the people who work on it; the
built file is what visitors download, and what the 20 KB (gzip) budget is about
(bench/widget_size.py). The local stack serves the built file too, rebuilt when the source is newer,
so the browser tests run what ships. terser is pinned in web/build/package-lock.json and installed
by `make setup`.

    python -m infra.widget     builds out/web/widget.js (and widget.js.map) if stale, prints sizes
"""
from __future__ import annotations

import gzip
import os
import pathlib
import shutil
import subprocess
import threading
from typing import Optional

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCE = ROOT / "web" / "widget.js"
BUILT = ROOT / "out" / "web" / "widget.js"
TERSER = ROOT / "web" / "build" / "node_modules" / "terser" / "bin" / "terser"

_lock = threading.Lock()


class BuildUnavailable(RuntimeError):
    """Node.js or terser is missing."""


def built(source: Optional[pathlib.Path] = None, target: Optional[pathlib.Path] = None) -> pathlib.Path:
    """The built widget (``BUILT`` from ``SOURCE`` unless told), built first when missing or older
    than its source."""
    source, target = source or SOURCE, target or BUILT
    with _lock:
        if not target.exists() or target.stat().st_mtime < source.stat().st_mtime:
            _build(source, target)
    return target


def source_map(target: Optional[pathlib.Path] = None) -> pathlib.Path:
    target = target or BUILT
    return target.with_name(target.name + ".map")


def _build(source: pathlib.Path, target: pathlib.Path) -> None:
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None or not TERSER.exists():
        raise BuildUnavailable("building the widget needs Node.js and terser: run `make setup` "
                               "(or `npm ci` in web/build/)")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    # The map's sources are relative to the built file; its URL is the built file's neighbour.
    options = f"url='{source_map(target).name}',includeSources,root='',base='{source.parent}'"
    result = subprocess.run(
        [node, str(TERSER), str(source), "--compress", "--mangle", "--comments", "false",
         "--source-map", options, "--output", str(partial)],
        capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise BuildUnavailable(f"terser failed on {source.name}: {result.stderr.strip()}")
    # Map first: the script that names it never appears without it.
    os.replace(partial.with_name(partial.name + ".map"), source_map(target))
    os.replace(partial, target)


def sizes(path: pathlib.Path) -> dict:
    raw = path.read_bytes()
    return {"raw_bytes": len(raw), "gzip_bytes": len(gzip.compress(raw, compresslevel=9))}


def main() -> int:
    target = built()
    for name, path in (("source", SOURCE), ("built", target)):
        figures = sizes(path)
        print(f"{name:6} {path.relative_to(ROOT)}: {figures['raw_bytes'] / 1024:.1f} KB raw, "
              f"{figures['gzip_bytes'] / 1024:.1f} KB gzipped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
