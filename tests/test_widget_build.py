"""The hosted widget (infra/widget.py): web/widget.js minified by terser, with its source map,
rebuilt when the source changes, and served so by the local stack."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from infra import widget

SCRIPT = """(function () {
  // a comment that must not ship
  var greeting = '你好';
  function shout(longParameterName) { return longParameterName + '!'; }
  window.shouted = shout(greeting);
})();
"""


def _run(node_script: str) -> str:
    return subprocess.run(["node", "-e", node_script], capture_output=True, text=True, check=True).stdout.strip()


def test_the_build_is_smaller_still_runs_and_maps_back_to_the_source(tmp_path):
    source = tmp_path / "src" / "w.js"
    source.parent.mkdir()
    source.write_text(SCRIPT)
    target = widget.built(source, tmp_path / "out" / "w.js")
    code = target.read_text()
    assert "must not ship" not in code and "longParameterName" not in code
    assert len(code) < len(SCRIPT)
    assert code.rstrip().endswith("//# sourceMappingURL=w.js.map")
    assert _run(f"global.window = {{}}; {code}\nconsole.log(window.shouted)") == "你好!"
    mapped = json.loads(widget.source_map(target).read_text())
    assert mapped["sources"] == ["w.js"] and mapped["sourcesContent"] == [SCRIPT]


def test_it_is_rebuilt_only_when_the_source_is_newer(tmp_path):
    source, target = tmp_path / "w.js", tmp_path / "out" / "w.js"
    source.write_text(SCRIPT)
    widget.built(source, target)
    os.utime(target, (1_000_000_000, 2_000_000_000))
    os.utime(source, (1_000_000_000, 1_999_999_999))
    widget.built(source, target)
    assert target.stat().st_mtime == 2_000_000_000  # up to date: left alone

    source.write_text(SCRIPT.replace("'!'", "'?'"))
    os.utime(source, (1_000_000_000, 2_000_000_001))
    widget.built(source, target)
    assert _run(f"global.window = {{}}; {target.read_text()}\nconsole.log(window.shouted)") == "你好?"


def test_a_source_that_does_not_parse_leaves_the_last_build_in_place(tmp_path):
    source, target = tmp_path / "w.js", tmp_path / "w.min.js"
    source.write_text(SCRIPT)
    good = widget.built(source, target).read_text()
    source.write_text("function (")
    os.utime(source, (1_000_000_000, target.stat().st_mtime + 10))
    with pytest.raises(widget.BuildUnavailable, match="terser failed on w.js"):
        widget.built(source, target)
    assert target.read_text() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.js", "w.min.js", "w.min.js.map"]  # no leftovers


def test_the_hosted_widget_is_the_build_of_the_current_source():
    target = widget.built()
    assert target.stat().st_mtime >= widget.SOURCE.stat().st_mtime
    assert json.loads(widget.source_map(target).read_text())["sourcesContent"] == [widget.SOURCE.read_text()]


def test_the_local_stack_serves_the_last_build_while_the_source_does_not_parse(tmp_path, monkeypatch, caplog):
    from local import stack

    source, target = tmp_path / "w.js", tmp_path / "out" / "w.js"
    source.write_text(SCRIPT)
    monkeypatch.setattr(widget, "SOURCE", source)
    monkeypatch.setattr(widget, "BUILT", target)
    good = stack.hosted_widget().read_text()
    source.write_text("function (")
    os.utime(source, (1_000_000_000, target.stat().st_mtime + 10))
    assert stack.hosted_widget().read_text() == good
    assert "terser failed on w.js" in caplog.text and "serving the last build" in caplog.text

    target.unlink()  # nothing built yet: the error is the answer
    with pytest.raises(widget.BuildUnavailable):
        stack.hosted_widget()
