"""docs/events.md: each python example runs as written (on memory://)."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "events.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)


def test_the_page_has_its_examples() -> None:
    assert len(SNIPPETS) == 2


@pytest.mark.parametrize("code", SNIPPETS)
def test_each_example_runs_as_written(
    code: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "example.py"
    script.write_text(code)
    runpy.run_path(str(script), run_name="__main__")
    printed = capsys.readouterr().out
    expected = [m.strip() for m in re.findall(r"^# (.*)$", code, re.MULTILINE)]
    expected += [c.split("# ")[1].strip() for c in code.splitlines() if "print(" in c and "# " in c]
    for line in expected:
        assert line in printed, (line, printed)
