"""The widget's download size: the hosted build (infra/widget.py) raw and gzipped, against the
20 KB (gzip) budget, with the commented source and the console beside it.

    python -m bench.widget_size      -> prints the figures, writes bench/results/widget_size.json
"""
from __future__ import annotations

import json
import pathlib

from infra import widget

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = pathlib.Path(__file__).parent / "results"
BUDGET_GZIP_BYTES = 20 * 1024


def measure() -> dict:
    hosted = widget.built()
    figures = {str(path.relative_to(ROOT)): widget.sizes(path)
               for path in (hosted, widget.SOURCE, ROOT / "web" / "console" / "console.js")}
    shipped = figures[str(hosted.relative_to(ROOT))]
    shipped["budget_gzip_bytes"] = BUDGET_GZIP_BYTES
    shipped["within_budget"] = shipped["gzip_bytes"] <= BUDGET_GZIP_BYTES
    return figures


def main() -> None:
    figures = measure()
    for name, sizes in figures.items():
        print(f"{name}: {sizes['raw_bytes'] / 1024:.1f} KB raw, {sizes['gzip_bytes'] / 1024:.1f} KB gzipped")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "widget_size.json").write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
