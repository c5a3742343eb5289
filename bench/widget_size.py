"""The widget's download size: raw and gzipped, against the 20 KB (gzip) budget.

    python -m bench.widget_size      -> prints the figures, writes bench/results/widget_size.json
"""
from __future__ import annotations

import gzip
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = pathlib.Path(__file__).parent / "results"
BUDGET_GZIP_BYTES = 20 * 1024


def measure() -> dict:
    figures = {}
    for path in [ROOT / "web" / "widget.js", ROOT / "web" / "console" / "console.js"]:
        raw = path.read_bytes()
        figures[str(path.relative_to(ROOT))] = {"raw_bytes": len(raw),
                                                "gzip_bytes": len(gzip.compress(raw, compresslevel=9))}
    widget = figures["web/widget.js"]
    widget["budget_gzip_bytes"] = BUDGET_GZIP_BYTES
    widget["within_budget"] = widget["gzip_bytes"] <= BUDGET_GZIP_BYTES
    return figures


def main() -> None:
    figures = measure()
    for name, sizes in figures.items():
        print(f"{name}: {sizes['raw_bytes'] / 1024:.1f} KB raw, {sizes['gzip_bytes'] / 1024:.1f} KB gzipped")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "widget_size.json").write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
